"""Answers as small VLMs write them, whatever the prompt asked: a thinking block first, boxes in the family's own
convention and under its own key (or as GLM's box tokens, PaliGemma's <loc> tokens), one item repeated until the
token limit, half a JSON document. Pure functions: the answer in, what it says out."""

from __future__ import annotations

import json
import math
import re

from .profiles import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, Profile

# --- thinking ------------------------------------------------------------------------------------------------

_THOUGHT = re.compile(r"<(think|thinking)>.*?</\1\s*>", re.S | re.I)
_CLOSE = re.compile(r"</think(?:ing)?\s*>", re.I)
_OPEN = re.compile(r"<think(?:ing)?>", re.I)
_WRAPPERS = re.compile(r"<\|begin_of_box\|>|<\|end_of_box\|>|</?answer>", re.I)  # GLM's answer and box tokens


def strip_thinking(text: str) -> tuple[str, str]:
    """(the answer, what the model thought). Removes <think>…</think> blocks; a closing tag alone (the chat template
    opened the block inside the prompt) drops everything before it; an opening tag never closed (cut off while
    thinking) drops everything after it. GLM's <|begin_of_box|>…<|end_of_box|> and <answer> wrappers go, their
    content stays."""
    thoughts: list[str] = []

    def aside(m: re.Match) -> str:
        thoughts.append(m.group(0))
        return ""

    answer = _THOUGHT.sub(aside, text)
    closes = list(_CLOSE.finditer(answer))
    if closes:
        thoughts.insert(0, answer[: closes[-1].end()])
        answer = answer[closes[-1].end():]
    opened = _OPEN.search(answer)
    if opened:
        thoughts.append(answer[opened.start():])
        answer = answer[: opened.start()]
    return _WRAPPERS.sub("", answer).strip(), "".join(thoughts).strip()


# --- boxes ---------------------------------------------------------------------------------------------------

BOX_KEYS = ("box", "bbox_2d", "bbox", "box_2d", "bounding_box")
_LOC = re.compile(r"<loc(\d{4})>")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def box_of(item: dict):
    """The box an answer's item gives, under whichever key the model used; None when it gives none."""
    return next((item[k] for k in BOX_KEYS if item.get(k) is not None), None)


def box_values(value) -> tuple[list[float], bool] | None:
    """(four numbers, whether they came as PaliGemma <loc> tokens) from a box as a model wrote it: a list, a list
    holding one list ([[x0, y0, x1, y1]]), a string of numbers, or <loc> tokens. None for anything else."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (list, str)):
        value = value[0]
    if isinstance(value, str):
        locs = _LOC.findall(value)
        if len(locs) >= 4:
            return [float(v) for v in locs[:4]], True
        value = _NUMBER.findall(value)
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return (numbers, False) if all(math.isfinite(v) for v in numbers) else None


def smart_resize(width: int, height: int, min_pixels: int = QWEN_MIN_PIXELS, max_pixels: int = QWEN_MAX_PIXELS,
                 factor: int = 28) -> tuple[int, int]:
    """The size Qwen2.5-VL's processor resizes an image to (qwen-vl-utils' smart_resize): each side a multiple of
    28, the area between min_pixels and max_pixels, the aspect ratio kept."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


def guessed_convention(values: list[float]) -> str:
    """For a model whose convention is not known: pixels when a value passes 1000, fractions when none passes 1."""
    top = max(values)
    return "pixels" if top > 1000 else "fractions" if top <= 1.0 else "thousandths"


def crop_fractions(value, profile: Profile, sent_px: tuple[int, int] | None) -> tuple[float, float, float, float] | None:
    """A box as the model wrote it, as (x0, y0, x1, y1) fractions of the crop, clamped at its edge; None when there
    is no box, or none that can be placed (pixels without the sent size, nothing left inside the crop).
    sent_px: the crop's size as Mosaic sent it."""
    found = box_values(value)
    if found is None:
        return None
    values, as_locs = found
    convention = "loc-yx" if as_locs else profile.box
    if convention in ("auto", "words"):
        convention = guessed_convention(values)
    a, b, c, d = values
    if convention == "qwen-pixels" and sent_px:
        w, h = smart_resize(*sent_px, profile.resize_min_pixels, profile.resize_max_pixels)
        x0, y0, x1, y1 = a / w, b / h, c / w, d / h
    elif convention == "pixels" and sent_px:
        x0, y0, x1, y1 = a / sent_px[0], b / sent_px[1], c / sent_px[0], d / sent_px[1]
    elif convention == "thousandths":
        x0, y0, x1, y1 = a / 1000, b / 1000, c / 1000, d / 1000
    elif convention == "thousandths-yx":
        x0, y0, x1, y1 = b / 1000, a / 1000, d / 1000, c / 1000
    elif convention == "fractions":
        x0, y0, x1, y1 = a, b, c, d
    elif convention == "loc-yx":
        x0, y0, x1, y1 = b / 1024, a / 1024, d / 1024, c / 1024
    else:
        return None
    x0, x1 = sorted((_clamped(x0), _clamped(x1)))
    y0, y1 = sorted((_clamped(y0), _clamped(y1)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _clamped(v: float) -> float:
    return min(1.0, max(0.0, v))


def thousandths(value, profile: Profile, sent_px: tuple[int, int] | None) -> list[float] | None:
    """crop_fractions as [x0, y0, x1, y1] in thousandths of the crop (what readings.box_in_image places)."""
    box = crop_fractions(value, profile, sent_px)
    if box is None or box[2] * 1000 <= 1 and box[3] * 1000 <= 1:  # read as fractions again: too small to place
        return None
    return [round(v * 1000, 3) for v in box]


_LOC_ITEM = re.compile(r"((?:<loc\d{4}>){4})\s*([^;<\n]+)")


def loc_readings(answer: str) -> list[dict]:
    """PaliGemma's detect/OCR answer ("<loc0100><loc0200><loc0300><loc0400> EXIT ; …") as readings with boxes."""
    return [{"text": label.strip(), "box": locs} for locs, label in _LOC_ITEM.findall(answer) if label.strip()]


# --- loops and cut-offs --------------------------------------------------------------------------------------

LOOP_MIN_CHARS = 200  # a tail repeating one stretch of text at least this long (and four times) is a loop
LOOP_MAX_PERIOD = 400


def looped(text: str) -> bool:
    """The answer ends repeating one stretch of text (a period of up to LOOP_MAX_PERIOD characters) at least four
    times over at least LOOP_MIN_CHARS: a model caught in a loop, stopped by the token limit."""
    for period in range(1, LOOP_MAX_PERIOD + 1):
        span = max(4 * period, LOOP_MIN_CHARS)
        if len(text) < span + period:
            break
        tail = text[-(span + period):]
        if tail[:-period] == tail[period:]:
            return True
    return False


def cut_off(text: str) -> bool:
    """A JSON answer that stops before its end: an object or array left open, or a string left unclosed (also when
    the server said it stopped: LiteLLM's ollama_chat reports "stop" for Ollama's "length")."""
    start = text.find("{")
    if start < 0:
        return False
    depth, in_string, escaped = 0, False, False
    for ch in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return False  # one whole value: what follows is prose or a fence
    return True


def broken(text: str) -> bool:
    """Looped or cut off: the answer is worth asking again with a lower token limit."""
    return looped(text) or cut_off(text)


def salvaged(text: str) -> dict | None:
    """What a looped or cut-off JSON answer holds whole: each list's complete items (an item repeated by a loop
    once), and its notes if complete. None when nothing is whole."""
    decoder = json.JSONDecoder()
    data: dict = {}
    for key in ("readings", "items"):
        m = re.search(rf'"{key}"\s*:\s*\[', text)
        if not m:
            continue
        items, seen, at = [], set(), m.end()
        while True:
            at = _skip(text, at, " \n\r\t,")
            try:
                item, at = decoder.raw_decode(text, at)
            except ValueError:
                break
            fingerprint = json.dumps(item, sort_keys=True, ensure_ascii=False)
            if fingerprint not in seen:
                seen.add(fingerprint)
                items.append(item)
        data[key] = items
    notes = re.search(r'"notes"\s*:\s*', text)
    if notes:
        try:
            data["notes"] = decoder.raw_decode(text, notes.end())[0]
        except ValueError:
            pass
    return data or None


def _skip(text: str, at: int, chars: str) -> int:
    while at < len(text) and text[at] in chars:
        at += 1
    return at
