"""Many images reviewed at once: which images a source names, and what each came to. The driver (mosaic.driver)
opens a few at a time (each holds its plan), so a folder of thousands of photos costs the memory of a few."""

from __future__ import annotations

import glob
from pathlib import Path

from .driver import Job
from .errors import BadOption
from .inbox import IMAGE_SUFFIXES


def batch_images(source: str | list[str]) -> list[Path]:
    """The images of a folder, a glob pattern ('photos/**/*.jpg') or a list of paths, sorted; BadOption when none."""
    if isinstance(source, list):
        paths = [Path(p) for p in source]
    elif Path(source).is_dir():
        paths = [p for p in Path(source).iterdir() if p.is_file()]
    elif glob.has_magic(source):
        paths = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
    elif Path(source).is_file():
        paths = [Path(source)]
    else:
        raise BadOption(f"no such folder, file or pattern: {source}")
    images = sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not images:
        raise BadOption(f"no images in {source} ({', '.join(IMAGE_SUFFIXES)})")
    return images


def summary(jobs: list[Job], seconds: float) -> dict:
    """What `mosaic batch --json` prints: every image with its state, report folder and calls, and totals."""
    images = [j.summary() for j in jobs]
    totals = {"images": len(images), "reviewed": sum(j.state == "reviewed" for j in jobs),
              "failed": sum(j.state == "failed" for j in jobs)}
    for key in ("planned", "made", "cached", "failed"):
        totals[f"calls_{key}"] = sum(getattr(j.report.calls, key) for j in jobs if j.report)
    totals["seconds"] = round(seconds, 2)
    return {"images": images, "totals": totals}
