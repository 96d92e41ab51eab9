"""Plain helpers for running Mosaic as Prefect operations (no Prefect import here).

Names of the per-backend concurrency limits, what an inbox holds, which images were already reviewed with the
same settings, artifact keys, and the text tables `mosaic history` prints.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .errors import BadOption
from .llm import OFFLINE_PROVIDER, OLLAMA_DEFAULT, is_ollama

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
MARKER_DIR = ".mosaic-reviewed"


def backend_limit_name(model: str, api_base: str | None) -> str | None:
    """The concurrency limit's name for one backend address; None for the in-process offline reader."""
    if model.startswith("mosaic_offline/") and not api_base:
        return None
    if api_base:
        address = api_base
    elif is_ollama(model):
        address = OLLAMA_DEFAULT
    else:
        address = model.split("/")[0] + "-default"
    address = re.sub(r"^[a-z]+://", "", address.lower())
    return "mosaic-backend-" + (re.sub(r"[^a-z0-9]+", "-", address).strip("-")[:80] or "default")


def run_tags(model: str, api_base: str | None) -> list[str]:
    """Tags of an image run in Prefect: which model, at which address."""
    if model == "offline" or model.startswith(("offline:", OFFLINE_PROVIDER + "/")):
        address = api_base or "offline"
    else:
        address = api_base or (OLLAMA_DEFAULT if is_ollama(model) else "default")
    return ["mosaic", f"model:{model}", f"backend:{address}"]


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key[:100] or "mosaic"


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
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(marker)


def text_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
