"""A stand-in that answers as each small VLM family does: it takes an obedient answer (boxes in thousandths of the
crop, as Mosaic asks) and rewrites it in a family's dialect: Qwen2.5-VL's pixels of its resized input, 0-1000 under
bbox_2d, y first, 0-1 fractions, places in words, GLM's box tokens, PaliGemma's <loc> tokens, a think block of
invented guesses (with or without its opening tag), a loop until the token limit. For tests and benchmarks, served
by mosaic.offline.server.ModelServer."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

from PIL import Image

from mosaic.dialects import smart_resize
from mosaic.profiles import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS

DIALECTS = ("json", "qwen-pixels", "thousandths", "thousandths-yx", "fractions", "words", "glm", "loc-yx", "think",
            "think-unopened", "loop")
# The convention each dialect's boxes are in, as mosaic.profiles names it (what `mosaic probe` should find).
CONVENTION = {"json": "thousandths", "qwen-pixels": "qwen-pixels", "thousandths": "thousandths",
              "thousandths-yx": "thousandths-yx", "fractions": "fractions", "words": "words", "glm": "thousandths",
              "loc-yx": "loc-yx", "think": "thousandths", "think-unopened": "thousandths", "loop": "thousandths"}
INVENTED = "GHOST SIGN"  # what a think block guesses, never on the image: no reading may carry it
LOOP_CHARS = 4000  # ~ a 1024-token limit
# Ollama's answer (HTTP 400) when an image overflows num_ctx
OVERFLOW_BODY = json.dumps({"error": {"code": 400, "type": "exceed_context_size_error",
                                      "message": "the request exceeds the available context size, try increasing it"}})


def sent_size(messages: list[dict]) -> tuple[int, int] | None:
    """The size of the first image of a request (OpenAI-style messages)."""
    for m in messages:
        for part in m["content"] if isinstance(m.get("content"), list) else []:
            if part.get("type") == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                return Image.open(io.BytesIO(base64.b64decode(data))).size
    return None


def speak(answer: str, dialect: str, size: tuple[int, int] | None,
          resize_pixels: tuple[int, int] = (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)) -> str:
    """An obedient JSON answer (readings with boxes in thousandths of a crop of this size) in a dialect. An answer
    without readings (prose, other tasks) keeps its words; think dialects still think before it."""
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    readings = data.get("readings") if isinstance(data, dict) else None
    if isinstance(readings, list):
        if dialect == "loc-yx":
            return " ; ".join(f"{_locs(r['box'])} {r['text']}" for r in readings if r.get("box")) or "No text."
        data["readings"] = [_rewritten(r, dialect, size, resize_pixels) for r in readings]
        if dialect == "loop" and data["readings"]:
            return _looped(data)
        answer = json.dumps(data, ensure_ascii=False)
    if dialect == "think":
        return f"<think>{_guesses()}</think>\n{answer}"
    if dialect == "think-unopened":
        return f"{_guesses()}</think>\n\n{answer}"
    return answer


def _rewritten(reading: dict, dialect: str, size: tuple[int, int] | None, resize_pixels: tuple[int, int]) -> dict:
    box = reading.pop("box", None)
    if not isinstance(box, list) or len(box) != 4:
        return reading
    x0, y0, x1, y1 = box
    if dialect == "qwen-pixels" and size:
        w, h = smart_resize(*size, *resize_pixels)
        reading["bbox_2d"] = [round(x0 * w / 1000), round(y0 * h / 1000), round(x1 * w / 1000), round(y1 * h / 1000)]
    elif dialect == "thousandths":
        reading["bbox_2d"] = box
    elif dialect == "thousandths-yx":
        reading["box_2d"] = [y0, x0, y1, x1]
    elif dialect == "fractions":
        reading["bbox"] = [round(v / 1000, 4) for v in box]
    elif dialect == "words":
        reading["where"] = _words((x0 + x1) / 2000, (y0 + y1) / 2000)
    elif dialect == "glm":
        reading["box"] = f"<|begin_of_box|>{box}<|end_of_box|>"
    else:
        reading["box"] = box
    return reading


def _words(cx: float, cy: float) -> str:
    row = "top" if cy < 1 / 3 else "bottom" if cy >= 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx >= 2 / 3 else "centre"
    return f"{row} {col}"


def _locs(box: list) -> str:
    x0, y0, x1, y1 = (min(1023, int(v / 1000 * 1024)) for v in box)
    return f"<loc{y0:04d}><loc{x0:04d}><loc{y1:04d}><loc{x1:04d}>"


def _guesses() -> str:
    return (f'The crop might show "{INVENTED}" in the corner, maybe {{"readings": [{{"text": "{INVENTED}", '
            f'"box": [0, 0, 500, 500]}}]}}. Let me look again and answer.')


def _looped(data: dict) -> str:
    """The readings, then the last one again and again until the token limit cuts it mid-item."""
    text = json.dumps(data, ensure_ascii=False)
    head = text[: text.index('"readings": [') + len('"readings": [')]
    items = [json.dumps(r, ensure_ascii=False) for r in data["readings"]]
    body = ", ".join(items)
    while len(head) + len(body) < LOOP_CHARS:
        body += ", " + items[-1]
    return (head + body)[:LOOP_CHARS]


def in_dialect(inner: Callable[[list[dict], str], str], dialect: str) -> Callable[[list[dict], str], str]:
    """A ModelServer answer function: inner's answer, in the dialect."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")

    def answer(messages: list[dict], model: str) -> str:
        return speak(inner(messages, model), dialect, sent_size(messages))

    return answer


def model_for(dialect: str) -> str:
    """A model name whose table profile expects the dialect's convention (the family that speaks it)."""
    return {"qwen-pixels": "qwen2.5-vl-7b", "thousandths": "qwen3-vl-8b", "thousandths-yx": "gemini-2.0-flash",
            "fractions": "kimi-vl-a3b", "words": "gemma3-4b", "glm": "glm-4.1v-9b-thinking",
            "loc-yx": "paligemma2-3b", "think": "qwen3-vl-8b-thinking", "think-unopened": "qwen3-vl-8b-thinking",
            "loop": "internvl3-8b", "json": "fake-vl"}[dialect]

