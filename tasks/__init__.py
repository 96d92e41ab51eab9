"""Prefect tasks: thin typed wrappers of mosaic's plain functions, with retries declared on the decorator."""

from .review import inspect_view, orient, prepare_image, save_report, synthesis_not_attempted, synthesize_tile, write_review

__all__ = ["inspect_view", "orient", "prepare_image", "save_report", "synthesis_not_attempted", "synthesize_tile", "write_review"]
