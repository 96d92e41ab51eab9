"""The second look: from what the first wave of views read, the closer crops worth one more, text-only call.

A reading an independent witness confirmed (mosaic.evidence) needs none. One not confirmed, unclear, or read
differently gets a crop centred on where it was read, small enough that the model's encoder sees its text larger
than in the tile. Pure functions on boxes; the engine cuts the crops and asks them."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from .backend import Backend
from .readings import union
from .schema import Reading, View
from .settings import Settings
from .tiles import Box, input_px_for


class SecondLook(BaseModel):
    """How much a second look may ask, and how large its crops are sent."""

    max_share: float = Field(0.3, description="most calls it adds, as a share of the first wave's planned calls")
    zoom_px: int = Field(896, description="long side each crop is sent at (the model's encoder size)")
    zoom_unread: bool = Field(True, description="also zoom into text-like regions no view read, within the cap")

    def cap(self, first_wave_calls: int) -> int:
        return math.floor(self.max_share * first_wave_calls)


def for_run(settings: Settings, backend: Backend, enabled: bool | None = None) -> SecondLook | None:
    """The run's second look (None when off): crops sent at the model's encoder size when Mosaic knows it."""
    if not (settings.second_look if enabled is None else enabled):
        return None
    zoom_px = input_px_for(backend.model, backend.offline_budget, settings.input_px) or 896
    return SecondLook(max_share=settings.second_look_share, zoom_px=zoom_px)


MIN_SIDE = 160  # px of the image: a smaller crop only enlarges blur


def worth_a_second_look(r: Reading) -> bool:
    """Not confirmed, unclear or read differently; not where the detector saw no text (the model would only repeat
    itself there)."""
    return r.status != "probably_absent" and (not r.confirmed or r.unclear or bool(r.variants))


def crop_around(box: Box, width: int, height: int, max_side: int) -> Box:
    """A crop centred on a reading: its text with a margin of twice the text's height (its short side: a vertical
    sign too) all round, at least MIN_SIDE and at most max_side on each side (a reading larger than that keeps its
    size and a margin of half its height), kept inside the image."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    th = min(bw, bh)
    w = min(max(MIN_SIDE, bw + 4 * th), max(max_side, bw + th))
    h = min(max(MIN_SIDE, bh + 4 * th), max(max_side, bh + th))
    return _inside(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), min(w, width), min(h, height), width, height)


def _inside(centre: tuple[float, float], w: int, h: int, width: int, height: int) -> Box:
    x0 = min(max(0, round(centre[0] - w / 2)), width - w)
    y0 = min(max(0, round(centre[1] - h / 2)), height - h)
    return (x0, y0, x0 + w, y0 + h)


def halves(box: Box, overlap: float = 0.2) -> list[Box]:
    """A view cut in two along its long side, overlapping: for a reading its view did not place."""
    x0, y0, x1, y1 = box
    if x1 - x0 >= y1 - y0:
        w = round((x1 - x0) * (1 + overlap) / 2)
        return [(x0, y0, x0 + w, y1), (x1 - w, y0, x1, y1)]
    h = round((y1 - y0) * (1 + overlap) / 2)
    return [(x0, y0, x1, y0 + h), (x0, y1 - h, x1, y1)]


def zoom_boxes(regions: list[Box], readings: list[Reading], width: int, height: int, tile_side: int,
               limit: int, taken: list[Box]) -> list[Box]:
    """At most `limit` more crops for text-like regions (found by a text detector) that no reading covers and no
    crop already taken holds: where the first wave saw detail but read nothing. Close regions share a crop; the
    crops holding most unread regions are kept (a small budget goes where the most text is left to read)."""
    max_side = max(MIN_SIDE, tile_side // 2)
    read = [r.box for r in readings if r.box]
    boxes: list[Box] = []
    for region in regions:
        if any(_covers(b, region) for b in read + taken + boxes):
            continue
        _add_crop(boxes, crop_around(region, width, height, max_side), max_side, len(regions))
    unread = [r for r in regions if not any(_covers(b, r) for b in read + taken)]
    held = [sum(_covers(b, r) for r in unread) for b in boxes]
    best = sorted(range(len(boxes)), key=lambda i: -held[i])[:limit]
    return [boxes[i] for i in sorted(best)]


def _add_crop(boxes: list[Box], want: Box, max_side: int, limit: int) -> None:
    """Into the first crop it can join staying under max_side, else as a new one while under the limit."""
    for i, have in enumerate(boxes):
        joined = union(have, want)
        if max(joined[2] - joined[0], joined[3] - joined[1]) <= max_side:
            boxes[i] = joined
            return
    if len(boxes) < limit:
        boxes.append(want)


def _covers(outer: Box, inner: Box, share: float = 0.5) -> bool:
    """Half or more of inner lies in outer."""
    x0, y0 = max(outer[0], inner[0]), max(outer[1], inner[1])
    x1, y1 = min(outer[2], inner[2]), min(outer[3], inner[3])
    inside = max(0, x1 - x0) * max(0, y1 - y0)
    return inside >= share * max(1, (inner[2] - inner[0]) * (inner[3] - inner[1]))


def verification_boxes(readings: list[Reading], views: dict[str, View], width: int, height: int, tile_side: int,
                       limit: int) -> list[Box]:
    """At most `limit` crops for the readings worth a second look, disagreeing or unclear ones first. Readings
    close together share a crop while it stays under half a tile's long side; a reading no view placed gets its
    view's two halves."""
    max_side = max(MIN_SIDE, tile_side // 2)
    targets = sorted((r for r in readings if worth_a_second_look(r)),
                     key=lambda r: (not (r.variants or r.unclear), r.box is None))
    boxes: list[Box] = []
    for r in targets:
        if r.box:
            _add_crop(boxes, crop_around(r.box, width, height, max_side), max_side, limit)
        else:
            view = next((views[v] for v in r.views if v in views), None)
            for half in halves(view.box) if view else []:
                if half not in boxes and len(boxes) < limit:
                    boxes.append(half)
    return boxes
