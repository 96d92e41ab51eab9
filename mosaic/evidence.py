"""Evidence by witness: is a reading really in the image? A model that reads the same text in three framings of a
blank sign board has only repeated itself, so views of one model are weak evidence. Witnesses independent of the
model look at the reading's place in the original image:

- detector: RapidOCR's text detector (ships with Mosaic) — is there text-like detail there at all?
- reader: RapidOCR's recognizer on that place — does it read the same text, another one, or nothing?

A reading is confirmed when an independent witness agrees with its text; probably absent when the detector finds no
text where the model said (and the reader reads none); else unconfirmed, with the reader's text as a variant. What
the witnesses found is kept in the store by place, and passes from step to step (a view's witnesses to the second
look and the evidence), so a rerun finds it done.

`witness(readings, image, plan, blobs, on)` is the one entry point; the rest are its pure parts (judge, similarity)
and the local looks."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from .errors import BadImage, BadOption
from .memo import BlobStore
from .readings import area, group_key, grown, hull, intersection
from .schema import Plan, ReaderWitness, Reading, Witnesses, canonical_sha256
from .settings import load_settings
from .text_regions import text_regions
from .tiles import Box

WITNESSES = ("detector", "reader")
READER = "rapidocr"
STATUS_ORDER = {"confirmed": 0, "unconfirmed": 1, "probably_absent": 2}
NO_TEXT = "no text at this place"


def witnesses_on(value: str | Sequence[str]) -> tuple[str, ...]:
    """The witnesses named in 'detector,reader' ('' or 'none': none), in their fixed order; BadOption for others."""
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n and n != "none"]
    unknown = sorted(set(names) - set(WITNESSES))
    if unknown:
        raise BadOption(f"unknown witness {', '.join(unknown)}: choose from {', '.join(WITNESSES)} (or none)")
    return tuple(w for w in WITNESSES if w in names)


# --- comparing texts (pure) -----------------------------------------------------------------------------------

def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def similarity(reading: str, read: str) -> float:
    """How alike a reading and a text the reader read are, 0-1, on their letters and digits: 1 when the same or
    when the reading is a part of what the reader read (a sign cut by a tile line), else 1 - edit distance / length."""
    a, b = group_key(reading), group_key(read)
    if not a or not b:
        return 0.0
    if a == b or (len(a) >= 2 and a in b):
        return 1.0
    return round(1 - edit_distance(a, b) / max(len(a), len(b)), 3)


# --- what the local witnesses found at one place -----------------------------------------------------------------

class Line(NamedTuple):
    text: str
    score: float
    box: Box  # in pixels of the image


class Look(NamedTuple):
    """The local witnesses' findings at one place: the text-like regions the detector found (None: not asked), the
    lines the reader read (None: not asked); boxes in pixels of the image."""

    regions: list[Box] | None
    lines: list[Line] | None

    def at(self, box: Box | None) -> Look:
        """What of it touches the box (None: all of it): a neighbour's text in the margin is not at the reading."""
        if box is None:
            return self
        near = grown(box, GROW / 2)
        return Look(None if self.regions is None else [b for b in self.regions if area(intersection(b, near))],
                    None if self.lines is None else [l for l in self.lines if area(intersection(l.box, near))])


def closest(text: str, lines: Sequence[Line]) -> tuple[Line | None, float]:
    """The reader's line most like the text (the lines joined count too: one sign read as two lines)."""
    candidates = list(lines)
    if len(lines) > 1:
        candidates.append(Line(" ".join(l.text for l in lines), min(l.score for l in lines),
                               hull(l.box for l in lines)))
    best = max(candidates, key=lambda l: similarity(text, l.text), default=None)
    return best, similarity(text, best.text) if best else 0.0


def judge(r: Reading, look: Look | None, threshold: float = 1.0) -> Reading:
    """The reading with its witnesses, status and reason. look: what the local witnesses found at its place (None:
    it has no place to look at). r.confirmed as grouping set it (two or more views read its text) is what counts
    when no independent witness was asked."""
    views_agree = bool(r.confirmed)
    w = Witnesses(views=list(r.views))
    update: dict = {"witnesses": w}
    if look is None:
        return r.model_copy(update=update | verdict("unconfirmed",
                                                    "no place to check: the model did not say where it read it"))
    look = look.at(r.box)
    if look.regions is not None:
        w.detector = "text" if look.regions else "none"
    if look.lines is not None:
        line, score = closest(r.text, look.lines)
        w.reader = ReaderWitness(name=READER, text=line.text if line else None, agrees=score >= threshold,
                                 similarity=score)
        if w.reader.agrees:
            return r.model_copy(update=update | _located(r, line) | verdict(
                "confirmed", f'an independent reader ({READER}) read "{line.text}" here'))
        for variant in r.variants:
            v_line, v_score = closest(variant, look.lines)
            if v_score >= threshold:
                w.reader = ReaderWitness(name=READER, text=v_line.text, agrees=True, similarity=v_score)
                others = [x for x in r.variants if x != variant] + [r.text]
                return r.model_copy(update=update | _located(r, v_line) | {"text": variant, "variants": others} |
                                    verdict("confirmed", f'an independent reader ({READER}) read "{v_line.text}" '
                                                         f'here, as a view did; "{r.text}" kept as a variant'))
    reader_read = w.reader.text if w.reader else None
    if w.detector == "none" and not reader_read:
        return r.model_copy(update=update | verdict("probably_absent", NO_TEXT))
    if reader_read:
        variants = list(dict.fromkeys([*r.variants, reader_read]))
        return r.model_copy(update=update | {"variants": variants} | verdict(
            "unconfirmed", f'the reader ({READER}) reads "{reader_read}" here'))
    if w.reader:
        found = " (the detector sees text-like detail)" if w.detector == "text" else ""
        return r.model_copy(update=update | verdict("unconfirmed", f"the reader reads nothing here{found}"))
    if w.detector == "text":
        return r.model_copy(update=update | (
            verdict("confirmed", f"read in {len(r.views)} views, and the detector sees text here") if views_agree
            else verdict("unconfirmed", "read in one view only; the detector sees text here")))
    return r.model_copy(update=update | (
        verdict("confirmed", "read in two or more views (no independent witness was asked)") if views_agree
        else verdict("unconfirmed", "read in one view only (no independent witness was asked)")))


def verdict(status: str, reason: str) -> dict:
    """A reading's status, confirmed flag and reason, as fields to update it with."""
    return {"status": status, "confirmed": status == "confirmed", "reason": reason}


def _located(r: Reading, line: Line) -> dict:
    """A reading the model did not place takes the place where the reader read it."""
    return {} if r.box else {"box": line.box}


# --- where to look ------------------------------------------------------------------------------------------------

TEXT_PX = 40  # a reading's short side is enlarged to about this before the detector looks (at most MAX_ZOOM times)
MAX_ZOOM = 4.0
GROW = 0.25  # share of the reading's size added all round: a model's box is a few units off


def place_of(r: Reading, tiles: dict[str, Box], width: int, height: int) -> Box | None:
    """Where to look for a reading: its box grown a little (by at least a quarter of its short side), else the
    tiles it was read in (a model that said nothing of where); inside the image. None: no place at all."""
    box = grown_place(r.box) if r.box else hull(tiles[t] for t in r.tiles if t in tiles)
    if box is None:
        return None
    box = (max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3]))
    return box if box[2] - box[0] >= 4 and box[3] - box[1] >= 4 else None


def grown_place(box: Box) -> Box:
    """A box grown by a quarter of its size all round (at least a quarter of its short side): a model's box, or a
    detector's, is a few units off."""
    x0, y0, x1, y1 = box
    margin = min(x1 - x0, y1 - y0)
    dx, dy = max((x1 - x0) * GROW, margin / 4), max((y1 - y0) * GROW, margin / 4)
    return round(x0 - dx), round(y0 - dy), round(x1 + dx), round(y1 + dy)


def zoom_for(box: Box | None) -> float:
    """How much a place is enlarged before the witnesses look: small text to about TEXT_PX, large kept as it is.
    box: the text's own box (None: a place the model did not give, looked at as it is)."""
    if not box:
        return 1.0
    short = max(1, min(box[2] - box[0], box[3] - box[1]))
    return round(min(MAX_ZOOM, max(1.0, TEXT_PX / short)), 3)


def places_to_look(r: Reading, place: Box | None, regions: Callable[[], list[Box]],
                   tiles: dict[str, Box]) -> list[tuple[Box, float]]:
    """(box, zoom) of each place the witnesses look at for a reading: its own place; for a reading the model did
    not place, the text-like regions the detector found in its tiles (each enlarged as its text needs: far less
    to read than the whole tiles), or its tiles as they are where the detector found none."""
    if place is None:
        return []
    if r.box:
        return [(place, zoom_for(r.box))]
    inside = [b for b in regions() if area(intersection(b, place))]
    at = [(clipped, zoom_for(b)) for b in inside for clipped in [intersection(grown_place(b), place)]
          if min(clipped[2] - clipped[0], clipped[3] - clipped[1]) >= 4]
    return at or whole_tiles(r, place, tiles)


def whole_tiles(r: Reading, place: Box, tiles: dict[str, Box]) -> list[tuple[Box, float]]:
    """A reading the model did not place, looked at in each of its tiles whole and as it is: a seam's reading in
    both its tiles, each a look every reading there shares (their hull would be one more look, shrunk to fit)."""
    return [(tiles[t], 1.0) for t in dict.fromkeys(r.tiles) if t in tiles] or [(place, 1.0)]


# A place is looked at alone, on a grey canvas of its own size (sides multiples of 32, at most RapidOCR's 2000),
# at that size: what the witnesses find there depends on the place alone, so every step that asks for it (a tile's
# view, both its seams, the evidence), here or on another machine, finds the same, and a small place costs little.
CANVAS_MAX = 1984
GAP = 48  # grey round a place: the detector's boxes grow by ~half a text height, so they stay on the canvas
READ_SCORE = 0.5  # a line the reader reads with less confidence is not a reading (RapidOCR's own default)


def look_locally(image: Image.Image, place: tuple[Box, float], which: Sequence[str]) -> dict[str, list[tuple]]:
    """What the witnesses `which` find at a place (box, zoom), enlarged on a canvas of its own; one detection
    serves both witnesses. 'detector': the boxes of text-like regions (image pixels); 'reader': (text, score,
    box) of each line it reads."""
    from .offline.reader import _engine_lock, _ocr

    (x0, y0, x1, y1), zoom = place
    crop = image.crop((x0, y0, x1, y1)).convert("RGB")
    fit = min(zoom, (CANVAS_MAX - 2 * GAP) / max(crop.size))
    if fit != 1:
        crop = crop.resize((max(1, round(crop.width * fit)), max(1, round(crop.height * fit))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (_by32(crop.width + 2 * GAP), _by32(crop.height + 2 * GAP)), (127, 127, 127))
    canvas.paste(crop, (GAP, GAP))
    read = "reader" in which
    with _engine_lock:  # text_score 0: every detected region comes back, each line's score is judged here
        result, _ = _ocr(at_own_size=True)(np.asarray(canvas), use_det=True, use_cls=False, use_rec=read,
                                           text_score=0.0)
    regions, lines = [], []
    for item in result or []:
        quad = item[0] if read else item
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        box = (round(x0 + (max(min(xs), GAP) - GAP) / fit), round(y0 + (max(min(ys), GAP) - GAP) / fit),
               round(x0 + (min(max(xs), GAP + crop.width) - GAP) / fit),
               round(y0 + (min(max(ys), GAP + crop.height) - GAP) / fit))
        if not area(box):  # in the grey margin only
            continue
        regions.append(box)
        if read and item[1].strip() and float(item[2]) >= READ_SCORE:
            lines.append((item[1].strip(), round(float(item[2]), 3), box))
    return {w: regions if w == "detector" else lines for w in which}


def _by32(side: int) -> int:
    return -(-side // 32) * 32


_LOOKING = threading.Lock()
Found = dict[str, str]  # what the witnesses found, by found_key(witness, image, place): JSON, passed between steps


def found_key(which: str, image_sha256: str, place: tuple[Box, float]) -> str:
    return canonical_sha256(["witness", 4, which, image_sha256, list(place[0]), place[1]])


def looks(image: Callable[[], Image.Image], image_sha256: str, places: Sequence[tuple[Box, float]],
          on: Sequence[str], blobs: BlobStore, found: Found | None = None) -> list[Look]:
    """Look for each (place, zoom): what the witnesses on found. found: what earlier steps found (taken as it is),
    and filled with what this look finds; a place neither found nor in the store is looked at, and kept."""
    found = {} if found is None else found
    image = functools.cache(image)  # read and checked once for all the places
    for place in dict.fromkeys(places):
        keys = {which: found_key(which, image_sha256, place) for which in on}
        with _LOOKING:  # steps that want one place at once (a tile's view and its seams') wait for one look
            for key in keys.values():
                if key not in found and (kept := blobs.get_plan(key)) is not None:
                    found[key] = kept
            wanted = [which for which, key in keys.items() if key not in found]
            for which, result in (look_locally(image(), place, wanted) if wanted else {}).items():
                found[keys[which]] = json.dumps(result)
                blobs.put_plan(keys[which], found[keys[which]])
    result = {which: [json.loads(found[found_key(which, image_sha256, p)]) for p in places] for which in on}
    regions = result.get("detector")
    lines = result.get("reader")
    return [Look([tuple(b) for b in regions[i]] if regions is not None else None,
                 [Line(t, s, tuple(b)) for t, s, b in lines[i]] if lines is not None else None)
            for i in range(len(places))]


# --- the entry point --------------------------------------------------------------------------------------------

def witness(readings: list[Reading], image: Callable[[], Image.Image], plan: Plan, blobs: BlobStore,
            on: Sequence[str] = WITNESSES, threshold: float = 1.0, found: Found | None = None) -> list[Reading]:
    """Every reading with its witnesses, status and reason: confirmed ones first, then unconfirmed, then those
    probably not in the image (each group in the order given). image: decodes the plan's image when called (only
    when a witness has not looked at a place before). on: the witnesses to ask (none: views alone decide).
    found: what earlier steps' witnesses found, filled with what these find (see looks).
    A reading the model did not place is looked for at the detector's text-like regions in its tiles first, and
    in its whole tiles only when those do not confirm it."""
    tiles = plan.tile_boxes
    found = {} if found is None else found
    regions = functools.cache(lambda: text_regions(image, plan.image_sha256, blobs, found=found))
    places = [place_of(r, tiles, plan.width, plan.height) for r in readings]
    first = [places_to_look(r, p, regions, tiles) for r, p in zip(readings, places)]
    last = [whole_tiles(r, p, tiles) if p and not r.box else [] for r, p in zip(readings, places)]
    try:
        judged = _judged(readings, first, image, plan.image_sha256, on, blobs, threshold, found)
        again = [i for i in range(len(readings)) if last[i] and judged[i].status != "confirmed" and first[i] != last[i]]
        redone = _judged([readings[i] for i in again], [last[i] for i in again], image,
                         plan.image_sha256, on, blobs, threshold, found)
    except BadImage as e:
        return [r.model_copy(update={"witnesses": Witnesses(views=list(r.views))} | verdict(
            "unconfirmed", f"not witnessed: {e}")) for r in readings]
    for i, r in zip(again, redone):
        judged[i] = r
    return sorted(judged, key=lambda r: STATUS_ORDER[r.status or "unconfirmed"])


def _judged(readings: list[Reading], per_reading: list[list[tuple[Box, float]]], image: Callable[[], Image.Image],
            image_sha256: str, on: Sequence[str], blobs: BlobStore, threshold: float,
            found: Found) -> list[Reading]:
    """Each reading judged on what the witnesses found at its places (none: no place to look at)."""
    asked = list(dict.fromkeys(p for places in per_reading for p in places))
    at = dict(zip(asked, looks(image, image_sha256, asked, on, blobs, found) if on else [Look(None, None)] * len(asked)))
    return [judge(r, merged([at[p] for p in places]) if places else None, threshold)
            for r, places in zip(readings, per_reading)]


def merged(found: Sequence[Look]) -> Look:
    """What the witnesses found at several places, as at one."""
    first = found[0]
    return Look(None if first.regions is None else [b for f in found for b in f.regions],
                None if first.lines is None else [l for f in found for l in f.lines])


def run_settings() -> dict:
    """The witnesses a run asks, for its report's settings."""
    settings = load_settings()
    return {"on": list(witnesses_on(settings.witnesses)), "reader": READER, "similarity": settings.witness_similarity}
