"""The built-in offline backend: an honest reader, not a vision-language model.

It reads text with RapidOCR (its ONNX weights ship inside the wheel) and measures brightness, contrast, colour
and sharpness. Every image is first shrunk to a budget (448 px on the long side by default), the way a small
model's encoder shrinks what it is given, so tiling helps it for the same reason it helps a small VLM. It does
not recognise objects and says so; synthesis calls collate what the earlier calls reported."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..images import shrink
from ..llm import Completion
from ..prompts import task_of
from ..readings import merge_readings
from ..schema import Reading

DEFAULT_BUDGET = 448
UNCLEAR_BELOW = 0.80  # OCR confidence under which a reading is marked unclear

_engines: dict[bool, object] = {}
_engine_lock = threading.Lock()
TextLine = tuple[str, float, tuple[float, float, float, float]]


class PixelCache:
    """A reader's lines per image, by the sha256 of its pixels, the 256 most recent; thread-safe (two threads may
    both read one image)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._lines: OrderedDict[str, list[TextLine]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image: Image.Image, read: Callable[[Image.Image], list[TextLine]]) -> list[TextLine]:
        key = hashlib.sha256(image.tobytes()).hexdigest()
        with self._lock:
            if key in self._lines:
                self._lines.move_to_end(key)
                return self._lines[key]
        found = read(image)
        with self._lock:
            self._lines[key] = found
            while len(self._lines) > self.size:
                self._lines.popitem(last=False)
        return found


class OfflineReader:
    """The reader at one budget, as a completion function (Mosaic's call seam), with its own OCR cache: a new
    reader reads everything afresh."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self._ocr = PixelCache()

    def __reduce__(self):  # pickles as its budget; the cache stays in its process
        return type(self), (self.budget,)

    def __call__(self, call, messages: list[dict], api_key: str | None = None, timeout_s: float = 0.0) -> Completion:
        return Completion(self.answer(messages), "stop", {})

    def answer(self, messages: list[dict]) -> str:
        prompt, images = _split(messages)
        budget = self.budget
        task = task_of(prompt)
        if task in ("tile-synthesis", "final-review"):
            return collate_tile(prompt) if task == "tile-synthesis" else final_review(prompt, images)
        if not images:
            return "The offline reader only reads images; this request has none."
        image = images[0]
        if task == "orientation":
            return self.orientation(image, prompt)
        readings = [_reading(t, conf, box) for t, conf, box in self.read_text(image)]
        if task == "text":
            return _json({"readings": readings, "notes": f"offline OCR at {budget} px"})
        if task == "subjects":
            return _json(self.subjects(image))
        if task == "characteristics":
            return _json({"notes": characteristics(image)})
        if task == "inspect":
            found = self.subjects(image)
            return _json({"readings": readings, "items": found["items"], "notes": characteristics(image)})
        lines = [f"- {r['text']}" for r in readings] or ["(no text read)"]
        return "Text read by the offline OCR reader:\n" + "\n".join(lines)

    def read_text(self, image: Image.Image) -> list[TextLine]:
        """(text, confidence, box as fractions of the image) for each text line OCR finds at the budget size."""
        return self._ocr.get(image, lambda img: read_text(img, self.budget))

    def orientation(self, image: Image.Image, prompt: str) -> str:
        return orientation(image, self.budget, prompt, self.read_text(image))

    def subjects(self, image: Image.Image) -> dict:
        return subjects(self.read_text(image))


def read_text(image: Image.Image, budget: int) -> list[TextLine]:
    """(text, confidence, box as fractions of the image) for each text line OCR finds at the budget size."""
    small = shrink(image, budget)
    with _engine_lock:
        result, _ = _ocr()(np.asarray(small), return_word_box=True)
    gray = np.asarray(small.convert("L"), dtype=np.int16)
    found = []
    for quad, text, conf, *char_boxes in result or []:
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        x0, y0 = max(0, int(min(xs))), max(0, int(min(ys)))
        line = gray[y0:int(max(ys)) + 1, x0:int(max(xs)) + 1]
        centres = [(min(p[0] for p in q) + max(p[0] for p in q)) / 2 - x0 for q in (char_boxes[0] if char_boxes else [])]
        text = with_word_spaces(text, centres, word_gaps(blank_runs(line, min_width=1), line.shape[0]))
        box = (min(xs) / small.width, min(ys) / small.height, max(xs) / small.width, max(ys) / small.height)
        if text.strip():
            found.append((text.strip(), float(conf), box))
    return found


def blank_runs(line: np.ndarray, min_width: int) -> list[tuple[int, int]]:
    """[start, end) of each run of at least `min_width` columns without ink inside a text line's grey pixels, not
    counting the margins. Ink is anything far from the line's background (its median), dark or light."""
    if line.size == 0:
        return []
    background = np.median(line)
    ink = (np.abs(line - background) > 0.4 * max(1, int(line.max()) - int(line.min()))).any(axis=0)
    inked = np.flatnonzero(ink)
    if inked.size == 0:
        return []
    runs, start = [], None
    for x in range(int(inked[0]), int(inked[-1]) + 1):
        if not ink[x] and start is None:
            start = x
        elif ink[x] and start is not None:
            if x - start >= min_width:
                runs.append((start, x))
            start = None
    return runs


MIN_SPACED_PX = 12  # a line less tall than this has letter gaps as wide as its spaces: it is left as read


def word_gaps(runs: list[tuple[int, int]], height: int) -> list[tuple[int, int]]:
    """The blank runs of a line wide enough to be a space: at least 0.3 of the line's height and 1.6 times its usual
    gap between letters (a font that sets its letters apart does not split its words); none in a line under
    MIN_SPACED_PX."""
    if height < MIN_SPACED_PX:
        return []
    widths = sorted(b - a for a, b in runs)
    usual = widths[len(widths) // 2] if widths else 0
    return [(a, b) for a, b in runs if b - a >= max(3, 0.3 * height, 1.6 * usual)]


def with_word_spaces(text: str, char_centres: list[float], gaps: list[tuple[int, int]]) -> str:
    """`text` with a space put back between two letters or digits that have a word gap (a blank run) between them.

    RapidOCR's recognizer often drops the spaces of small Latin text ("Main St 42" read as "MainSt42"); the line's
    pixels still show them. `char_centres` is where each character was read, in the same columns as `gaps`; when
    they do not match the text one to one the text is returned unchanged. CJK runs are never split."""
    if len(char_centres) != len(text):
        return text
    word_char = lambda c: c.isascii() and c.isalnum()  # noqa: E731
    spaced = []
    for i, c in enumerate(text):
        spaced.append(c)
        if i + 1 < len(text) and word_char(c) and word_char(text[i + 1]) and any(
                char_centres[i] < (a + b) / 2 < char_centres[i + 1] for a, b in gaps):
            spaced.append(" ")
    return "".join(spaced)


def orientation(image: Image.Image, budget: int, prompt: str, texts: list[TextLine]) -> str:
    m = re.search(r"(\d+)×(\d+) grid", prompt)
    cols, rows = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    where = [f"'{t}' near r{min(rows, int((b[1] + b[3]) / 2 * rows)) + 1}c{min(cols, int((b[0] + b[2]) / 2 * cols)) + 1}" for t, _, b in texts]
    read = f"At {budget} px it reads {len(texts)} text line(s): {', '.join(where)}." if texts else f"At {budget} px no text is legible."
    return (
        f"Offline reader (OCR and image measurements, no scene understanding). A {image.width}×{image.height} image; "
        f"{characteristics(image)} {read} Regions worth a close look: every tile, for small text."
    )


def subjects(texts: list[TextLine]) -> dict:
    items = [f"a sign or label with text ({_place(b)})" for _, _, b in texts]
    return {"items": items, "notes": "The offline reader does not recognise objects; it lists only where it found text."}


def characteristics(image: Image.Image) -> str:
    small = np.asarray(shrink(image, 512).convert("RGB"), dtype=np.float32)
    grey = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    brightness, contrast = float(grey.mean()), float(grey.std())
    lap = grey[1:-1, 1:-1] * 4 - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    sharpness = float(lap.var()) if lap.size else 0.0
    r, g, b = (float(small[..., i].mean()) for i in range(3))
    saturation = float((small.max(axis=2) - small.min(axis=2)).mean())
    light = "dark" if brightness < 60 else "dim" if brightness < 100 else "bright" if brightness > 180 else "moderately lit"
    cast = "neutral colour" if max(r, g, b) - min(r, g, b) < 12 else f"a {('red', 'green', 'blue')[int(np.argmax([r, g, b]))]} cast"
    focus = "soft or blurred" if sharpness < 50 else "sharp"
    return (
        f"Lighting {light} (mean brightness {brightness:.0f}/255), contrast {contrast:.0f}, {cast}, "
        f"saturation {saturation:.0f}, focus {focus} (Laplacian variance {sharpness:.0f})."
    )


def collate_tile(prompt: str) -> str:
    observations = _data_block(prompt, "OBSERVATIONS")
    readings = [r.get("text", "") for o in observations for r in o.get("readings", []) if isinstance(r, dict)]
    notes = [o.get("notes", "") for o in observations if o.get("phase") == "characteristics" and o.get("notes")]
    seen = list(dict.fromkeys(t for t in readings if t))
    summary = f"Text read here: {', '.join(repr(t) for t in seen)}." if seen else "No legible text in this tile."
    return _json({"summary": summary, "characteristics": notes[0] if notes else ""})


def final_review(prompt: str, images: list[Image.Image]) -> str:
    """Every distinct text the tiles reported, once, with the tiles it was read in; fragments of a longer
    reading (a sign cut by a tile line) are folded into it (the merge every report uses)."""
    readings = [Reading(text=str(r.get("text", "")), unclear=bool(r.get("unclear")), views=[str(report.get("tile"))])
                for report in _data_block(prompt, "TILE REPORTS") for r in report.get("readings", [])]
    merged = merge_readings(readings)
    lines = ["Offline review by Mosaic's built-in reader (OCR and image measurements; it does not recognise objects).",
             "", f"Text read ({len(merged)} distinct):"]
    lines += [f'- "{r.text}{" (unclear)" if r.unclear else ""}" in {", ".join(r.views)}' for r in merged] or [
        "- none legible"]
    if images:
        lines += ["", "Whole image: " + characteristics(images[0])]
    return "\n".join(lines)


def _data_block(prompt: str, name: str) -> list[dict]:
    m = re.search(rf"<<<{name}\n(.*)\n{name}>>>", prompt, re.S)
    try:
        data = json.loads(m.group(1)) if m else []
    except json.JSONDecodeError:
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _reading(text: str, conf: float, box: tuple[float, float, float, float]) -> dict:
    return {"text": text, "romanized": None, "translation": None, "unclear": conf < UNCLEAR_BELOW,
            "box": [round(1000 * min(1.0, max(0.0, v))) for v in box]}


def _place(box: tuple[float, float, float, float]) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    return f"{vertical} {horizontal}"


def _split(messages: list[dict]) -> tuple[str, list[Image.Image]]:
    texts: list[str] = []
    images: list[Image.Image] = []
    for message in messages:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
                images.append(_decode(url))
    user_text = texts[-1] if texts else ""
    return user_text, images


def _decode(url: str) -> Image.Image:
    data = url.split(",", 1)[1] if url.startswith("data:") else url
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _ocr(at_own_size: bool = False):
    """RapidOCR's engine (made once per process). at_own_size: one that detects on a picture at its own size (up to
    2000 px); the other enlarges a short side under 736 px to that first, as RapidOCR does by default."""
    if at_own_size not in _engines:
        from rapidocr_onnxruntime import RapidOCR

        _engines[at_own_size] = RapidOCR(det_limit_type="max", det_limit_side_len=2000) if at_own_size else RapidOCR()
    return _engines[at_own_size]


def _json(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)
