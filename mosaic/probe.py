"""`mosaic probe`: a model's habits measured in about a dozen calls on a calibration card Mosaic draws itself (texts
of known content at known places and sizes, Latin and CJK; a crop that cuts a text; a blank board): the box
convention that puts its boxes on the known places, JSON obedience and structured output, thinking, language, the
smallest text it reads, inventions on the blank board, seconds per call, the requests its server serves at once and
the largest image it accepts. The profile found is saved for later runs of that model."""

from __future__ import annotations

import concurrent.futures
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from . import prompts
from .backend import Backend
from .context import completion_for
from .dialects import box_of, crop_fractions
from .errors import BackendError
from .images import encode_view
from .llm import REFUSED_SCHEMA, call_model
from .memo import BlobStore
from .pipeline import answer_data, model_call
from .profiles import QWEN_MAX_PIXELS, Profile, save_profile, table_profile
from .readings import area, group_key, intersection
from .settings import Settings

CARD_SIZE = (1600, 1000)
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
CJK_FONTS = ("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf", "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf")
# (text, font size px, top-left corner on the card): sizes from a headline down to fine print
CARD_TEXTS = [("MOSAIC", 110, (80, 50)), ("EXIT 7", 80, (980, 70)), ("出口", 90, (620, 240)),
              ("PLATFORM", 56, (90, 330)), ("BAKERY", 40, (1010, 390)), ("OPEN DAILY", 28, (140, 560)),
              ("東京駅", 48, (640, 560)), ("NO PARKING", 20, (1000, 640)), ("SMALL PRINT", 14, (220, 800)),
              ("TINY TEXT", 10, (1150, 850))]
SMALL_CROP = (930, 330, 1364, 540)  # 434×210: Qwen's 28-px rounding moves its pixel boxes by 3-7 %
SPLIT_CROP = (0, 300, 260, 420)  # cuts PLATFORM after its first letters
SPLIT_TEXT = "PLATFORM"
CONVENTIONS = ("thousandths", "thousandths-yx", "fractions", "pixels", "qwen-pixels")
LARGE_MP = (4.0, 9.0)  # larger cards tried, in megapixels, to find the largest image the server accepts
PARALLEL = (1, 2, 4)


@dataclass
class Card:
    image: Image.Image
    boxes: dict[str, tuple[int, int, int, int]]  # text: its ink box on the card
    heights: dict[str, int]  # text: its ink height in px


def font(text: str, size: int) -> ImageFont.FreeTypeFont:
    path = next((p for p in CJK_FONTS if Path(p).exists()), LATIN_FONT) if any(ord(c) > 0x2E80 for c in text) else LATIN_FONT
    return ImageFont.truetype(path, size)


def calibration_card() -> Card:
    image = Image.new("RGB", CARD_SIZE, (236, 234, 228))
    draw = ImageDraw.Draw(image)
    boxes, heights = {}, {}
    for text, size, corner in CARD_TEXTS:
        box = draw.textbbox(corner, text, font=font(text, size))
        draw.text(corner, text, fill=(20, 20, 30), font=font(text, size))
        boxes[text], heights[text] = box, box[3] - box[1]
    draw.line((SPLIT_CROP[2], 280, SPLIT_CROP[2], 440), fill=(120, 120, 120), width=1)  # the line the crop cuts at
    return Card(image, boxes, heights)


def blank_board() -> Image.Image:
    """A sign with nothing written on it: whatever the model reads here, it invented."""
    image = Image.new("RGB", (800, 500), (120, 150, 110))
    ImageDraw.Draw(image).rounded_rectangle((150, 120, 650, 380), radius=30, fill=(30, 90, 160), outline="white", width=8)
    return image


@dataclass
class Asked:
    """One call's answer: its raw items (text and box as the model wrote it), whether it was JSON, its thinking."""

    items: list[dict]
    json: bool
    thinking: bool
    seconds: float
    answer: str

    def prose(self) -> str:
        """The answer without the texts it read (to tell the language it writes in)."""
        return " ".join(w for w in self.answer.split() if not any(w.strip('",:[]{}') == i["text"] for i in self.items))


@dataclass
class ProbeResult:
    model: str
    convention: str
    convention_fit: float  # mean overlap of its boxes with the known places, converted by that convention
    grounds: bool
    json_obeyed: bool
    structured_output: bool | None  # None: not asked (a completion function that is not LiteLLM)
    thinking: bool
    language: str  # "as asked", or "other" when it answered (notes, prose) in CJK
    read: list[str]
    smallest_px: int | None  # ink height of the smallest card text it read
    split: str  # what it made of the text cut by the crop's edge: "part", "whole" (it completed it), "none"
    invented: list[str]  # what it read on the blank board
    seconds_per_call: float
    concurrency: int
    largest_mp: float | None  # None: it accepted every size tried
    profile: Profile
    saved: str | None = None
    notes: list[str] = field(default_factory=list)


def probe(backend: Backend, settings: Settings, save: bool = True, say: Callable[[str], None] = lambda line: None
          ) -> ProbeResult:
    """About a dozen calls to the backend; raises BackendError (one line) when the model cannot serve Mosaic."""
    folder = Path(tempfile.mkdtemp(prefix="mosaic-probe-"))
    try:
        return _probe(backend, settings, BlobStore(folder), save, say)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _probe(backend: Backend, settings: Settings, blobs: BlobStore, save: bool, say) -> ProbeResult:
    backend = backend.model_copy(update={"temperature": settings.temperature, "max_tokens": settings.max_tokens,
                                         "num_ctx": settings.num_ctx, "timeout_s": min(settings.timeout_s, 180.0)})
    complete = completion_for(settings.completion or "", backend.model_dump_json())
    table = table_profile(backend.model)
    card = calibration_card()

    def ask(image: Image.Image, schema: bool = True) -> Asked:
        asked = backend if schema else backend.model_copy(update={"structured_output": False})
        call = model_call(asked, prompts.view_prompt("text", "A calibration card with printed words.",
                                                     "This crop is the whole image."), [blobs.put(encode_view(image))],
                          "text")
        started = time.monotonic()
        reply = call_model(call, blobs, None, backend.timeout_s, complete=complete)
        data = answer_data(reply.content, "text")
        items = [i for i in (data or {}).get("readings") or [] if isinstance(i, dict) and isinstance(i.get("text"), str)]
        return Asked(items, data is not None and "readings" in data, bool(reply.thinking), time.monotonic() - started,
                     reply.content)

    say(f"probing {backend.model} at {backend.address} with a calibration card…")
    try:
        whole = ask(card.image)
    except BackendError as e:
        raise BackendError(f"{backend.model} cannot serve Mosaic: {e}", retryable=False) from None
    read = [t for t in card.boxes if any(_same_text(t, i["text"]) for i in whole.items)]
    if not read:
        raise BackendError(f"{backend.model} cannot serve Mosaic: it read none of the calibration card's {len(card.boxes)} "
                           "texts (no vision, or no answer in a form Mosaic reads)", retryable=False)
    structured = None if settings.completion else (backend.model, backend.api_base) not in REFUSED_SCHEMA
    plain = ask(card.image, schema=False)
    small = ask(card.image.crop(SMALL_CROP))
    split = ask(card.image.crop(SPLIT_CROP))

    placed = [(whole, (0, 0, *CARD_SIZE)), (plain, (0, 0, *CARD_SIZE)), (small, SMALL_CROP)]
    convention, fit = best_convention(placed, card, table)
    blank = ask(blank_board())  # also warms the server up for the timings
    concurrency = served_at_once(lambda: ask(blank_board()))
    largest = largest_accepted(lambda image: ask(image), card.image)

    grounds = convention != "words"
    base = table if table.family != "unknown" else Profile(family="probed")
    profile = base.model_copy(update={
        "box": convention, "grounds": grounds, "thinking": whole.thinking or plain.thinking, "source": "probe",
        "max_image_px": int(largest * 1e6) if largest else base.max_image_px})
    result = ProbeResult(
        model=backend.model, convention=convention, convention_fit=round(fit, 3), grounds=grounds,
        json_obeyed=plain.json, structured_output=structured, thinking=profile.thinking,
        language="other" if any(_cjk(a.prose()) for a in (whole, plain)) else "as asked",
        read=read, smallest_px=min(card.heights[t] for t in read),
        split=split_behaviour(split.items), invented=[i["text"] for i in blank.items],
        seconds_per_call=round(sum(a.seconds for a in (whole, plain, small, split)) / 4, 2),
        concurrency=concurrency, largest_mp=largest, profile=profile)
    if save:
        measured = {k: v for k, v in result.__dict__.items() if k not in ("profile", "saved", "notes")}
        result.saved = str(save_profile(settings.cache_dir, backend.model, profile, measured))
    return result


def _same_text(truth: str, read: str) -> bool:
    a, b = group_key(truth), group_key(read)
    return bool(a and b) and (a == b or len(b) >= 3 and b in a or a in b)


def _cjk(text: str) -> bool:
    return any(0x3040 <= ord(c) <= 0x9FFF for c in text)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    scaled_a, scaled_b = [round(v * 10000) for v in a], [round(v * 10000) for v in b]
    inter = area(intersection(scaled_a, scaled_b))
    union = area(scaled_a) + area(scaled_b) - inter
    return inter / union if union else 0.0


def best_convention(asked: list[tuple[Asked, tuple[int, int, int, int]]], card: Card, table: Profile) -> tuple[str, float]:
    """The convention whose reading of the boxes puts them closest to where the card's texts are (mean overlap), and
    that overlap; "words" when no answer gave a box. Qwen's pixels are read with the table's resize limit for this
    model (Ollama's, when it is served by Ollama), else Qwen's own."""
    pairs = []  # (raw box, the crop's size, the text's known box as fractions of the crop)
    for answer, crop in asked:
        width, height = crop[2] - crop[0], crop[3] - crop[1]
        for item in answer.items:
            truth = next((t for t in card.boxes if _same_text(t, item["text"])), None)
            if truth is None or box_of(item) is None:
                continue
            x0, y0, x1, y1 = card.boxes[truth]
            known = ((x0 - crop[0]) / width, (y0 - crop[1]) / height, (x1 - crop[0]) / width, (y1 - crop[1]) / height)
            pairs.append((box_of(item), (width, height), known))
    if not pairs:
        return "words", 0.0
    resize_max = table.resize_max_pixels if table.box == "qwen-pixels" else QWEN_MAX_PIXELS
    scores = {}
    for convention in CONVENTIONS:
        profile = Profile(family="probe", box=convention, resize_max_pixels=resize_max)
        fits = [iou(found, known) if (found := crop_fractions(value, profile, size)) else 0.0
                for value, size, known in pairs]
        scores[convention] = sum(fits) / len(fits)
    if any(isinstance(v, str) and "<loc" in v for v, _, _ in pairs):  # PaliGemma's tokens name their convention
        return "loc-yx", scores["thousandths"]
    best = max(scores, key=lambda c: scores[c])
    return best, scores[best]


def split_behaviour(items: list[dict]) -> str:
    texts = [group_key(i["text"]) for i in items]
    whole = group_key(SPLIT_TEXT)
    if any(whole in t for t in texts):
        return "whole"
    return "part" if any(t and t in whole for t in texts) else "none"


def served_at_once(ask_once: Callable[[], Asked]) -> int:
    """The most calls the server serves at once, of 1, 2 and 4 sent together: the largest count whose calls took at
    most 1.5× one call's time."""
    took = {}
    for count in PARALLEL:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda _: ask_once(), range(count)))
        took[count] = time.monotonic() - started
    return max(n for n in PARALLEL if took[n] <= 1.5 * took[1] + 0.05)


def largest_accepted(ask_image: Callable[[Image.Image], Asked], card: Image.Image) -> float | None:
    """The largest card size (megapixels) the server answered, of LARGE_MP; None when it took them all."""
    accepted = card.width * card.height / 1e6
    for megapixels in LARGE_MP:
        scale = (megapixels * 1e6 / (card.width * card.height)) ** 0.5
        try:
            ask_image(card.resize((round(card.width * scale), round(card.height * scale))))
        except BackendError:
            return round(accepted, 1)
        accepted = megapixels
    return None


def summary(result: ProbeResult) -> str:
    """One screen: what the model does, and what Mosaic will do about it."""
    yes = lambda flag: "yes" if flag else "no"  # noqa: E731
    lines = [
        f"mosaic probe: {result.model}",
        f"  boxes:            {result.convention} (fit {result.convention_fit:.2f})" if result.grounds
        else "  boxes:            none (places in words)",
        f"  JSON when asked:  {yes(result.json_obeyed)}; structured output: "
        + ("not asked" if result.structured_output is None else yes(result.structured_output)),
        f"  thinks out loud:  {yes(result.thinking)}",
        f"  language:         {result.language}",
        f"  read:             {len(result.read)} of {len(CARD_TEXTS)} card texts; smallest {result.smallest_px} px high",
        f"  text cut by edge: {result.split}",
        "  blank board:      " + (f"invented {', '.join(map(repr, result.invented))}" if result.invented else "nothing read"),
        f"  seconds per call: {result.seconds_per_call:.2f}",
        f"  served at once:   {result.concurrency} (use --concurrency {result.concurrency})",
        "  largest image:    " + (f"{result.largest_mp} MP" if result.largest_mp else f"all sizes tried (up to {LARGE_MP[-1]:g} MP)"),
    ]
    if result.saved:
        lines.append(f"  profile saved:    {result.saved} (later runs of this model use it)")
    return "\n".join(lines)
