"""Prefect flows: they only compose the tasks in tasks/."""

from .compare import compare_models, run_compare
from .review import review_image, run_review

__all__ = ["compare_models", "review_image", "run_compare", "run_review"]
