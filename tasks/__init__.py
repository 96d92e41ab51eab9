"""Prefect tasks: thin typed wrappers of mosaic's plain functions."""

from .review import STEP_TASKS, prepare_image, run_steps, save_comparison, save_report, synthesis_not_attempted

__all__ = ["STEP_TASKS", "prepare_image", "run_steps", "save_comparison", "save_report", "synthesis_not_attempted"]
