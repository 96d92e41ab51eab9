"""Mosaic: a pre-focus layer for small local vision models.

The library: tile geometry, prompts, the review engine, the one call site (LiteLLM by default) with its disk memo,
the offline reader and reports. Importing it does not import Prefect or LiteLLM.

    import mosaic
    report = mosaic.review("photo.jpg", model="ollama_chat/qwen2.5vl:7b", density="dense")
"""

from .backend import Backend
from .errors import BackendError, BadImage, BadOption, MosaicError, RunFailed
from .images import load_image
from .schema import FinalReport, Plan, TileReport, count_calls
from .settings import Settings, load_settings
from .tiles import choose_grid, grid_for_density, neighbor_pairs, seam_box, tile_boxes

__all__ = [
    "Backend", "BackendError", "BadImage", "BadOption", "FinalReport", "MosaicError", "Plan", "RunFailed", "Settings",
    "TileReport", "choose_grid", "count_calls", "grid_for_density", "load_image", "load_settings",
    "neighbor_pairs", "review", "seam_box", "tile_boxes",
]


def __getattr__(name: str):
    if name == "review":  # the thread-pool driver, imported when first used
        from .driver import review

        return review
    raise AttributeError(f"module 'mosaic' has no attribute {name!r}")
