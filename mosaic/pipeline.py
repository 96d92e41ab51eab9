"""The steps of a review as plain functions. tasks/ wraps them for Prefect; nothing here needs Prefect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from . import prompts
from .backend import Backend
from .errors import BadOption
from .images import decode_image, encode_view, read_image_file, sha256_hex, shrink
from .memo import BlobStore
from .readings import merge_readings, squash
from .schema import ModelCall, ModelReply, Observation, Plan, Reading, TileReport, View, canonical_sha256, phases_for
from .tiles import cell_label, choose_grid, input_px_for, neighbor_pairs, seam_box, tile_boxes


def encoder_px(backend: Backend, density: str, stated: int | None = None) -> int | None:
    """The model's encoder size for choosing the grid (see tiles.input_px_for). The backend is asked only where the
    answer matters (density auto) and the user has not stated it."""
    reported = backend.reported_encoder_px() if density == "auto" and not stated else None
    return input_px_for(backend.model, backend.offline_budget, stated, reported)


def prepare(image_path: str, density: str, grid: str | None, phases: list[str], backend: Backend, blobs: BlobStore,
            orientation_px: int = 1280, view_px: int = 1280, skip_blank: bool = False,
            input_px: int | None = None) -> Plan:
    """Decode the image once, choose the grid, cut every view, store each by its sha256, fix the plan.

    skip_blank: views with nothing on them (is_blank) are asked nothing, so they cost no call.
    input_px: the model's encoder size as the user states it (for density auto), else as encoder_px finds it.
    A plan is kept by the sha256 of the file and these settings, so a rerun decodes and cuts nothing."""
    input_px = encoder_px(backend, density, input_px)
    model = backend.model
    data = read_image_file(image_path)
    key = canonical_sha256([PLAN_VERSION, sha256_hex(data),
                            [density, grid, list(phases), model, input_px, orientation_px, view_px, skip_blank]])
    kept = _kept_plan(blobs, key, image_path)
    if kept:
        return kept
    loaded = decode_image(data, str(image_path))
    image = loaded.image
    width, height = image.size
    try:
        cols, rows, density = choose_grid(width, height, density, grid, model, input_px)
    except ValueError as e:
        raise BadOption(str(e)) from None
    boxes = tile_boxes(width, height, cols, rows)
    crops = [(cell_label(cell), "tile", [cell], box) for cell, box in boxes.items()]
    crops += [("|".join(map(cell_label, (a, b))), "seam", [a, b], seam_box(boxes[a], boxes[b], height))
              for a, b in neighbor_pairs(cols, rows)]
    views = [_view(blobs, image, *crop, view_px, phases, skip_blank) for crop in crops]
    overview = blobs.put(encode_view(shrink(image, orientation_px)))
    plan = Plan(
        image_path=str(image_path), image_sha256=loaded.sha256, width=width, height=height, notes=loaded.notes,
        cols=cols, rows=rows, density=density, phases=list(phases), overview_sha256=overview, views=views,
    )
    blobs.put_plan(key, plan.model_dump_json())
    return plan


PLAN_VERSION = 2  # part of every plan's key: raise it when the way views are cut or encoded changes


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


def _view(blobs: BlobStore, image, view_id: str, kind: str, cells: list, box, view_px: int, phases: list[str],
          skip_blank: bool = False) -> View:
    crop = shrink(image.crop(box), view_px)
    asked = [] if skip_blank and is_blank(crop) else phases_for(kind, phases)  # a blank view costs no call
    return View(id=view_id, kind=kind, cells=cells, box=box, image_sha256=blobs.put(encode_view(crop)), phases=asked)


def orientation_call(plan: Plan, backend: Backend) -> ModelCall:
    return model_call(backend, prompts.orientation_prompt(plan.cols, plan.rows), [plan.overview_sha256])


def view_call(plan: Plan, view: View, phase: str, orientation: str, backend: Backend) -> ModelCall:
    common = dict(cols=plan.cols, rows=plan.rows, box=list(view.box))
    if view.kind == "seam":
        a, b = view.id.split("|")
        where = prompts.SEAM_WHERE.format(a=a, b=b, **common)
    else:
        where = prompts.TILE_WHERE.format(label=view.id, width=plan.width, height=plan.height, **common)
    return model_call(backend, prompts.view_prompt(phase, orientation, where), [view.image_sha256])


def tile_synthesis_call(plan: Plan, tile: View, observations: list[Observation], orientation: str, backend: Backend) -> ModelCall:
    data = [_observation_data(o) for o in observations]
    return model_call(backend, prompts.tile_synthesis_prompt(orientation, tile.id, tile.box, data), [])


def final_call(plan: Plan, orientation: str, reports: list[TileReport], backend: Backend) -> ModelCall:
    data = [
        {"tile": r.tile, "summary": r.report, "readings": [x.model_dump(exclude_none=True) for x in r.readings],
         "subjects": r.subjects, "characteristics": r.characteristics}
        for r in reports
    ]
    return model_call(backend, prompts.final_prompt(orientation, plan.cols, plan.rows, data), [plan.overview_sha256])


def model_call(backend: Backend, prompt: str, images: list[str]) -> ModelCall:
    """The call as the memo keys it: everything that decides the answer."""
    return ModelCall(model=backend.model, api_base=backend.api_base, system=prompts.SYSTEM, prompt=prompt,
                     images=images, options=backend.call_options())


def _observation_data(o: Observation) -> dict:
    data: dict = {"view": o.view, "phase": o.phase}
    if o.readings:
        data["readings"] = [r.model_dump(exclude_none=True, exclude={"views"}) for r in o.readings]
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


def parse_observation(view: View, phase: str, reply: ModelReply) -> Observation:
    """Structured when the model gave the JSON asked for; otherwise the whole answer is kept as notes."""
    data = parse_json_object(reply.content)
    if data is None:
        return Observation(view=view.id, phase=phase, notes=reply.content.strip(), structured=False, reply=reply)
    return Observation(
        view=view.id, phase=phase, readings=_readings(data.get("readings"), view.id), items=_strings(data.get("items")),
        notes=_text(data.get("notes")), reply=reply,
    )


def _readings(value, view_id: str) -> list[Reading]:
    readings: list[Reading] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str) and item.strip():
            readings.append(Reading(text=item.strip(), views=[view_id]))
        elif isinstance(item, dict) and _text(item.get("text")):
            readings.append(Reading(
                text=_text(item.get("text")), romanized=_text(item.get("romanized")) or None,
                translation=_text(item.get("translation")) or None, unclear=bool(item.get("unclear", False)), views=[view_id],
            ))
    return readings


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    return [_text(v) for v in value if _text(v)] if isinstance(value, list) else []


def _text(value) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def make_tile_report(tile: View, observations: list[Observation], reply: ModelReply | None) -> TileReport:
    """Readings and subjects are merged here, in code, so the synthesis call cannot lose them.
    reply is None when no synthesis call was needed: one phase (the summary is the tile's own notes) or a tile
    that was asked nothing."""
    data = (parse_json_object(reply.content) or {}) if reply else {}
    own_notes = " ".join(o.notes for o in observations if o.view == tile.id and o.notes)
    summary = _text(data.get("summary")) or (reply.content.strip() if reply else own_notes or (
        "Inspected." if observations else "Not inspected."))
    characteristics = _text(data.get("characteristics")) or next(
        (o.notes for o in observations if o.phase == "characteristics" and o.view == tile.id), "")
    col, row = tile.cells[0]
    return TileReport(
        tile=tile.id, position={"row": row + 1, "col": col + 1}, box=tile.box, report=summary,
        readings=merge_readings([r for o in observations for r in o.readings]),
        subjects=list(dict.fromkeys(i for o in observations for i in o.items)),
        characteristics=characteristics, views=sorted({o.view for o in observations}),
    )


def complete_review(review: str, reports: list[TileReport]) -> tuple[str, list[Reading]]:
    """All readings of the run, and the review with any reading it left out appended, so none is lost."""
    readings = merge_readings([r for t in reports for r in t.readings])
    present = squash(review)
    missing = [r for r in readings if squash(r.text) not in present]
    if missing:
        lines = [f"- \"{r.text}\" ({', '.join(r.views)}){' (unclear)' if r.unclear else ''}" for r in missing]
        review = review.rstrip() + "\n\nAlso read in the tiles:\n" + "\n".join(lines)
    return review, readings


def report_dir_name(plan: Plan, backend: Backend) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(plan.image_path).stem)[:40] or "image"
    settings = f"{backend.model}|{backend.api_base}|{plan.cols}x{plan.rows}|{','.join(plan.phases)}"
    return f"{stem}-{plan.image_sha256[:8]}-{canonical_sha256(settings)[:8]}"

