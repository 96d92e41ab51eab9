"""Where an image has text-like detail, found by a text detector (RapidOCR's, shipped in its wheel) without
reading anything: the second look zooms into such regions that no view read, so Mosaic can read more than its
fixed tiles. Kept by the image's sha256, so a rerun detects nothing again."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import numpy as np
from PIL import Image

from .images import shrink
from .memo import BlobStore
from .schema import canonical_sha256
from .tiles import Box

DETECT_PX = 1600  # long side the detector works at: the sample's 16 signs are found at this size (15 of 16)


def text_regions(image: Callable[[], Image.Image], image_sha256: str, blobs: BlobStore, px: int = DETECT_PX,
                 found: dict[str, str] | None = None) -> list[Box]:
    """Boxes (image pixels) of text-like detail, top to bottom. image: decodes the image when called. found: what
    earlier steps found (mosaic.evidence.Found), taken as it is, and filled with the regions."""
    key = canonical_sha256(["text-regions", 1, image_sha256, px])
    kept = (found or {}).get(key)
    if kept is None:
        with _DETECTING:  # steps of one review that want them at once wait for one detection
            kept = blobs.get_plan(key)
            if kept is None:
                kept = json.dumps(detect(image(), px))
                blobs.put_plan(key, kept)
    if found is not None:
        found[key] = kept
    return [tuple(b) for b in json.loads(kept)]


_DETECTING = threading.Lock()


def detect(image, px: int = DETECT_PX) -> list[Box]:
    from .offline.reader import _engine_lock, _ocr

    small = shrink(image, px).convert("RGB")  # shrunk first: no full-size copy
    scale = image.width / small.width
    with _engine_lock:
        found, _ = _ocr()(np.asarray(small), use_det=True, use_cls=False, use_rec=False)
    boxes = []
    for quad in found or []:
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        boxes.append((round(min(xs) * scale), round(min(ys) * scale), round(max(xs) * scale), round(max(ys) * scale)))
    return sorted(boxes, key=lambda b: (b[1], b[0]))
