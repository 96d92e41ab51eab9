"""The peers Mosaic is compared with, on the same backend and the same text question:

- one-shot: the whole image in one call;
- plain grid CxR: each tile alone, no neighbours;
- SAHI-style: CxR slices with 20% overlap (edge slices moved inward so all keep full size) plus the whole image;
- blog design: each tile alone and, for every neighbour pair, the two tiles together, asked from both sides
  (1 + T + 2P + T + 1 calls; the two calls of a pair see the same pixels, so one reading serves both).

Crops go through mosaic.llm.call_model with Mosaic's own text prompt, so a user's backend is measured the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image

from mosaic import prompts
from mosaic.images import encode_view, shrink
from mosaic.llm import call_model, litellm_completion
from mosaic.memo import BlobStore, Memo
from mosaic.pipeline import parse_json_object
from mosaic.schema import Backend, ModelCall
from mosaic.tiles import neighbor_pairs, tile_boxes

Box = tuple[int, int, int, int]


def sahi_boxes(width: int, height: int, cols: int, rows: int, overlap: float = 0.2) -> list[Box]:
    """cols x rows slices of equal size overlapping by `overlap` of a slice, covering the image; SAHI moves
    slices that would run past an edge back inside, so they keep full size."""
    sw = math.ceil(width / (cols - (cols - 1) * overlap)) if cols > 1 else width
    sh = math.ceil(height / (rows - (rows - 1) * overlap)) if rows > 1 else height
    xs = [min(round(i * sw * (1 - overlap)), width - sw) for i in range(cols)]
    ys = [min(round(j * sh * (1 - overlap)), height - sh) for j in range(rows)]
    return [(x, y, x + sw, y + sh) for y in ys for x in xs]


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass
class Views:
    """The crops a peer method reads, and how many calls it makes (a crop may stand for several calls)."""

    boxes: list[Box]
    calls: int
    grid: str | None
    notes: str = ""
    extra: dict = field(default_factory=dict)


def method_views(kind: str, width: int, height: int, cols: int = 1, rows: int = 1) -> Views:
    whole = (0, 0, width, height)
    if kind == "one-shot":
        return Views([whole], 1, None)
    tiles = list(tile_boxes(width, height, cols, rows).values())
    if kind == "grid":
        return Views(tiles, len(tiles), f"{cols}x{rows}")
    if kind == "sahi":
        boxes = sahi_boxes(width, height, cols, rows) + [whole]
        return Views(boxes, len(boxes), f"{cols}x{rows}")
    if kind == "blog":
        cells = tile_boxes(width, height, cols, rows)
        pairs = [union(cells[a], cells[b]) for a, b in neighbor_pairs(cols, rows)]
        calls = 1 + len(tiles) + 2 * len(pairs) + len(tiles) + 1
        return Views(tiles + pairs, calls, f"{cols}x{rows}")
    raise ValueError(kind)


def read_crop(image: Image.Image, box: Box, backend: Backend, blobs: BlobStore, memo: Memo | None,
              complete=litellm_completion, view_px: int = 1280) -> tuple[list[str], bool]:
    """The texts the backend reads in one crop with Mosaic's text question; (readings, served from memo)."""
    sha = blobs.put(encode_view(shrink(image.crop(box), view_px)))
    where = f"This crop is pixels {list(box)} of a {image.width}×{image.height} image."
    call = ModelCall(model=backend.model, api_base=backend.api_base, system=prompts.SYSTEM,
                     prompt=prompts.view_prompt("text", "", where), images=[sha], options=backend.call_options())
    reply = call_model(call, blobs, memo, backend.timeout_s, complete=complete)
    data = parse_json_object(reply.content)
    if data is None:
        return [reply.content], reply.cached
    texts = []
    for r in data.get("readings") or []:
        t = r.get("text") if isinstance(r, dict) else r
        if isinstance(t, str) and t.strip():
            texts.append(t.strip())
    return texts, reply.cached
