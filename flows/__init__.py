"""Prefect flows: they only compose the tasks in tasks/."""

from .review import review_image, run_review

__all__ = ["review_image", "run_review"]
