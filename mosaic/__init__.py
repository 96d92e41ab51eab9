"""Mosaic: a pre-focus layer for small local vision models.

The library: tile geometry, prompts, the one LiteLLM call site with its disk memo, the offline reader and
reports. Importing it does not import Prefect or LiteLLM."""

from .errors import BackendError, BadImage, BadOption, MosaicError, RunFailed
from .images import load_image
from .schema import FinalReport, Plan, TileReport, count_calls
from .settings import Settings, load_settings
from .tiles import choose_grid, grid_for_density, neighbor_pairs, seam_box, tile_boxes

__all__ = [
    "BackendError", "BadImage", "BadOption", "FinalReport", "MosaicError", "Plan", "RunFailed", "Settings",
    "TileReport", "choose_grid", "count_calls", "grid_for_density", "load_image", "load_settings",
    "neighbor_pairs", "seam_box", "tile_boxes",
]
