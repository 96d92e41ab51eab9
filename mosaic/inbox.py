"""An inbox of images: which were already reviewed with the same settings, which a sweep holds, which cannot be
reviewed (set aside in rejected/ with their reason) and how often one failed for a reason that may pass."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BadImage, BadOption
from .images import load_image
from .memo import write_atomically
from .tiles import choose_grid

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
MARKER_DIR = ".mosaic-reviewed"


def inbox_images(inbox: str | Path) -> list[Path]:
    folder = Path(inbox)
    if not folder.is_dir():
        raise BadOption(f"inbox folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def review_marker(outbox: str | Path, image_sha256: str, settings: dict) -> Path:
    """The file that says 'this content was reviewed with these settings' (the image's name does not matter)."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(outbox) / MARKER_DIR / f"{image_sha256[:16]}-{key}.json"


def write_marker(marker: Path, data: dict) -> None:
    write_atomically(marker, json.dumps(data, indent=1).encode())


REJECTED_DIR = "rejected"
CLAIMS_DIR = ".mosaic-claims"
ATTEMPTS_DIR = ".mosaic-attempts"


def check_grid_options(density: str, grid: str | None) -> None:
    """A bad density or grid is the sweep's problem, not any image's: BadOption before any file is judged."""
    try:
        choose_grid(10_000, 10_000, density, grid, "any")
    except ValueError as e:
        raise BadOption(str(e)) from None


def unreviewable(path: Path, density: str, grid: str | None) -> str | None:
    """Why this file can never be reviewed with these options (one line), or None: not an image, damaged, empty,
    over the pixel limit (a decompression bomb), or too small for any grid."""
    try:
        width, height = load_image(path).size
    except BadImage as e:
        return str(e)
    try:
        choose_grid(width, height, density, grid, "any")
    except ValueError as e:
        return str(e)
    return None


@contextmanager
def claim(outbox: str | Path, image: Path) -> Iterator[bool]:
    """Hold an image for one sweep: True when this sweep has it, False when another sweep holds it. A lock on a file
    of the outbox, so a sweep that dies lets go, and two sweeps at once never review one image twice."""
    folder = Path(outbox) / CLAIMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{image.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rejected_folder(outbox: str | Path) -> Path:
    """`rejected/` beside the outbox: where the files that cannot be reviewed are set aside."""
    return Path(outbox).resolve().parent / REJECTED_DIR


def reject(image: Path, outbox: str | Path, reason: str) -> Path:
    """Move the file into rejected/ (never deleted; a new name when one is taken) with `<name>.reason.txt`."""
    folder = rejected_folder(outbox)
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / image.name, 1
    while target.exists():
        n += 1
        target = folder / f"{image.stem}-{n}{image.suffix}"
    shutil.move(image, target)
    target.with_name(target.name + ".reason.txt").write_text(" ".join(reason.split()) + "\n")
    _attempts_path(outbox, image).unlink(missing_ok=True)
    return target


def count_failure(outbox: str | Path, image: Path, error: str) -> int:
    """One more sweep in which this image failed for a reason that may pass (a model server down): how many now."""
    path = _attempts_path(outbox, image)
    attempts = failures(outbox, image) + 1
    write_atomically(path, json.dumps({"image": image.name, "failures": attempts, "last_error": error}).encode())
    return attempts


def failures(outbox: str | Path, image: Path) -> int:
    try:
        return int(json.loads(_attempts_path(outbox, image).read_text())["failures"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def clear_failures(outbox: str | Path, image: Path) -> None:
    _attempts_path(outbox, image).unlink(missing_ok=True)


def _attempts_path(outbox: str | Path, image: Path) -> Path:
    return Path(outbox) / ATTEMPTS_DIR / f"{image.name}.json"
