"""The review as a planner of explicit phases: what to ask next, what the answers mean, when a tile is ready.

    ORIENT → VIEWS (tiles and seams) → SECOND LOOK (closer crops) → TILES (syntheses) → EVIDENCE → FINAL

Like graphlib.TopologicalSorter: `ready()` hands out the steps whose inputs are in, `done(step, outcome)` takes
what a step came to. The review does no I/O and no work in its constructor; counts and its phase are derived from
the plan and the outcomes. A driver (mosaic.driver) makes the steps happen (mosaic.steps) on any executor.

A tile's synthesis starts as soon as every view touching it has answered and the second look is planned (its
closer crops may touch the tile), so syntheses overlap the second look's calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from . import pipeline
from .backend import Backend
from .errors import BackendError, RunFailed
from .schema import CallStats, FinalReport, ModelCall, ModelReply, Observation, Plan, Reading, TileReport, View
from .second_look import SecondLook

StepKind = Literal["orientation", "regions", "view", "view-witness", "look", "synthesis", "evidence", "final"]


class Work(BaseModel):
    """One step: the calls one task makes one after another (the orientation, a view's phases, a tile's synthesis,
    the final review), or local work with no call: a view's readings witnessed as soon as it answers (while the
    backend answers other views; what the witnesses find is kept, so the second look and the evidence find it
    done), the text-like regions the second look zooms into (found while the first views are asked), the second
    look's planning (its closer crops) and the evidence (the readings' independent witnesses)."""

    kind: StepKind
    name: str  # e.g. inspect-r1c2: the task run's name in Prefect
    target: str = ""  # the view or tile it is about
    calls: list[ModelCall] = []
    plan: Plan | None = None  # a look's plan and readings so far
    readings: list[Reading] = []
    look: SecondLook | None = None
    room: int = 0  # a look's calls at most
    witnesses: list[str] = []  # a look's or the evidence step's local witnesses (mosaic.evidence)
    similarity: float = 1.0
    found: dict[str, str] = {}  # what earlier steps' witnesses found (mosaic.evidence.looks)

    @property
    def needs_backend(self) -> bool:
        return bool(self.calls)


@dataclass
class Outcome:
    """What a step came to: a reply per call (None where it failed), a look's closer views or the readings with
    their witnesses; error when it failed."""

    replies: list[ModelReply | None] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    error: BaseException | None = None
    retries: int = 0
    troubled: list[str] = field(default_factory=list)  # servers that failed as down ones do, on the way
    found: dict[str, str] = field(default_factory=dict)  # what a local step's witnesses found, for the next steps

    @property
    def ok(self) -> bool:
        return self.error is None


class StepsFailed(Exception):
    """Raised by a task whose steps did not all succeed, so its run is Failed in Prefect's UI; it carries every
    step's outcome (what was answered counts, and is in the memo)."""

    def __init__(self, outcomes: list[Outcome]):
        self.outcomes = outcomes
        errors = [o.error for o in outcomes if o.error is not None]
        super().__init__("; ".join(str(e) for e in errors[:3]) or "failed")

    def __reduce__(self):
        return type(self), (self.outcomes,)


class Review:
    """One image's review, from its plan to its report. Not thread-safe: one driver thread calls it.

    follow_up(review, view, observations) sees each view's answers as they come and may add views (add_view).
    second_look: after the first wave, closer crops of the readings worth it, at most second_look.cap(first
    wave's calls) calls."""

    def __init__(self, plan: Plan, backend: Backend, second_look: SecondLook | None = None,
                 follow_up: Callable[[Review, View, list[Observation]], None] | None = None,
                 run_settings: dict | None = None, witnesses: dict | None = None):
        self.plan = plan.model_copy(deep=True)  # views are added to it: the caller's plan stays as it was
        self.backend = backend
        self.second_look = second_look if {"text", "inspect"} & set(plan.phases) else None  # it looks at text
        self.first_wave_calls = plan.total_calls
        self.second_look_cap = self.second_look.cap(plan.total_calls) if self.second_look else 0
        if self.second_look and plan.second_look_cap is not None:  # the plan's own (mosaic.shaping), not the share
            self.second_look_cap = plan.second_look_cap
        self._first_wave = {v.id for v in plan.views if v.phases}
        self._follow_up = follow_up
        self.outcomes: dict[str, Outcome] = {}  # by step name
        self._handed: set[str] = set()
        self._to_witness: dict[str, list[Reading]] = {}  # each answered view's readings, by view id
        self.observed: dict[str, list[Observation]] = {}
        self.reports: dict[str, TileReport] = {}
        self.orientation: str | None = None
        self.review: str | None = None
        self.notes: list[str] = []
        self.run_settings = run_settings or {}  # the driver's own, for the report: memo, concurrency
        self.witnesses = witnesses or {"on": [], "similarity": 1.0}  # mosaic.evidence.run_settings()

    # --- what a driver calls -----------------------------------------------------------------------------------

    def ready(self, limit: int | None = None, calls: int | None = None) -> list[Work]:
        """Steps to start now (at most limit that ask the backend, with at most `calls` calls between them unless one
        step alone has more; local work is never held back); each is handed out once."""
        steps, asking, asked = [], 0, 0
        for step in self._candidates():
            if step.needs_backend:
                if limit is not None and asking >= limit:
                    continue
                if calls is not None and asking and asked + len(step.calls) > calls:
                    continue
                asking, asked = asking + 1, asked + len(step.calls)
            self._handed.add(step.name)
            steps.append(step)
        return steps

    @property
    def waiting(self) -> int:
        """Steps ready to hand out."""
        return sum(1 for _ in self._candidates())

    @property
    def waiting_calls(self) -> int:
        """The calls of the steps ready to hand out."""
        return sum(len(step.calls) for step in self._candidates())

    def done(self, step: Work, outcome: Outcome) -> None:
        """A step's outcome (after its retries)."""
        self.outcomes[step.name] = outcome
        match step.kind:
            case "orientation" if outcome.ok:
                self.orientation = outcome.replies[0].content
            case "view":
                self._settle_view(step, outcome)
            case "look":
                if not outcome.ok:
                    self.notes.append(f"no second look: {outcome.error}")
                for view in outcome.views:
                    self.add_view(view)
            case "synthesis" if outcome.ok:
                tile = self._view(step.target)
                self.reports[tile.id] = pipeline.make_tile_report(self.plan, tile, self._observations(tile),
                                                                  outcome.replies[0])
            case "evidence" if not outcome.ok:
                self.notes.append(f"no witnesses: {outcome.error}")
            case "final" if outcome.ok:
                self.review = outcome.replies[0].content
            # regions and view-witness: what their witnesses found is in the outcome, for the steps after (_found)
        for tile in self._tiles_ready():
            if not self.plan.needs_synthesis(tile):
                self.reports[tile.id] = pipeline.make_tile_report(self.plan, tile, self._observations(tile), None)

    @property
    def phase(self) -> str:
        """orient, views, second look, tiles, evidence, final or done: where the review stands."""
        if self.orientation is None:
            return "orient"
        if not self._first_wave_settled:
            return "views"
        if not self._look_settled:
            return "second look"
        if len(self.reports) < len(self.plan.tiles):
            return "tiles"
        if WITNESS not in self.outcomes:
            return "evidence"
        return "final" if self.review is None else "done"

    @property
    def finished(self) -> bool:
        """Nothing more to ask: the review is written, or what failed leaves nothing that can go on."""
        return self.review is not None or (not self.waiting and self._handed <= set(self.outcomes))

    @property
    def stats(self) -> CallStats:
        replies = [r for o in self.outcomes.values() for r in o.replies]
        answered = [r for r in replies if r is not None]
        cached = sum(r.cached for r in answered)
        look = self.outcomes.get(LOOK)
        return CallStats(planned=self.plan.total_calls, total=len(answered), cached=cached,
                         made=len(answered) - cached, failed=len(replies) - len(answered),
                         second_look=sum(len(v.phases) for v in look.views) if look else 0,
                         retried=sum(o.retries for o in self.outcomes.values()),
                         shortened=sum(r.retried for r in answered if not r.cached))

    @property
    def failed_views(self) -> list[str]:
        return [v.id for v in self.plan.views if (o := self.outcomes.get(view_step(v.id))) and not o.ok]

    @property
    def failed_tiles(self) -> list[str]:
        return [t.id for t in self.plan.tiles if t.id not in self.reports]

    @property
    def blocked(self) -> list[tuple[str, list[str]]]:
        """(tile, its failed views) for tiles that needed a synthesis and cannot have one."""
        failed = set(self.failed_views)
        out = []
        for tile in self.plan.tiles:
            broken = [v for v in self._inputs(tile) if v in failed and self._view(v).kind != "detail"]
            if broken and self.plan.needs_synthesis(tile):
                out.append((tile.id, broken))
        return out

    @property
    def errors(self) -> list[str]:
        return [str(o.error) for name, o in self.outcomes.items()
                if o.error is not None and not name.startswith(VIEW_WITNESS)]

    def add_view(self, view: View) -> None:
        """Ask one more view, e.g. a closer crop; the tiles it touches are reported only after it has answered."""
        if view.kind == "tile":
            raise ValueError("add_view adds a seam or detail view, not a tile: the grid is fixed")
        if any(v.id == view.id for v in self.plan.views):
            raise ValueError(f"view {view.id} is already in the plan")
        touched = {t.id for t in self.plan.tiles if t.cells[0] in view.cells}
        if touched & (set(self.reports) | {s.removeprefix("synthesize-") for s in self._handed}):
            raise ValueError(f"view {view.id} touches a tile that is already reported")
        self.plan.views.append(view)

    def report(self, elapsed_s: float = 0.0) -> FinalReport:
        """The report as it stands: complete once the review is written, else what the finished tiles hold."""
        plan, backend = self.plan, self.backend
        readings = self.readings()
        report = FinalReport(
            image=plan.image_path, image_sha256=plan.image_sha256, size=(plan.width, plan.height), model=backend.model,
            api_base=",".join(backend.addresses) or None, density=plan.density, grid=f"{plan.cols}x{plan.rows}",
            cols=plan.cols, rows=plan.rows, phases=plan.phases, notes=plan.notes + self.notes,
            orientation=self.orientation or "", review="", readings=readings, tiles=self._tile_reports(readings),
            answers=pipeline.answers(plan, self.observed), second_look=self.second_look is not None,
            failed_tiles=self.failed_tiles, calls=self.stats, elapsed_s=round(elapsed_s, 3),
            complete=self.review is not None, settings=self.settings(),
        )
        if self.review is not None:
            report.review = pipeline.complete_review(self.review, report.readings)
        return report

    def settings(self) -> dict:
        """What made this report besides the image: enough to make it again, or to tell two reports apart."""
        plan, backend, look = self.plan, self.backend, self.second_look
        return {
            "model": backend.model, "api_base": ",".join(backend.addresses) or None, "density": plan.density,
            "grid": f"{plan.cols}x{plan.rows}", "phases": list(plan.phases),
            "second_look": look.model_dump() | {"calls_cap": self.second_look_cap} if look else None,
            "structured_output": backend.structured_output, "temperature": backend.temperature,
            "max_tokens": backend.max_tokens, "num_ctx": backend.num_ctx, "timeout_s": backend.timeout_s,
            "witnesses": self.witnesses,
        } | self.run_settings

    def readings(self) -> list[Reading]:
        """Every reading, one per sign, confirmed first: with its witnesses once the evidence is in; before (or in
        a review that did not get that far) as the views read it, none confirmed."""
        witnessed = self.outcomes.get(WITNESS)
        if witnessed is not None and witnessed.ok:
            return witnessed.readings
        readings = self._grouped_readings()
        if not self.witnesses["on"]:
            return readings  # no independent witness asked: the views alone decide
        return [r.model_copy(update={"confirmed": False, "status": "unconfirmed",
                                     "reason": "not witnessed: the review did not get that far"}) for r in readings]

    def _grouped_readings(self) -> list[Reading]:
        return pipeline.run_readings(self.plan, [o for v in self.plan.views for o in self.observed.get(v.id, [])])

    def failure(self, report_dir: str | None, retry: str | None) -> RunFailed | BackendError:
        """What failed, for a review that did not finish: the tiles, or the final review. When the orientation or
        the final review failed on a backend error, that error itself (e.g. an unknown model, exit 3)."""
        failed, errors = self.failed_tiles, self.errors
        first = errors[0] if errors else "upstream failure"
        ending = self.outcomes.get(ORIENT) if self.orientation is None else self.outcomes.get(FINAL)
        if ending is not None and isinstance(ending.error, BackendError):
            return ending.error
        if self.orientation is None:
            what = f"the orientation call failed after retries, so no tile was asked ({first})"
        elif failed:
            what = f"{len(failed)} of {len(self.plan.tiles)} tiles failed after retries: {', '.join(failed)} ({first})"
        else:
            what = f"the final review failed after retries ({first})"
        return RunFailed(what, failed_tiles=failed, report_dir=report_dir, retry=retry)

    # --- the phases --------------------------------------------------------------------------------------------

    def _candidates(self):
        """The steps whose inputs are in, not yet handed out, in the order they should go: syntheses first (a
        tile's report should not wait behind later rows), then views in call order, the look, the final review."""
        if ORIENT not in self._handed:
            yield Work(kind="orientation", name=ORIENT, calls=[pipeline.orientation_call(self.plan, self.backend)])
            return
        if self.orientation is None:
            return
        if self._regions_wanted and REGIONS not in self._handed:  # for the second look, found while views are asked
            yield Work(kind="regions", name=REGIONS, plan=self.plan)
        for tile in self._tiles_ready():
            name = f"synthesize-{tile.id}"
            if self.plan.needs_synthesis(tile) and name not in self._handed:
                call = pipeline.tile_synthesis_call(self.plan, tile, self._observations(tile), self.orientation,
                                                    self.backend)
                yield Work(kind="synthesis", name=name, target=tile.id, calls=[call])
        for view in self.plan.views_in_call_order():
            if view.phases and view_step(view.id) not in self._handed:
                calls = [pipeline.view_call(self.plan, view, p, self.orientation, self.backend) for p in view.phases]
                yield Work(kind="view", name=view_step(view.id), target=view.id, calls=calls)
        for view_id, readings in self._to_witness.items():
            if view_witness_step(view_id) not in self._handed:
                yield Work(kind="view-witness", name=view_witness_step(view_id), target=view_id, plan=self.plan,
                           readings=readings, **self._witness_options)
        if self._look_due and LOOK not in self._handed:
            yield Work(kind="look", name=LOOK, plan=self.plan, readings=self._grouped_readings(), look=self.second_look,
                       room=self.second_look_cap, found=self._found(), **self._witness_options)
        all_reported = len(self.reports) == len(self.plan.tiles)
        if all_reported and self._views_witnessed and WITNESS not in self._handed:
            yield Work(kind="evidence", name=WITNESS, plan=self.plan, readings=self._grouped_readings(),
                       found=self._found(), **self._witness_options)
        if all_reported and WITNESS in self.outcomes and FINAL not in self._handed:
            call = pipeline.final_call(self.plan, self.orientation, self._tile_reports(self.readings()), self.backend)
            yield Work(kind="final", name=FINAL, calls=[call])

    @property
    def _witness_options(self) -> dict:
        return {"witnesses": list(self.witnesses["on"]), "similarity": self.witnesses.get("similarity", 1.0)}

    @property
    def _first_wave_settled(self) -> bool:
        return all(view_step(v) in self.outcomes for v in self._first_wave)

    @property
    def _look_due(self) -> bool:
        """A second look is planned from a complete first wave only: from partial readings a rerun would ask other
        crops."""
        return (self.second_look is not None and self.orientation is not None and self._first_wave_settled
                and not self.failed_views and self._views_witnessed
                and (REGIONS in self.outcomes or not self._regions_wanted))

    @property
    def _regions_wanted(self) -> bool:
        """The text-like regions the second look zooms into where no view read (found once, beside the views)."""
        return self.second_look is not None and self.second_look.zoom_unread

    def _found(self) -> dict[str, str]:
        """What the witnesses found so far: the text-like regions, each view's (in the plan's order), then the second
        look's; a place's first finding stands. Derived from the outcomes alone, so the next step finds the same
        wherever it runs."""
        found: dict[str, str] = {}
        for name in [REGIONS, *(view_witness_step(v.id) for v in self.plan.views), LOOK]:
            for key, value in (self.outcomes[name].found if name in self.outcomes else {}).items():
                found.setdefault(key, value)
        return found

    @property
    def _views_witnessed(self) -> bool:
        """Every answered view's readings are witnessed (or that failed): nothing is looked at twice at once."""
        return all(view_witness_step(v) in self.outcomes for v in self._to_witness)

    @property
    def _look_settled(self) -> bool:
        """The second look is done, not asked for, or skipped because a first-wave view failed."""
        if self.second_look is None or LOOK in self.outcomes:
            return True
        return self._first_wave_settled and bool(self.failed_views)

    def _tiles_ready(self) -> list[View]:
        """Tiles not reported whose views have all answered and none failed (a failed closer look aside), once the
        second look is planned."""
        if self.orientation is None or not self._look_settled:
            return []
        failed = set(self.failed_views)
        ready = []
        for tile in self.plan.tiles:
            inputs = self._inputs(tile)
            if tile.id in self.reports or not all(view_step(v) in self.outcomes for v in inputs):
                continue
            if not any(v in failed and self._view(v).kind != "detail" for v in inputs):
                ready.append(tile)
        return ready

    def _settle_view(self, step: Work, outcome: Outcome) -> None:
        view = self._view(step.target)
        if not outcome.ok:
            if view.kind == "detail":
                self.notes.append(f"the closer look {view.id} at pixels {list(view.box)} failed; its readings stay "
                                  "unconfirmed")
            return
        self.observed[view.id] = [pipeline.parse_observation(view, p, r, self.plan.tile_boxes)
                                  for p, r in zip(view.phases, outcome.replies)]
        readings = pipeline.run_readings(self.plan, self.observed[view.id])
        if self.witnesses["on"] and readings:
            self._to_witness[view.id] = readings
        if self._follow_up:
            self._follow_up(self, view, self.observed[view.id])

    # --- inside ------------------------------------------------------------------------------------------------

    def _view(self, view_id: str) -> View:
        return next(v for v in self.plan.views if v.id == view_id)

    def _inputs(self, tile: View) -> list[str]:
        return [v.id for v in self.plan.views_touching(tuple(tile.cells[0])) if v.phases]

    def _observations(self, tile: View) -> list[Observation]:
        return [o for v in self._inputs(tile) for o in self.observed.get(v, [])]  # a failed closer look: none

    def _tile_reports(self, readings: list[Reading]) -> list[TileReport]:
        """The finished tiles' reports, each with the run's readings that lie in it (a crop reaching past the tiles
        it is cut for, a seam's corner reach, can read a sign in another tile)."""
        return [self.reports[t.id].model_copy(update={"readings": [r for r in readings if t.id in r.tiles]})
                for t in self.plan.tiles if t.id in self.reports]


ORIENT, REGIONS, LOOK, WITNESS, FINAL = "orient", "find-text-regions", "second-look", "witness", "write-review"
VIEW_WITNESS = "witness-"


def view_witness_step(view_id: str) -> str:
    return VIEW_WITNESS + view_id


def view_step(view_id: str) -> str:
    return f"inspect-{view_id}"
