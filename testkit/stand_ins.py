"""Stand-in models that behave like small local VLMs (2-10B), to measure Mosaic against.

A stand-in reads text with a real OCR engine (RapidOCR or Tesseract) on the image shrunk to an encoder's budget, then
answers the way small models do: it sometimes invents a sign, misreads a look-alike character, answers in prose or
in fenced JSON instead of bare JSON, and drops readings when it merges. It answers through Mosaic's call seam:

    MOSAIC_COMPLETION=testkit.stand_ins:completion MOSAIC_STAND_IN="reader=tesseract,invent=0.2,style=prose" mosaic run ...

or over HTTP (OpenAI and Ollama APIs):

    python -m testkit.stand_ins --port 8091 --spec "reader=rapidocr,misread=0.1"

Spec keys (comma-separated key=value): reader (rapidocr | tesseract), budget (px, long side), invent, misread, drop
(fractions 0-1), style (json | fenced | prose | mixed), positions (box | words | none), seed, misread_by (call | text:
with text, whether and how a text is misread depends on the reader and the text alone, so stand-ins of one "family"
misread the same signs the same way, as models of one family share errors, and one model misreads a word the same
way every time it sees it), boards (a scene's ground-truth JSON: on each of its blank sign boards, "blanks", the
stand-in reads a made-up text, the same in every view that shows the board, whatever the crop — as a small VLM at
temperature 0 repeats an invention wherever it sees the same thing). Everything random is drawn from the
call itself and the seed, so the same call always gets the same answer.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from PIL import Image, ImageStat

from mosaic.images import shrink
from mosaic.llm import Completion
from mosaic.offline import reader as offline
from mosaic.prompts import task_of

READERS = ("rapidocr", "tesseract")
STYLES = ("json", "fenced", "prose", "mixed")
POSITIONS = ("box", "words", "none")
MISREAD_BY = ("call", "text")
DEFAULT_SPEC = "reader=rapidocr"

TextLine = offline.TextLine  # (text, confidence 0-1, box as fractions of the image)


class Seen(NamedTuple):
    """One reading as the stand-in reports it: box in thousandths of the crop, as VLMs give boxes."""

    text: str
    unclear: bool
    box: tuple[int, int, int, int]


# ------------------------------------------------------------------------------------------------ readers

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TESSERACT_LANGS = "eng+jpn+chi_sim"
TESSERACT_MIN_WORD_CONF = 50  # of 100: below it Tesseract's words on a busy street are mostly window texture


def read_lines(reader: str, image: Image.Image, budget: int | None, one_sign: bool = False) -> list[TextLine]:
    """What the reader finds in the image shrunk to `budget` (None: as it is). one_sign: the image is one sign cut
    out with a small margin, read the way that suits the reader best (its boxes are then not of the image)."""
    image = shrink(image, budget) if budget else image
    if reader == "tesseract":
        return tesseract_lines(image, psm="7" if one_sign else "3")
    if one_sign:
        image = on_canvas(image)
    return offline.read_text(image, max(image.size))  # already shrunk


def tesseract_lines(image: Image.Image, psm: str = "3") -> list[TextLine]:
    """psm 3 (automatic layout) read both clean signs and busy street tiles best (psm 11, sparse text, read nothing
    of three big signs on a plain wall); psm 7 (one text line) reads a sign cut out on its own best."""
    if shutil.which("tesseract") is None:
        raise RuntimeError("tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-jpn "
                           "tesseract-ocr-chi-sim)")
    png = io.BytesIO()
    image.save(png, format="PNG")
    command = ["tesseract", "stdin", "stdout", "-l", TESSERACT_LANGS, "--psm", psm, "tsv"]
    # one OpenMP thread: ~4x faster than its default on 2 cores, where its threads wait on each other
    done = subprocess.run(command, input=png.getvalue(), capture_output=True, check=True, timeout=600,
                          env=os.environ | {"OMP_THREAD_LIMIT": "1"})
    return parse_tsv(done.stdout.decode("utf-8", "replace"), image.width, image.height)


def parse_tsv(tsv: str, width: int, height: int) -> list[TextLine]:
    """Tesseract's word rows grouped into lines (block, paragraph, line), spaces between CJK characters removed."""
    lines: dict[tuple[str, ...], list[tuple[str, float, int, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) != 12 or cols[0] != "5" or not cols[11].strip():
            continue
        conf = float(cols[10])
        if conf >= TESSERACT_MIN_WORD_CONF:
            left, top, w, h = (int(v) for v in cols[6:10])
            lines.setdefault(tuple(cols[1:5]), []).append((cols[11].strip(), conf, left, top, left + w, top + h))
    found = []
    for words in lines.values():
        text = join_cjk(" ".join(w[0] for w in words))
        if len({ch for ch in text if ch.isalnum()}) < 2:  # 'aa', '88', '目目目': windows and texture, not signs
            continue
        conf = sum(w[1] for w in words) / len(words) / 100
        box = (min(w[2] for w in words) / width, min(w[3] for w in words) / height,
               max(w[4] for w in words) / width, max(w[5] for w in words) / height)
        found.append((text, conf, box))
    return found


def join_cjk(text: str) -> str:
    """Tesseract writes '京 土 日 肉' for '京土日肉'."""
    return re.sub(rf"(?<=[{CJK}])\s+(?=[{CJK}])", "", text)


def ceiling(image: Image.Image, boxes, reader: str, budget: int | None = None) -> list[list[str]]:
    """The reader's own ceiling: each box (a sign, in pixels) cropped from the full-resolution image with a margin
    of a quarter of its height, and read alone."""
    out = []
    for x0, y0, x1, y1 in boxes:
        margin = round((y1 - y0) * 0.25)
        crop = image.crop((max(0, x0 - margin), max(0, y0 - margin),
                           min(image.width, x1 + margin), min(image.height, y1 + margin)))
        out.append([text for text, _, _ in read_lines(reader, crop, budget, one_sign=True)])
    return out


def on_canvas(crop: Image.Image, side: int = 736) -> Image.Image:
    """The crop in the middle of a square of its mean colour. RapidOCR enlarges an image's short side to 736 px
    before it looks for text: a sign cut out on its own (20 px tall) becomes a 5000-px strip that takes seconds and
    is read in pieces, which would measure that, not the reader's ceiling."""
    side = max(side, *crop.size)
    canvas = Image.new("RGB", (side, side), tuple(round(v) for v in ImageStat.Stat(crop).mean))
    canvas.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return canvas


# ---------------------------------------------------------------------------------------- how models err

LOOK_ALIKES = ["O0", "I1", "l1", "S5", "B8", "EF", "CG", "MN", "Z2", "UV", "本木", "口日", "日目", "土士", "大太",
               "人入", "未末", "千干"]
SWAPS: dict[str, list[str]] = {}
for a, b in LOOK_ALIKES:
    SWAPS.setdefault(a, []).append(b)
    SWAPS.setdefault(b, []).append(a)

CONSONANTS, VOWELS = "BCDFGHKLMNPRSTVZ", "AEIOUY"
CJK_POOL = "山川中大小日月火水木金土本田石花白天光明王目手上下左右文生正方元友米竹年早春夏秋冬雨雪青赤林森村市学校京店"
PLAUSIBLE = ["Shibuya Station", "OPEN 24H", "NO PARKING", "EXIT", "SALE 50% OFF", "Coffee & Tea", "営業中", "駅前",
             "PHARMACY", "HOTEL"]


def misread(text: str, rng: random.Random) -> str:
    """The text with one character replaced by a look-alike (a random one of its kind when it has none)."""
    spots = [i for i, ch in enumerate(text) if not ch.isspace()]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + look_alike(text[i], rng) + text[i + 1:]


def look_alike(ch: str, rng: random.Random) -> str:
    if ch in SWAPS:
        return rng.choice(SWAPS[ch])
    pool = "0123456789" if ch.isdigit() else CJK_POOL if re.match(f"[{CJK}]", ch) else CONSONANTS + VOWELS
    return rng.choice([c for c in pool if c != ch.upper()])


def invented_text(rng: random.Random) -> str:
    """A sign-like text that is not in the image."""
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(rng.choice(CONSONANTS if i % 2 == 0 else VOWELS) for i in range(rng.randint(5, 8)))
    if kind == 1:
        return f"0{rng.randint(10, 99)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    if kind == 2:
        return "".join(rng.sample(CJK_POOL, rng.randint(2, 3)))
    return rng.choice(PLAUSIBLE)


def random_box(rng: random.Random) -> tuple[int, int, int, int]:
    x0, y0 = rng.randint(0, 800), rng.randint(0, 920)
    return x0, y0, x0 + rng.randint(60, 200), y0 + rng.randint(20, 80)


def thousandths(box: tuple[float, float, float, float], rng: random.Random) -> tuple[int, int, int, int]:
    """A box in fractions as a model writes it: in thousandths, a few units off."""
    return tuple(min(1000, max(0, round(v * 1000) + rng.randint(-3, 3))) for v in box)  # type: ignore[return-value]


def place(box: tuple[int, int, int, int]) -> str:
    """Where a box (thousandths) is, in words: 'top left', 'middle', 'bottom right', ..."""
    cx, cy = (box[0] + box[2]) / 2000, (box[1] + box[3]) / 2000
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    return f"{vertical} {horizontal}".strip()


def kept(items: list, drop: float, rng: random.Random) -> list:
    """The items a model keeps when it leaves out each one with probability `drop`."""
    return [item for item in items if rng.random() >= drop]


# ------------------------------------------------------------------------------------------ the stand-in

@dataclass
class StandIn:
    """A small-VLM stand-in as a completion function (Mosaic's call seam), with its own OCR cache."""

    reader: str = "rapidocr"
    budget: int = 896
    invent: float = 0.0
    misread: float = 0.0
    style: str = "json"
    positions: str = "box"
    drop: float = 0.0
    seed: int = 0
    misread_by: str = "call"
    boards: str = ""
    _ocr: offline.PixelCache = field(default_factory=offline.PixelCache, init=False, repr=False, compare=False)

    def __post_init__(self):
        for key, allowed in (("reader", READERS), ("style", STYLES), ("positions", POSITIONS),
                             ("misread_by", MISREAD_BY)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"stand-in {key}={getattr(self, key)!r}: must be one of {', '.join(allowed)}")
        for key in ("invent", "misread", "drop"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"stand-in {key}={getattr(self, key)}: must be a fraction from 0 to 1")
        if self.budget < 32:
            raise ValueError(f"stand-in budget={self.budget}: must be at least 32 px")

    @classmethod
    def from_spec(cls, spec: str) -> StandIn:
        """From 'reader=tesseract,budget=896,invent=0.2,...'; keys left out keep their defaults."""
        types = {f.name: f.type for f in fields(cls) if f.init}
        values: dict = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in types:
                raise ValueError(f"unknown stand-in key {key!r} in {spec!r}; keys: {', '.join(types)}")
            convert = {"int": int, "float": float}.get(str(types[key]), str)
            try:
                values[key] = convert(value.strip())
            except ValueError:
                raise ValueError(f"stand-in key {key!r}: {value!r} is not a {types[key]}") from None
        return cls(**values)

    @property
    def spec(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.init)

    def __reduce__(self):  # pickles as its spec; the OCR cache stays in its process
        return StandIn.from_spec, (self.spec,)

    def __call__(self, call, messages: list[dict], api_key: str | None = None, timeout_s: float = 0.0) -> Completion:
        content = self.answer(messages, call.key())
        prompt_tokens, completion_tokens = 256 * len(call.images) + len(call.prompt) // 4, len(content) // 4
        return Completion(content, "stop", {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                            "total_tokens": prompt_tokens + completion_tokens})

    def answer_http(self, messages: list[dict], model: str) -> str:
        """For ModelServer: no ModelCall here, so the draws are seeded by the request itself."""
        return self.answer(messages, hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest())

    # -- answering --

    def answer(self, messages: list[dict], key: str) -> str:
        prompt, images = split(messages)
        rng = random.Random(hashlib.sha256(f"{self.seed}\n{key}".encode()).hexdigest())
        style = rng.choice(STYLES[:3]) if self.style == "mixed" else self.style
        task = task_of(prompt)
        if task == "tile-synthesis":
            return self.tile_synthesis(prompt, style, rng)
        if task == "final-review":
            return self.final_review(prompt, style, rng)
        if task not in ("orientation", "text", "subjects", "characteristics", "inspect"):
            return "I looked at the request and have nothing to add beyond what is visible."
        if not images:
            return "I cannot see an image in this message."
        image = images[0]
        seen = self.seen(image, rng, invent=task in ("text", "inspect"))
        if self.boards and task in ("text", "inspect"):
            seen += board_readings(blank_boards(self.boards), crop_box(prompt), rng)
        if task == "orientation":
            return orientation(seen, rng)
        if task == "text":
            return render({"readings": self.reading_dicts(seen), "notes": ""}, self.prose_readings(seen, rng), style)
        if task == "subjects":
            return render({"items": subjects(seen), "notes": ""}, "I can see " + and_list(subjects(seen)) + ".", style)
        if task == "characteristics":
            note = characteristics(image)
            return render({"notes": note}, note, style)
        prose = f"{self.prose_readings(seen, rng)}\nI can also see {and_list(subjects(seen))}. {characteristics(image)}"
        data = {"readings": self.reading_dicts(seen), "items": subjects(seen), "notes": characteristics(image)}
        return render(data, prose, style)

    def seen(self, image: Image.Image, rng: random.Random, invent: bool) -> list[Seen]:
        """What the model reports reading: the OCR lines, some misread, and maybe one it made up."""
        seen = []
        for text, conf, box in self.read(image):
            draws = rng if self.misread_by == "call" else random.Random(f"{self.reader}\n{text}")
            if draws.random() < self.misread:
                text = misread(text, draws)
            seen.append(Seen(text, conf < offline.UNCLEAR_BELOW, thousandths(box, rng)))
        if invent and rng.random() < self.invent:
            real = {s.text for s in seen}
            made_up = invented_text(rng)
            while made_up in real:
                made_up = invented_text(rng)
            seen.insert(rng.randint(0, len(seen)), Seen(made_up, False, random_box(rng)))
        return seen

    def read(self, image: Image.Image) -> list[TextLine]:
        """The reader's lines for this image, cached by its pixels (thread-safe; two threads may both read)."""
        return self._ocr.get(image, lambda img: read_lines(self.reader, img, self.budget))

    def reading_dicts(self, seen: list[Seen]) -> list[dict]:
        out = []
        for s in seen:
            reading = {"text": s.text, "romanized": None, "translation": None, "unclear": s.unclear}
            if self.positions == "box":
                reading["box"] = list(s.box)
            elif self.positions == "words":
                reading["where"] = place(s.box)
            out.append(reading)
        return out

    def prose_readings(self, seen: list[Seen], rng: random.Random) -> str:
        if not seen:
            return rng.choice(["No text is visible.", "I cannot see any legible text in this crop."])
        quoted = [f'"{s.text}"{self.where(s)}' for s in seen]
        phrasing = rng.randrange(3)
        if phrasing == 0:
            return "I can see the following text in this image:\n" + "\n".join(f"- {q}" for q in quoted)
        if phrasing == 1:
            return "Visible text: " + ", ".join(quoted) + "."
        return f"The crop shows {len(quoted)} piece{'s' if len(quoted) > 1 else ''} of text: {and_list(quoted)}."

    def where(self, s: Seen) -> str:
        if self.positions == "box":
            return f" at {list(s.box)}"
        return f" ({place(s.box)})" if self.positions == "words" else ""

    # -- merging: where a small model loses readings --

    def tile_synthesis(self, prompt: str, style: str, rng: random.Random) -> str:
        observations = offline._data_block(prompt, "OBSERVATIONS")
        texts = [r.get("text") for o in observations for r in o.get("readings", []) if isinstance(r, dict)]
        texts = kept(list(dict.fromkeys(t for t in texts if isinstance(t, str) and t)), self.drop, rng)
        notes = next((o["notes"] for o in observations if o.get("phase") == "characteristics" and o.get("notes")), "")
        quoted = [json.dumps(t, ensure_ascii=False) for t in texts]
        read = f"Signs in it read {and_list(quoted)}." if texts else "No legible text in this tile."
        summary = f"This tile shows part of the scene with buildings. {read}"
        data = {"summary": summary, "characteristics": notes or "evenly lit"}
        return render(data, f"{summary} {notes}".strip(), style)

    def final_review(self, prompt: str, style: str, rng: random.Random) -> str:
        tiles: dict[str, list[str]] = {}
        for report in offline._data_block(prompt, "TILE REPORTS"):
            for r in report.get("readings", []):
                if isinstance(r, dict) and r.get("text"):
                    tiles.setdefault(str(r["text"]), []).append(str(report.get("tile")))
        texts = kept(list(tiles), self.drop, rng)
        opening = "The photograph shows an outdoor scene with buildings and several signs."
        quoted = [f'"{t}" ({", ".join(dict.fromkeys(tiles[t]))})' for t in texts]
        if style == "prose" and texts and rng.random() < 0.5:  # readings only in the flowing text
            return f"{opening} Its signs read {and_list(quoted)}. The image is evenly lit and sharp."
        lines = [f'- "{t}" in {", ".join(dict.fromkeys(tiles[t]))}' for t in texts] or ["- none"]
        return "\n".join([opening, "", "Text read:", *lines, "", "Subjects: buildings, signs.",
                          "Characteristics: evenly lit, sharp."])


@functools.lru_cache(maxsize=64)
def blank_boards(path: str) -> tuple[tuple[int, int, int, int], ...]:
    """The blank boards of a scene's ground truth (image pixels)."""
    data = json.loads(open(path, encoding="utf-8").read())
    return tuple(tuple(b) for b in data.get("blanks", []))


def board_text(box: tuple[int, int, int, int]) -> str:
    """The made-up text a stand-in reads on a blank board: fixed by the board alone."""
    return invented_text(random.Random(f"board {list(box)}"))


def crop_box(prompt: str) -> tuple[int, int, int, int] | None:
    """The crop's place in the image as the prompt states it ("pixels [x0, y0, x1, y1]"); None for the whole image."""
    m = re.search(r"pixels \[(\d+), (\d+), (\d+), (\d+)\]", prompt)
    return tuple(int(v) for v in m.groups()) if m else None  # type: ignore[return-value]


def board_readings(boards, crop: tuple[int, int, int, int] | None, rng: random.Random) -> list[Seen]:
    """What the stand-in reads on the blank boards the crop shows (most of the board in it): each board's made-up
    text, with its box in thousandths of the crop."""
    if crop is None:
        return []
    cx0, cy0, cx1, cy1 = crop
    w, h = cx1 - cx0, cy1 - cy0
    out = []
    for b in boards:
        inside = max(0, min(b[2], cx1) - max(b[0], cx0)) * max(0, min(b[3], cy1) - max(b[1], cy0))
        if inside >= 0.6 * (b[2] - b[0]) * (b[3] - b[1]):
            frac = ((b[0] - cx0) / w, (b[1] - cy0) / h, (b[2] - cx0) / w, (b[3] - cy0) / h)
            out.append(Seen(board_text(b), False, thousandths(tuple(min(1.0, max(0.0, v)) for v in frac), rng)))
    return out


def orientation(seen: list[Seen], rng: random.Random) -> str:
    """Three sentences naming at most two of the readings."""
    named = [f'"{s.text}" ({place(s.box)})' for s in rng.sample(seen, min(2, len(seen)))]
    read = f"Signs read {and_list(named)}." if named else "No text is legible at this size."
    return f"This is an outdoor scene with buildings{' and signs' if seen else ''}. {read} " \
           "The signs and small details across the image are worth a closer look."


def subjects(seen: list[Seen]) -> list[str]:
    return [f"a sign board ({place(s.box)})" for s in seen] + ["buildings"]


def characteristics(image: Image.Image) -> str:
    grey = shrink(image, 64).convert("L")
    brightness = ImageStat.Stat(grey).mean[0]
    light = "dark" if brightness < 60 else "dim" if brightness < 100 else "bright" if brightness > 180 else "evenly lit"
    return f"The crop is {light} with natural colours and in focus; no obvious defects."


def render(data: dict, prose: str, style: str) -> str:
    text = json.dumps(data, ensure_ascii=False)
    if style == "json":
        return text
    if style == "fenced":
        return f"Here is the JSON you asked for:\n```json\n{text}\n```"
    return prose


def and_list(items: list[str]) -> str:
    if len(items) < 2:
        return items[0] if items else "nothing"
    return ", ".join(items[:-1]) + " and " + items[-1]


def split(messages: list[dict]) -> tuple[str, list[Image.Image]]:
    """The user's prompt and the images in OpenAI-style messages."""
    return offline._split(messages)


# ----------------------------------------------------------------------------------------- the entry points

@functools.lru_cache(maxsize=32)
def stand_in_for(spec: str) -> StandIn:
    return StandIn.from_spec(spec)


def completion(backend) -> StandIn:
    """The factory MOSAIC_COMPLETION=testkit.stand_ins:completion names: the stand-in $MOSAIC_STAND_IN describes
    (default 'reader=rapidocr'), whatever the backend."""
    return stand_in_for(os.environ.get("MOSAIC_STAND_IN") or DEFAULT_SPEC)


def main(argv: list[str] | None = None) -> None:
    from mosaic.offline.server import ModelServer, serve_until_interrupted

    parser = argparse.ArgumentParser(prog="python -m testkit.stand_ins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="e.g. reader=tesseract,invent=0.2,style=prose")
    parser.add_argument("--slots", type=int, default=None, help="answers computed at once (default: unlimited)")
    args = parser.parse_args(argv)
    try:
        stand_in = StandIn.from_spec(args.spec)
    except ValueError as e:
        parser.error(str(e))
    server = ModelServer(stand_in.answer_http, slots=args.slots, host=args.host, port=args.port,
                         listed=["stand-in"], encoder_px=lambda model: stand_in.budget)
    serve_until_interrupted(server, parser, f"stand-in {stand_in.spec}")


if __name__ == "__main__":
    main()
