"""A plan shaped by the image, and fitted to a budget: which views are asked which phases, decided before the first
call from where a local text detector (mosaic.text_regions) finds text-like detail. Pure functions of boxes, views
and settings; mosaic.pipeline cuts the crops.

- shaped: the text phase on the density's grid, only of tiles with text-like detail; a seam crop only where such
  detail crosses the tile line; subjects and characteristics once, of the whole image (coarse); no synthesis calls.
- full: every phase of every tile, the seam phases of every seam, a synthesis per tile (dense, max, --grid).
- blog: the blog's design: each tile asked everything in one call, each seam twice, a synthesis per tile.

A budget (calls and/or estimated minutes per image) drops what is worth least first: seams with no text on their
line, the syntheses, characteristics, subjects, then the second look shrinks, then the text of the seams and tiles
with the least text-like detail. The time of a call is estimated as a laptop spends it, one call at a time:
overhead + image tokens / prefill speed + answer tokens / decoding speed; image tokens as a Qwen-style encoder counts
them, one per 28×28 patch of the crop as sent."""

from __future__ import annotations

import math

from pydantic import BaseModel

from .backend import Backend
from .schema import Plan
from .settings import Settings
from .tiles import Box, input_px_for

TEXT_PHASES = ("text", "inspect")  # asked on the density's grid
COARSE_PHASES = ("subjects", "characteristics")  # a scene's subjects and light need no small grid
WHOLE = "all"  # the id of a shaped plan's whole-image view
PATCH_PX = 28  # Qwen2-VL / Qwen2.5-VL: one image token per 28×28 patch (14 px patches merged 2×2)
CUT_SHARE = 0.25  # a region crosses a tile line when at least this share of its height lies on each side


def design_for(plan_setting: str, density: str) -> str:
    """The design a run uses: as set, or for 'auto' shaped at light and auto densities, full otherwise."""
    if plan_setting != "auto":
        return plan_setting
    return "shaped" if density == "light" or density.startswith("auto") else "full"


def overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def text_count(box: Box, regions: list[Box]) -> int:
    """How many text-like regions lie (partly) in a box: how text-dense a tile is."""
    return sum(overlaps(box, r) for r in regions)


def crossing(a: Box, b: Box, regions: list[Box]) -> int:
    """How many regions cross the line two neighbouring tiles share, with a part worth reading on each side (at least
    CUT_SHARE of the region's short side: a character or more would be cut)."""
    count = 0
    for r in regions:
        margin = CUT_SHARE * min(r[2] - r[0], r[3] - r[1])
        if a[2] == b[0]:  # b right of a: a vertical line at x
            x = a[2]
            along = min(r[3], a[3]) > max(r[1], a[1])
            count += along and r[0] + margin <= x <= r[2] - margin
        else:  # b below a: a horizontal line at y
            y = a[3]
            along = min(r[2], a[2]) > max(r[0], a[0])
            count += along and r[1] + margin <= y <= r[3] - margin
    return count


def tile_phases(design: str, phases: list[str], text_here: bool, coarse: bool) -> list[str]:
    if design == "blog":
        return ["inspect"]
    if design == "full":
        return list(phases)
    return [p for p in phases if (p == "text" and text_here) or p == "inspect" or (p in COARSE_PHASES and not coarse)]


def seam_phases(design: str, phases: list[str], seam_default: list[str], crossings: int) -> list[str]:
    if design == "blog":
        return ["text", "subjects"]  # the blog asked each pair from both sides: two calls
    if design == "full":
        return list(seam_default)
    return [p for p in seam_default if p in TEXT_PHASES] if crossings else []


def whole_phases(design: str, phases: list[str], coarse: bool) -> list[str]:
    """The phases of a shaped plan's whole-image view (none in other designs)."""
    return [p for p in phases if p in COARSE_PHASES] if design == "shaped" and coarse else []


# --- the cost of a call, as a laptop spends it --------------------------------------------------------------------

class CallCost(BaseModel):
    """The time of one call: overhead + image tokens / prefill_tps + answer tokens / decode_tps (one at a time)."""

    overhead_s: float = 0.5
    prefill_tps: float = 500
    decode_tps: float = 20

    def seconds(self, image_tokens: int, answer_tokens: int) -> float:
        return self.overhead_s + image_tokens / self.prefill_tps + answer_tokens / self.decode_tps


def image_tokens(width: int, height: int, px: int) -> int:
    """The tokens of a crop sent at most px on its long side, one per PATCH_PX² patch (sides rounded up)."""
    scale = min(1.0, px / max(width, height))
    return math.ceil(width * scale / PATCH_PX) * math.ceil(height * scale / PATCH_PX)


# Expected answer tokens of a compact JSON answer: the text phase's grows with the text-like regions in the view.
ANSWER_TOKENS = {"orientation": 120, "subjects": 60, "characteristics": 30, "tile-synthesis": 80, "final-review": 300}
READING_TOKENS = 25  # one reading: its text and box
EMPTY_TEXT_TOKENS = 10


def answer_tokens(phase: str, regions_in_view: int) -> int:
    if phase in TEXT_PHASES:
        extra = ANSWER_TOKENS["subjects"] + ANSWER_TOKENS["characteristics"] if phase == "inspect" else 0
        return EMPTY_TEXT_TOKENS + READING_TOKENS * regions_in_view + extra
    return ANSWER_TOKENS.get(phase, 60)


class Estimate(BaseModel):
    calls: int
    seconds: float
    image_tokens: int
    answer_tokens: int


def estimate(plan: Plan, regions: list[Box], cost: CallCost, view_px: int, orientation_px: int) -> Estimate:
    """The first wave's calls, estimated tokens and seconds: orientation, every view's phases, the syntheses that need
    a call, the final review (both see the whole image at orientation size)."""
    overview = image_tokens(plan.width, plan.height, orientation_px)
    parts = [(overview, ANSWER_TOKENS["orientation"]), (overview, ANSWER_TOKENS["final-review"])]
    for view in plan.views:
        tokens = image_tokens(view.box[2] - view.box[0], view.box[3] - view.box[1], view_px)
        inside = text_count(view.box, regions)
        parts += [(tokens, answer_tokens(p, inside)) for p in view.phases]
    parts += [(0, ANSWER_TOKENS["tile-synthesis"]) for t in plan.tiles if plan.needs_synthesis(t)]
    assert len(parts) == plan.total_calls
    return Estimate(calls=len(parts), seconds=round(sum(cost.seconds(i, a) for i, a in parts), 1),
                    image_tokens=sum(i for i, _ in parts), answer_tokens=sum(a for _, a in parts))


def detail_seconds(cost: CallCost, zoom_px: int) -> float:
    """A second look's crop: sent zoom_px on its long side, about 2:1 (a line of text with its margin), 2 readings."""
    return cost.seconds(image_tokens(zoom_px, zoom_px // 2, zoom_px), answer_tokens("text", 2))


# --- a budget ----------------------------------------------------------------------------------------------------

class Budget(BaseModel):
    calls: int | None = None  # most calls per image, second look included
    minutes: float | None = None  # most estimated minutes per image, second look included
    second_look_share: float = 0.0  # the second look's cap as a share of the first wave (0: no second look)
    detail_s: float = 0.0  # estimated seconds of one second-look call

    def natural_cap(self, first_wave_calls: int) -> int:
        return math.floor(self.second_look_share * first_wave_calls)

    def fits(self, first: Estimate, cap: int) -> bool:
        return ((self.calls is None or first.calls + cap <= self.calls)
                and (self.minutes is None or first.seconds + cap * self.detail_s <= self.minutes * 60 + 1e-9))


SHRINK_SECOND_LOOK = 3  # the rank at which the second look shrinks, before any text is dropped


def cuts(plan: Plan, regions: list[Box]) -> list[tuple[int, str, str | None]]:
    """What a budget may drop, worth least first: (rank, view id or '' for the syntheses, phase or None for all)."""
    items: list[tuple[tuple, int, str, str | None]] = []
    for n, view in enumerate(plan.views):
        if not view.phases:
            continue
        if view.kind == "seam":
            a, b = [t.box for t in plan.tiles if t.cells[0] in [tuple(c) for c in view.cells]]
            on_line = crossing(a, b, regions)
            if not on_line:
                items.append(((0, n), 0, view.id, None))
                continue
        dense = text_count(view.box, regions)
        for phase in view.phases:
            if phase in COARSE_PHASES:
                items.append(((2, COARSE_PHASES[::-1].index(phase), view.kind == "region", n), 2, view.id, phase))
            elif view.kind == "seam":
                items.append(((4, 0, dense, -n), 4, view.id, phase))
            else:
                items.append(((4, 1, dense, -n), 4, view.id, phase))
    if plan.synthesis and any(plan.needs_synthesis(t) for t in plan.tiles):
        items.append(((1,), 1, "", None))
    return [(rank, view, phase) for _, rank, view, phase in sorted(items, key=lambda i: i[0])]


def drop(plan: Plan, view_id: str, phase: str | None) -> None:
    if not view_id:
        plan.synthesis = False
        return
    view = next(v for v in plan.views if v.id == view_id)
    view.phases = [] if phase is None else [p for p in view.phases if p != phase]


def fit(plan: Plan, regions: list[Box], budget: Budget, measure) -> tuple[Plan, list[str]]:
    """The plan within the budget (a copy, with second_look_cap set) and what was cut, in words.
    measure(plan) -> Estimate of the first wave."""
    plan = plan.model_copy(deep=True)
    dropped: list[tuple[int, str, str | None]] = []
    pending = cuts(plan, regions)
    natural = budget.natural_cap(plan.total_calls)
    while True:
        first = measure(plan)
        natural = budget.natural_cap(first.calls)
        if budget.fits(first, natural):
            cap = natural
            break
        if pending and pending[0][0] < SHRINK_SECOND_LOOK:
            dropped.append(pending.pop(0))
            drop(plan, *dropped[-1][1:])
            continue
        room = [c for c in range(natural, -1, -1) if budget.fits(first, c)]
        if room:
            cap = room[0]
            break
        if not pending:
            cap = 0
            break
        dropped.append(pending.pop(0))
        drop(plan, *dropped[-1][1:])
    plan.second_look_cap = cap
    return plan, cut_words(dropped, budget.natural_cap(measure(plan).calls) if budget.second_look_share else 0, cap)


def cut_words(dropped: list[tuple[int, str, str | None]], natural: int, cap: int) -> list[str]:
    """What a budget cut, in words, in the order it was cut."""
    words: list[str] = []
    seams = [v for rank, v, _ in dropped if rank == 0]
    if seams:
        words.append(f"{len(seams)} seam crop{'s' * (len(seams) != 1)} with no text on the line")
    if any(rank == 1 for rank, _, _ in dropped):
        words.append("the tile syntheses (summaries written in code)")
    for phase in COARSE_PHASES[::-1]:
        where = [v for rank, v, p in dropped if rank == 2 and p == phase]
        if where:
            words.append(f"{phase} of {', '.join('the whole image' if v == WHOLE else v for v in where)}")
    if cap < natural:
        words.append(f"the second look to {cap} calls")
    text = [v for rank, v, _ in dropped if rank == 4]
    if text:
        words.append(f"the text of {', '.join(text)}")
    return words


def plan_line(plan: Plan, second_look_cap: int) -> str:
    """planned_text of a plan, said before its run (the driver's line; second_look_cap: the run's)."""
    cut = next((n.split(": ", 1)[1] for n in plan.notes if n.startswith("budget cut")), None)
    return planned_text(plan.total_calls, second_look_cap, plan.estimated_s, cut.split("; ") if cut else None)


def planned_text(first_wave_calls: int, second_look_cap: int | None, seconds: float | None = None,
                 cut: list[str] | None = None) -> str:
    """The line said before a run: '23 calls planned (about 2.1 laptop minutes), at most 7 more for a second look;
    budget cut: …'."""
    line = f"{first_wave_calls} calls planned"
    if seconds is not None:
        line += f" (about {seconds / 60:.1f} laptop minutes)"
    if second_look_cap:
        line += f", at most {second_look_cap} more for a second look"
    return line + (f"; budget cut: {'; '.join(cut)}" if cut else "")


def plan_options(settings: Settings, backend: Backend) -> dict:
    """prepare's design, coarse, budget and cost arguments from the settings. A budget keeps room for the second
    look (MOSAIC_SECOND_LOOK) of crops sent at the model's encoder size."""
    cost = CallCost(overhead_s=settings.call_overhead_s, prefill_tps=settings.prefill_tps, decode_tps=settings.decode_tps)
    share = settings.second_look_share if settings.second_look else 0.0
    detail_s = round(detail_seconds(cost, input_px_for(backend.model, backend.offline_budget, settings.input_px) or 896), 3)
    budget = None
    if settings.call_budget or settings.minutes_budget:
        budget = Budget(calls=settings.call_budget, minutes=settings.minutes_budget, second_look_share=share,
                        detail_s=detail_s)
    fill = Budget(calls=settings.shaped_calls or None, minutes=settings.shaped_minutes, second_look_share=share,
                  detail_s=detail_s)
    return {"design": settings.plan, "coarse": settings.coarse_phases, "budget": budget, "cost": cost, "fill": fill}


def filled_cap(plan: Plan, fill: Budget, first: Estimate, budget: Budget | None = None) -> int:
    """A shaped plan's second-look cap: as much as its first wave leaves of fill's calls and minutes, at least its
    share; within a budget no more than fits it (and no less than the budget's fit left it)."""
    natural = fill.natural_cap(first.calls)
    wanted = max(natural, (fill.calls or first.calls + natural) - first.calls)
    limits = [fill, budget] if budget else [fill]
    fitting = next((c for c in range(wanted, -1, -1) if all(b.fits(first, c) for b in limits)), 0)
    return max(plan.second_look_cap or 0 if budget else natural, fitting)
