"""Prefect tasks: thin typed wrappers of mosaic's plain functions, with retries declared on the decorator."""

from .review import ASK, ask_model, ask_several, prepare_image, save_comparison, save_report, synthesis_not_attempted

__all__ = ["ASK", "ask_model", "ask_several", "prepare_image", "save_comparison", "save_report", "synthesis_not_attempted"]
