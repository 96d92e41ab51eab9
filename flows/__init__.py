"""Prefect flows: they only compose the tasks in tasks/."""

from . import expected_failures
from .compare import compare_models, run_compare
from .review import review_image, run_review

expected_failures.install()

__all__ = ["compare_models", "review_image", "run_compare", "run_review"]
