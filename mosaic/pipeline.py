"""The steps of a review as plain functions. tasks/ wraps them for Prefect; nothing here needs Prefect."""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from . import dialects, prompts, shaping
from .backend import Backend
from .errors import BadImage, BadOption
from .images import decode_image, encode_view, read_image_file, sha256_hex, shrink
from .memo import BlobStore
from .profiles import DEFAULT as DEFAULT_PROFILE
from .profiles import Profile
from .readings import box_in_image, group_readings, in_reading_order, place_box, readings_in_prose, sign_text, tiles_of
from .schema import (ModelCall, ModelReply, Observation, Plan, Reading, TileReport, View, ViewAnswer,
                     canonical_sha256, phases_for)
from .text_regions import text_regions
from .tiles import Box, cell_label, choose_grid, coarsened_note, input_px_for, neighbor_pairs, seam_box, tile_boxes


def encoder_px(backend: Backend, density: str, stated: int | None = None) -> int | None:
    """The model's encoder size for choosing the grid (see tiles.input_px_for). The backend is asked only where the
    answer matters (density auto) and the user has not stated it."""
    reported = backend.reported_encoder_px() if density == "auto" and not stated else None
    return input_px_for(backend.model, backend.offline_budget, stated, reported)


def prepare(image_path: str, density: str, grid: str | None, phases: list[str], backend: Backend, blobs: BlobStore,
            orientation_px: int = 1280, view_px: int = 1280, skip_blank: bool = False,
            input_px: int | None = None, design: str = "full", coarse: bool = True,
            budget: shaping.Budget | None = None, cost: shaping.CallCost | None = None,
            fill: shaping.Budget | None = None) -> Plan:
    """Decode the image once, choose the grid, cut every view, store each by its sha256, fix the plan.

    skip_blank: views with nothing on them (is_blank) are asked nothing, so they cost no call.
    input_px: the model's encoder size as the user states it (for density auto), else as encoder_px finds it.
    design: shaped, full, blog or auto (mosaic.shaping); coarse: a shaped plan asks subjects and characteristics
    of the whole image. budget: the views worth most within it (mosaic.shaping.fit), its cuts in plan.notes.
    fill: with no budget, the calls a shaped plan's second look may fill (mosaic.shaping.filled_cap).
    A plan is kept by the sha256 of the file and these settings, so a rerun decodes and cuts nothing."""
    input_px = encoder_px(backend, density, input_px)
    model = backend.model
    limits = sent_limits(backend.model_profile)
    cost = cost or shaping.CallCost()
    data = read_image_file(image_path)
    key = canonical_sha256([PLAN_VERSION, sha256_hex(data),
                            [density, grid, list(phases), model, input_px, orientation_px, view_px, skip_blank,
                             design, coarse, budget.model_dump() if budget else None, cost.model_dump(),
                             fill.model_dump() if fill else None]]
                           + ([list(limits)] if limits != (0, None) else []))
    kept = _kept_plan(blobs, key, image_path)
    if kept:
        return kept
    loaded = decode_image(data, str(image_path))
    image = _keep_decoded(str(image_path), loaded.sha256, loaded.image)  # the review's local steps look at it again
    width, height = image.size
    try:
        cols, rows, density = choose_grid(width, height, density, grid, model, input_px)
    except ValueError as e:
        raise BadOption(str(e)) from None
    notes = loaded.notes + [note for note in [coarsened_note(width, height, density, cols, rows)] if note]
    design = shaping.design_for(design, density)
    regions = (text_regions(lambda: image, loaded.sha256, blobs)
               if design == "shaped" or budget and (budget.calls or budget.minutes) else [])
    boxes = tile_boxes(width, height, cols, rows)
    crops = [(cell_label(cell), "tile", [cell], box,
              shaping.tile_phases(design, phases, shaping.text_count(box, regions) > 0, coarse))
             for cell, box in boxes.items()]
    crops += [("|".join(map(cell_label, (a, b))), "seam", [a, b], seam_box(boxes[a], boxes[b], height),
               shaping.seam_phases(design, phases, phases_for("seam", phases), shaping.crossing(boxes[a], boxes[b], regions)))
              for a, b in neighbor_pairs(cols, rows)]
    whole = shaping.whole_phases(design, phases, coarse)
    if whole:
        crops.append((shaping.WHOLE, "region", list(boxes), (0, 0, width, height), whole))
    views = [_view(blobs, image, *crop, view_px, skip_blank, limits) for crop in crops]
    overview = blobs.put(encode_view(within_pixels(shrink(image, orientation_px), limits[1])))
    plan = Plan(
        image_path=str(image_path), image_sha256=loaded.sha256, width=width, height=height, notes=notes,
        cols=cols, rows=rows, density=density, phases=list(phases), overview_sha256=overview, views=views,
        design=design, synthesis=design != "shaped",
    )
    measure = lambda p: shaping.estimate(p, regions, cost, view_px, orientation_px)  # noqa: E731
    budgeted = budget if budget and (budget.calls or budget.minutes) else None
    if budgeted:
        plan, cut = shaping.fit(plan, regions, budgeted, measure)
        if cut:
            plan.notes.append(f"budget cut ({budget_words(budgeted)}): " + "; ".join(cut))
    if design == "shaped" and fill and fill.second_look_share:
        plan.second_look_cap = shaping.filled_cap(plan, fill, measure(plan), budgeted)
    plan.estimated_s = measure(plan).seconds
    blobs.put_plan(key, plan.model_dump_json())
    return plan


def budget_words(budget: shaping.Budget) -> str:
    parts = ([f"{budget.calls} calls"] if budget.calls else []) + ([f"{budget.minutes:g} minutes"] if budget.minutes else [])
    return " and ".join(parts) + " per image"


PLAN_VERSION = 3  # part of every plan's key: raise it when the way views are cut or encoded changes


def _kept_plan(blobs: BlobStore, key: str, image_path: str) -> Plan | None:
    text = blobs.get_plan(key)
    if text is None:
        return None
    try:
        plan = Plan.model_validate_json(text)
    except ValueError:
        return None
    if not all(blobs.has(sha) for sha in [plan.overview_sha256, *(v.image_sha256 for v in plan.views)]):
        return None
    return plan.model_copy(update={"image_path": str(image_path)})


# A view whose strongest local contrast stays under this (grey levels, at 512 px) holds nothing to read or list:
# clear sky, a bare wall. Far below the edge of any legible text, even dim text in shadow (~20 levels).
BLANK_EDGE = 8.0


def is_blank(crop) -> bool:
    """True for a crop with no edges worth a call: the 99.9th percentile of its local contrast is tiny."""
    grey = np.asarray(shrink(crop, 512).convert("L"), dtype=np.float32)
    if grey.shape[0] < 2 or grey.shape[1] < 2:
        return False
    edges = np.maximum(np.abs(np.diff(grey, axis=0))[:, :-1], np.abs(np.diff(grey, axis=1))[:-1, :])
    return float(np.percentile(edges, 99.9)) < BLANK_EDGE


def _view(blobs: BlobStore, image, view_id: str, kind: str, cells: list, box, phases: list[str], view_px: int,
          skip_blank: bool = False, limits: tuple[int, int | None] = (0, None)) -> View:
    """limits: (the smallest side, the most pixels) the model's server takes; a crop is grown and shrunk to them."""
    min_side, max_pixels = limits
    box = grown_to_side(box, min_side, min(1.0, view_px / max(box[2] - box[0], box[3] - box[1])), image.size)
    crop = within_pixels(shrink(image.crop(box), view_px), max_pixels)
    asked = [] if skip_blank and is_blank(crop) else phases  # a blank view costs no call
    return View(id=view_id, kind=kind, cells=cells, box=box, image_sha256=blobs.put(encode_view(crop)), phases=asked,
                sent_px=crop.size)


def sent_limits(profile: Profile) -> tuple[int, int | None]:
    return profile.min_crop_px, profile.max_image_px


def within_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The image, shrunk (aspect kept) to at most max_pixels when it has more."""
    if not max_pixels or image.width * image.height <= max_pixels:
        return image
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def grown_to_side(box: Box, min_side: int, scale: float, image_size: tuple[int, int]) -> Box:
    """The box grown around its centre (within the image) so that, shrunk by scale, no side is under min_side px."""
    need = min_side / scale if scale > 0 else 0
    (x0, x1), (y0, y1) = _widened(box[0], box[2], need, image_size[0]), _widened(box[1], box[3], need, image_size[1])
    return x0, y0, x1, y1


def _widened(lo: int, hi: int, need: float, limit: int) -> tuple[int, int]:
    if hi - lo >= need:
        return lo, hi
    size = min(limit, math.ceil(need))
    start = min(max(0, round((lo + hi - size) / 2)), limit - size)
    return start, start + size


def orientation_call(plan: Plan, backend: Backend) -> ModelCall:
    return model_call(backend, prompts.orientation_prompt(plan.cols, plan.rows), [plan.overview_sha256])


def view_call(plan: Plan, view: View, phase: str, orientation: str, backend: Backend) -> ModelCall:
    common = dict(cols=plan.cols, rows=plan.rows, box=list(view.box))
    if view.kind == "seam":
        a, b = view.id.split("|")
        where = prompts.SEAM_WHERE.format(a=a, b=b, **common)
    elif view.kind == "region":
        where = prompts.REGION_WHERE.format(width=plan.width, height=plan.height, **common)
    elif view.kind == "detail":
        tiles = ", ".join(cell_label(c) for c in view.cells)
        where = prompts.DETAIL_WHERE.format(tiles=tiles, width=plan.width, height=plan.height, **common)
    else:
        where = prompts.TILE_WHERE.format(label=view.id, width=plan.width, height=plan.height, **common)
    return model_call(backend, prompts.view_prompt(phase, orientation, where), [view.image_sha256], phase)


def tile_synthesis_call(plan: Plan, tile: View, observations: list[Observation], orientation: str, backend: Backend) -> ModelCall:
    data = [_observation_data(o) for o in observations]
    return model_call(backend, prompts.tile_synthesis_prompt(orientation, tile.id, tile.box, data), [], "tile-synthesis")


def final_call(plan: Plan, orientation: str, reports: list[TileReport], backend: Backend) -> ModelCall:
    data = [
        {"tile": r.tile, "summary": r.report, "readings": [_reading_data(x) for x in r.readings],
         "subjects": r.subjects, "characteristics": r.characteristics}
        for r in reports
    ]
    return model_call(backend, prompts.final_prompt(orientation, plan.cols, plan.rows, data), [plan.overview_sha256])


def model_call(backend: Backend, prompt: str, images: list[str], task: str | None = None) -> ModelCall:
    """The call as the memo keys it: everything that decides the answer. task: the answer's JSON shape is asked of
    the server (response_format) when the backend does that (Backend.asks_for_schema)."""
    schema = prompts.answer_schema(task) if task and backend.asks_for_schema else None
    return ModelCall(model=backend.model, api_base=backend.memo_address, system=prompts.SYSTEM, prompt=prompt,
                     images=images, options=answer_limit(backend.call_options(), prompts.task_of(prompt)),
                     response_schema=schema, profile=backend.model_profile)


def answer_limit(options: dict, task: str | None) -> dict:
    """The call's options with max_tokens no higher than its task's limit (prompts.MAX_TOKENS): a model that repeats
    one item until the limit costs a short answer's time, not a long one's."""
    limit = prompts.MAX_TOKENS.get(task or "")
    if limit is None:
        return options
    return options | {"max_tokens": min(limit, options.get("max_tokens") or limit)}


def _reading_data(r: Reading) -> dict:
    """A reading as the final review sees it; a doubtful one says so, and why (its status and reason)."""
    data = r.model_dump(include={"text", "romanized", "translation", "unclear", "confirmed", "tiles"}, exclude_none=True)
    if r.status and r.status != "confirmed":
        data |= {"doubtful": r.status, "reason": r.reason}
    return {k: v for k, v in data.items() if v not in ([], False) or k == "unclear"}


def _observation_data(o: Observation) -> dict:
    data: dict = {"view": o.view, "phase": o.phase}
    if o.readings:
        data["readings"] = [r.model_dump(include={"text", "romanized", "translation", "unclear"}, exclude_none=True)
                            for r in o.readings]
    if o.items:
        data["items"] = o.items
    if o.notes:
        data["notes"] = o.notes
    return data


# --- reading the answers -------------------------------------------------------------------------------------

def parse_json_object(text: str) -> dict | None:
    """The JSON object in a model's answer: bare, fenced, or surrounded by prose. None when there is none."""
    candidates = [text.strip()]
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_observation(view: View, phase: str, reply: ModelReply, tiles: dict[str, Box]) -> Observation:
    """Structured when the model gave the JSON asked for. Otherwise the whole answer is kept as notes, and what it
    quotes or lists is still taken as readings (source "prose"). tiles: the plan's tile boxes, to place readings."""
    answer = dialects.strip_thinking(reply.content)[0]  # a think block is never a source of readings
    data = answer_data(answer, phase)
    read = functools.partial(_readings, view=view, tiles=tiles, profile=reply.profile or DEFAULT_PROFILE)
    if data is None:
        texts = readings_in_prose(answer, lists=phase == "text") if phase in ("text", "inspect") else []
        readings = [read([{"text": t, "where": where}], source="prose") for t, where in texts]
        return Observation(view=view.id, phase=phase, readings=[r for rs in readings for r in rs],
                           notes=answer.strip(), structured=False, reply=reply)
    return Observation(
        view=view.id, phase=phase, readings=read(data.get("readings")),
        items=_strings(data.get("items")), notes=_text(data.get("notes")), reply=reply,
    )


def answer_data(answer: str, phase: str) -> dict | None:
    """The JSON an answer (its thinking removed) holds: whole, else the complete items of a looped or cut-off
    one, else (a text question) PaliGemma's <loc> readings. None: the answer is prose."""
    data = parse_json_object(answer)
    if data is None and dialects.broken(answer):
        data = dialects.salvaged(answer)
    if data is None and phase in ("text", "inspect") and dialects.loc_readings(answer):
        data = {"readings": dialects.loc_readings(answer)}
    return data


def _readings(value, view: View, tiles: dict[str, Box], profile: Profile, source: str = "json") -> list[Reading]:
    readings: list[Reading] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str) and (text := sign_text(item)):
            readings.append(_placed(Reading(text=text, views=[view.id]), None, None, view, tiles))
        elif isinstance(item, dict) and (text := sign_text(_text(item.get("text")))):
            reading = Reading(
                text=text, romanized=_text(item.get("romanized")) or None,
                translation=_text(item.get("translation")) or None, unclear=bool(item.get("unclear", False)),
                views=[view.id], source=source)
            where = item.get("where") or item.get("position")
            box = dialects.thousandths(dialects.box_of(item), profile, view.sent_px)
            readings.append(_placed(reading, box, where if isinstance(where, str) else None, view, tiles))
    return readings


def _placed(reading: Reading, box, where: str | None, view: View, tiles: dict[str, Box]) -> Reading:
    """The reading with where it lies: the box the view gave (in thousandths of the crop), else the place it
    named, else only the view's tiles."""
    located = box_in_image(box, view.box) or place_box(where, view.box)
    if located:
        reading.box = located
        reading.tiles, reading.on_tile_line = tiles_of(located, tiles)
    else:
        reading.tiles = [cell_label(c) for c in view.cells]
    return reading


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    return [_text(v) for v in value if _text(v)] if isinstance(value, list) else []


def _text(value) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def make_tile_report(plan: Plan, tile: View, observations: list[Observation], reply: ModelReply | None) -> TileReport:
    """Readings and subjects are merged here, in code, so the synthesis call cannot lose them: the tile's readings
    are those of all views touching it that lie in it.
    reply is None when no synthesis call was needed: one phase (the summary is the tile's own notes) or a tile
    that was asked nothing."""
    data = (parse_json_object(reply.content) or {}) if reply else {}
    own_notes = " ".join(o.notes for o in observations if o.view == tile.id and o.notes)
    summary = _text(data.get("summary")) or (reply.content.strip() if reply else own_notes or (
        "Inspected." if observations else "Not inspected."))
    # the tile's own characteristics, else those of a coarser view over it (a shaped plan's whole image)
    characteristics = _text(data.get("characteristics")) or next(
        (o.notes for o in sorted(observations, key=lambda o: o.view != tile.id) if o.phase == "characteristics"), "")
    col, row = tile.cells[0]
    readings = [r for r in run_readings(plan, observations) if tile.id in r.tiles]
    return TileReport(
        tile=tile.id, position={"row": row + 1, "col": col + 1}, box=tile.box, report=summary, readings=readings,
        subjects=list(dict.fromkeys(i for o in observations for i in o.items)),
        characteristics=characteristics, views=sorted({o.view for o in observations}),
    )


def run_readings(plan: Plan, observations: list[Observation]) -> list[Reading]:
    """Every reading the views made, one per sign with its evidence, confirmed first."""
    tiles = plan.tile_boxes
    grouped = group_readings([r for o in observations for r in o.readings], tiles)
    return in_reading_order(grouped, list(tiles))


def answers(plan: Plan, observed: dict[str, list[Observation]]) -> list[ViewAnswer]:
    """Every view's raw answers, in the plan's order."""
    return [ViewAnswer(view=v.id, kind=v.kind, phase=o.phase, box=v.box, structured=o.structured, answer=o.reply.content,
                       answer_chars=len(o.reply.content), answer_tokens=o.reply.usage.get("completion_tokens"))
            for v in plan.views for o in observed.get(v.id, [])]


def complete_review(review: str, readings: list[Reading]) -> str:
    """The model's review, and after it every reading of the run, confirmed ones first, then the unconfirmed, then
    those probably not in the image, each with its tiles and reason: none is lost, whatever the model wrote, and a
    reader sees which to trust."""
    parts = [review.rstrip()]
    for title, group in reading_groups(readings):
        if group:
            parts.append(f"{title}:\n" + "\n".join(map(reading_line, group)))
    return "\n\n".join(parts)


READING_GROUPS = (
    ("confirmed", "Readings confirmed (a witness independent of the model read the same text there)"),
    ("unconfirmed", "Readings not confirmed (no independent witness agreed: check them)"),
    ("probably_absent", "Probably not in the image (no text where the model read it)"),
)


def status_of(r: Reading) -> str:
    """confirmed, unconfirmed or probably_absent; a reading no witness judged: by its confirmed flag."""
    return r.status or ("confirmed" if r.confirmed else "unconfirmed")


def reading_groups(readings: list[Reading]) -> list[tuple[str, list[Reading]]]:
    """(title, its readings) for confirmed, unconfirmed and probably absent readings, in that order."""
    return [(title, [r for r in readings if status_of(r) == status]) for status, title in READING_GROUPS]


def reading_line(r: Reading) -> str:
    where = ", ".join(r.tiles) + (" (on a tile line)" if r.on_tile_line else "")
    extra = (f" ({r.romanized})" if r.romanized else "") + (f" — {r.translation}" if r.translation else "")
    flags = (" (unclear)" if r.unclear else "") + (f"; also read as {', '.join(repr(v) for v in r.variants)}"
                                                   if r.variants else "")
    reason = f" — {r.reason}" if r.reason and status_of(r) != "confirmed" else ""
    return f'- "{r.text}"{extra} in {where or "?"}{flags}{reason}'


# --- the second look's views -----------------------------------------------------------------------------------

def original_image(plan: Plan) -> Callable[[], Image.Image]:
    """The plan's image, when called: a rerun whose crops are all stored reads nothing. The last two images
    decoded (or cut into views by prepare) are kept in the process, so a review's local steps (each view's
    witnesses, the second look, the evidence) decode a photo once at most. Raises BadImage when the file is gone or
    is no longer the image the plan was cut from (its bytes are hashed at every call: far less than a decoding)."""
    return functools.partial(_decoded, plan.image_path, plan.image_sha256)


_RECENT: dict[tuple[str, str], Image.Image] = {}  # (path, sha256) -> the image, the last two decoded or cut
_RECENT_LOCK = threading.Lock()


def _decoded(path: str, sha256: str) -> Image.Image:
    data = read_image_file(path)
    if sha256_hex(data) != sha256:
        raise BadImage(f"{path} changed after the run started")
    with _RECENT_LOCK:
        image = _RECENT.get((path, sha256))
    return image if image is not None else _keep_decoded(path, sha256, decode_image(data, path).image)


def _keep_decoded(path: str, sha256: str, image: Image.Image) -> Image.Image:
    with _RECENT_LOCK:
        _RECENT.pop((path, sha256), None)
        _RECENT[(path, sha256)] = image
        while len(_RECENT) > 2:
            del _RECENT[next(iter(_RECENT))]
    return image


def detail_views(plan: Plan, image: Callable[[], Image.Image], boxes: list[Box], blobs: BlobStore, zoom_px: int,
                 first: int = 1) -> list[View]:
    """Closer crops of the image, each enlarged (or shrunk) to zoom_px on its long side, asked the text phase only.
    Named d1, d2, …; a blank crop is asked nothing. Each crop is kept by the image, its box and size."""
    tiles = {t.id: t for t in plan.tiles}
    picture = functools.cache(image)  # read and checked once for all the crops
    views = []
    for n, box in enumerate(boxes, start=first):
        key = canonical_sha256(["detail", PLAN_VERSION, plan.image_sha256, list(box), zoom_px])
        kept = blobs.get_plan(key)
        sha, blank = json.loads(kept) if kept else (None, False)
        if sha is None or not blobs.has(sha):
            crop = picture().crop(box).resize(zoomed_size(box, zoom_px), Image.Resampling.LANCZOS)
            sha, blank = blobs.put(encode_view(crop)), is_blank(crop)
            blobs.put_plan(key, json.dumps([sha, blank]))
        cells = [tiles[t].cells[0] for t in tiles if _overlaps(box, tiles[t].box)]
        views.append(View(id=f"d{n}", kind="detail", cells=cells, box=box, image_sha256=sha,
                          phases=[] if blank else ["text"], sent_px=zoomed_size(box, zoom_px)))
    return views


def zoomed_size(box: Box, zoom_px: int) -> tuple[int, int]:
    """The size of a crop of box enlarged (or shrunk) to zoom_px on its long side."""
    width, height = box[2] - box[0], box[3] - box[1]
    scale = zoom_px / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def report_dir_name(plan: Plan, backend: Backend) -> str:
    # letters and digits of any script stay (看板.jpg is 看板-…, not --…); what a shell or a file system minds goes
    stem = re.sub(r"[^\w.-]+", "-", Path(plan.image_path).stem).strip("-.")[:40] or "image"
    settings = f"{backend.model}|{','.join(backend.addresses)}|{plan.cols}x{plan.rows}|{','.join(plan.phases)}"
    return f"{stem}-{plan.image_sha256[:8]}-{canonical_sha256(settings)[:8]}"

