"""The data a run passes around and reports, as pydantic models."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from .backend import Backend
from .profiles import Profile
from .tiles import Box, Cell

__all__ = ["Backend"]  # re-exported: where calls go is part of the data a run passes around

Phase = Literal["text", "subjects", "characteristics", "inspect"]
PHASES: tuple[str, ...] = ("text", "subjects", "characteristics", "inspect")
DEFAULT_PHASES: tuple[str, ...] = ("text", "subjects", "characteristics")
# A seam crop exists to catch what crosses a tile line; lighting and defects are already seen in both tiles.
SEAM_PHASES: tuple[str, ...] = ("text", "subjects", "inspect")


def canonical_sha256(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


class ModelCall(BaseModel):
    """Everything that decides a model's answer. Images are named by the sha256 of their bytes."""

    model: str
    api_base: str | None = None
    system: str
    prompt: str
    images: list[str] = Field(default_factory=list)
    options: dict[str, float | int | str | None] = Field(default_factory=dict)
    response_schema: dict | None = None  # the JSON Schema of the answer, asked of servers that can constrain it
    profile: Profile | None = None  # how to read the answer (its box convention): not part of the memo key

    def key(self) -> str:
        data = self.model_dump(mode="json", exclude={"profile"})
        if data["response_schema"] is None:  # calls that ask for no schema keep the keys they had before schemas
            del data["response_schema"]
        return canonical_sha256(data)


class ModelReply(BaseModel):
    content: str
    cached: bool = False
    elapsed_s: float = 0.0
    usage: dict[str, int] = Field(default_factory=dict)
    profile: Profile | None = None  # the call's: how to read the answer
    thinking: str = ""  # what the model wrote in a <think> block, removed from content
    retried: bool = False  # looped or cut off, the call was made again with a lower token limit


class View(BaseModel):
    """One crop the model looks at: a tile, or a window centred on the seam between two tiles."""

    id: str  # "r1c2" for a tile, "r1c2|r1c3" for a seam, "all" for the whole image of a shaped plan
    # detail: a closer, enlarged crop of the second look; region: a coarser crop than a tile (a shaped plan's view
    # for subjects and characteristics), its cells the tiles it covers
    kind: Literal["tile", "seam", "detail", "region"]
    cells: list[Cell]
    box: Box
    image_sha256: str
    phases: list[str] = Field(default_factory=list)  # the phases asked of this view; empty: no call
    sent_px: tuple[int, int] | None = None  # the crop's size as sent to the model (to read its pixel boxes)


class Plan(BaseModel):
    """What a run will do, fixed before the first call."""

    image_path: str
    image_sha256: str
    width: int
    height: int
    notes: list[str] = Field(default_factory=list)
    cols: int
    rows: int
    density: str
    phases: list[str]
    overview_sha256: str  # the whole image at orientation size
    views: list[View]
    design: str = "full"  # how the views were chosen: shaped, full or blog (see Settings.plan)
    synthesis: bool = True  # a tile's summary is a model call where several phases meet; False: written in code
    # the most calls a second look may add, as the plan sets it (a budget's room, a shaped plan's fill); None: the
    # second look's share of the first wave
    second_look_cap: int | None = None
    estimated_s: float | None = None  # the first wave's backend seconds on a laptop, one call at a time (shaping.estimate)

    @property
    def tiles(self) -> list[View]:
        return [v for v in self.views if v.kind == "tile"]

    @property
    def tile_boxes(self) -> dict[str, Box]:
        return {t.id: t.box for t in self.tiles}

    def views_touching(self, cell: Cell) -> list[View]:
        return [v for v in self.views if list(cell) in [list(c) for c in v.cells]]

    def views_in_call_order(self) -> list[View]:
        """Tiles row by row, each seam crop right after the last of its tiles: the views around a
        tile are all asked early, so its report can be made while later rows are still being asked. A view of
        every tile (a shaped plan's whole image) goes first: every tile's report waits for it."""
        index = {tuple(t.cells[0]): i for i, t in enumerate(self.tiles)}

        def key(v: View) -> tuple:
            everywhere = len(self.tiles) > 1 and len(v.cells) == len(self.tiles)
            return not everywhere, max(index[tuple(c)] for c in v.cells), v.kind != "tile"

        return sorted(self.views, key=key)

    def needs_synthesis(self, tile: View) -> bool:
        """A tile report needs a model call only to merge several phases' answers into one summary. With one
        phase (or nothing asked of the tile's views) it is built in code: readings and subjects are merged in code
        in every case, so a synthesis call could only restate them."""
        return self.synthesis and len(self.phases) > 1 and any(
            v.phases for v in self.views_touching(tuple(tile.cells[0])))

    @property
    def total_calls(self) -> int:
        return calls_for([len(v.phases) for v in self.views], sum(self.needs_synthesis(t) for t in self.tiles))


def phases_for(kind: str, phases: list[str] | tuple[str, ...]) -> list[str]:
    asked = {"tile": phases, "seam": SEAM_PHASES, "detail": phases, "region": phases}[kind]
    return [p for p in phases if p in asked]


def calls_for(phases_per_view: list[int], syntheses: int) -> int:
    """The one call count: orientation + every view's phases + the tile syntheses that need a call + the final
    review."""
    return 1 + sum(phases_per_view) + syntheses + 1


def count_calls(cols: int, rows: int, phases: list[str] | tuple[str, ...]) -> int:
    """The calls of a grid before any view is cut: every phase on every tile, seam phases on every shared edge, a
    synthesis per tile when there are several phases to merge (skipped blank views make a plan's count lower)."""
    tiles = cols * rows
    seams = rows * (cols - 1) + cols * (rows - 1)
    per_view = [len(phases)] * tiles + [len(phases_for("seam", phases))] * seams
    return calls_for(per_view, tiles if len(phases) > 1 else 0)


ReadingStatus = Literal["confirmed", "unconfirmed", "probably_absent"]


class ReaderWitness(BaseModel):
    """What an independent reader (not the model) reads at a reading's place."""

    name: str  # e.g. "rapidocr"
    text: str | None = None  # its line closest to the reading; None: it read nothing there
    agrees: bool = False
    similarity: float = 0.0  # 0-1, of its closest line to the reading's text (1: the same, or the reading a part)


class Witnesses(BaseModel):
    """Who saw a reading, beside the model that read it. views: the same model's other framings (weak evidence:
    a model repeats its own mistakes). detector: a local text detector found text-like strokes at its place ("text")
    or none ("none"); None when not asked. reader: an independent reader's text there. models: other models'
    readings of the same place (label -> text, None: read nothing there), when a comparison provides them."""

    views: list[str] = Field(default_factory=list)
    detector: Literal["text", "none"] | None = None
    reader: ReaderWitness | None = None
    models: dict[str, str | None] | None = None


class Reading(BaseModel):
    """A text read in the image, with its evidence. As a view reports it: one view, the box the view gives. In a
    report: near-identical readings of one place grouped (variants), the tiles it lies in, its witnesses and whether
    one independent of the model agrees (confirmed)."""

    text: str
    romanized: str | None = None
    translation: str | None = None
    unclear: bool = False
    views: list[str] = Field(default_factory=list)  # the views it was read in, e.g. ["r1c2", "r1c2|r1c3"]
    tiles: list[str] = Field(default_factory=list)  # the tile(s) it lies in
    on_tile_line: bool = False  # it crosses a tile line (or was read only in a crop across one)
    box: Box | None = None  # where it lies, in pixels of the image, when a view said where
    # an independent witness agrees with the text (mosaic.evidence); before witnesses are asked: two or more views
    # read it; None: not judged (one view's reading)
    confirmed: bool | None = None
    variants: list[str] = Field(default_factory=list)  # other readings of the same place (a character apart, a part)
    source: Literal["json", "prose"] = "json"  # prose: taken from quoted or listed text of an answer not in JSON
    witnesses: Witnesses | None = None  # who saw it (mosaic.evidence); None: not witnessed
    status: ReadingStatus | None = None  # confirmed, unconfirmed, or probably_absent (no text where the model said)
    reason: str | None = None  # why it has that status, in words


class Observation(BaseModel):
    view: str
    phase: str
    readings: list[Reading] = Field(default_factory=list)
    items: list[str] = Field(default_factory=list)
    notes: str = ""
    structured: bool = True  # False when the model's answer was not the JSON asked for and is kept as plain text
    reply: ModelReply


class ViewAnswer(BaseModel):
    """One view's raw answer to one phase, as the model gave it."""

    view: str
    kind: str
    phase: str
    box: Box
    structured: bool
    answer: str
    answer_chars: int = 0  # the answer's length: what a model's answers cost on a laptop (~20 tokens/s)
    answer_tokens: int | None = None  # its completion tokens, when the backend said


class TileReport(BaseModel):
    tile: str  # r1c1 is the top-left tile
    position: dict[str, int]  # {"row": 1, "col": 1}, 1-based like the label
    box: Box  # pixels of the original image, x0 y0 x1 y1
    report: str  # the tile's synthesis
    readings: list[Reading]
    subjects: list[str]
    characteristics: str = ""
    views: list[str]


class CallStats(BaseModel):
    planned: int
    total: int = 0  # answered calls in this run (made + cached)
    made: int = 0  # reached the backend
    cached: int = 0  # served from the memo
    failed: int = 0
    second_look: int = 0  # calls of the second look's views (planned), part of planned
    retried: int = 0  # tries after a step's first (mosaic.steps.ask), over all steps
    shortened: int = 0  # answers that looped or were cut off, asked again once with a lower token limit


class FinalReport(BaseModel):
    image: str
    image_sha256: str
    size: tuple[int, int]
    model: str
    api_base: str | None
    density: str
    grid: str  # "4x2": columns x rows
    cols: int
    rows: int
    phases: list[str]
    notes: list[str] = Field(default_factory=list)
    orientation: str
    review: str
    readings: list[Reading]  # confirmed first
    tiles: list[TileReport]
    answers: list[ViewAnswer] = Field(default_factory=list)  # every view's raw answer
    second_look: bool = False
    failed_tiles: list[str] = Field(default_factory=list)
    calls: CallStats
    elapsed_s: float
    report_dir: str | None = None
    complete: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)  # what made this report (see Review.settings)



# --- comparing models on one image -------------------------------------------------------------------------

Agreement = Literal["exact", "near", "different", "single"]


class ModelRun(BaseModel):
    """One model's review in a comparison: where its report is, or why there is none."""

    label: str  # the key of by_model: the model string, with @api_base when one model is compared on two servers
    model: str
    api_base: str | None = None
    family: str  # e.g. "qwen": models of one family share mistakes, so their agreement is weaker evidence
    state: Literal["completed", "failed", "unreachable"]
    error: str | None = None
    report_dir: str | None = None
    calls: CallStats | None = None
    elapsed_s: float | None = None
    readings: int = 0
    flow_run_id: str | None = None  # its review's Prefect flow run (a subflow of the comparison's), when it ran there


class ComparedReading(BaseModel):
    """One sign as the models read it: aligned by place (and text where a model gave no place)."""

    text: str  # what most models read there
    by_model: dict[str, str | None]  # label -> what it read there, None: it read nothing there
    agreement: Agreement  # exact: all read the same; near: a character apart or a part; different; single: one read it
    tiles: list[str]
    box: Box | None = None
    # two models read the same text, or one model's own views did, and no other text there has as many families
    # behind it (models of one family count as one: they share mistakes)
    confirmed: bool
    agreed: list[str] = Field(default_factory=list)  # the models that read `text` (two or more: they confirm it)
    confirmed_in_views: list[str] = Field(default_factory=list)  # the models whose own views confirmed `text`
    same_family: bool = False  # the models that agree are of one family: weaker evidence than independent ones
    variants: list[str] = Field(default_factory=list)  # the other texts read there
    # every model that read `text` had its own witnesses find no text there: models that share a habit (a made-up
    # text on a blank board) agree on it, and that agreement confirms nothing
    probably_absent: bool = False

    @property
    def hard(self) -> bool:
        """Where the models disagree about the text: a human or another model should look."""
        return self.agreement in ("near", "different")


class Comparison(BaseModel):
    image: str
    image_sha256: str
    size: tuple[int, int]
    grid: str
    density: str
    phases: list[str]
    models: list[ModelRun]
    readings: list[ComparedReading]  # hard spots first, then what one model read, then what all agreed on
    counts: dict[str, int] = Field(default_factory=dict)
    comparison_dir: str | None = None
    elapsed_s: float = 0.0
    flow_run_id: str | None = None  # the comparison's Prefect flow run, when it ran there

    @property
    def missing(self) -> list[ModelRun]:
        return [m for m in self.models if m.state != "completed"]
