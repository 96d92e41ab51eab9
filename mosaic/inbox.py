"""An inbox of images and which of them were already reviewed with the same settings (no Prefect here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import BadOption
from .memo import write_atomically

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
