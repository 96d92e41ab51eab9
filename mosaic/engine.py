"""The review as plain code: what to ask next, answers as they arrive, when a tile is ready, the counts, the report.

A driver takes `Work` from `Review.next_work()`, has its calls made (`ask`, in any thread or process) and hands
the replies, or the failure, back with `Review.settle()`. What the memo already answers never becomes work: it is
settled on the spot. `mosaic.driver` drives a review with a thread pool; `flows/review.py` with Prefect tasks.

The plan is not fixed: `add_view` asks one more view of a tile whose report is not made yet, and a `follow_up`
hook sees every view's answers as they come, so what is asked can depend on what was read."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Literal, TypeVar

from pydantic import BaseModel

from . import pipeline
from .context import RunContext
from .errors import BackendError, BadImage, RunFailed
from .llm import cached_reply, call_model
from .schema import CallStats, FinalReport, ModelCall, ModelReply, Observation, Plan, Reading, TileReport, View
from .second_look import SecondLook, verification_boxes, zoom_boxes
from .settings import load_settings
from .text_regions import text_regions

T = TypeVar("T")

WorkKind = Literal["orientation", "view", "synthesis", "final"]


class Work(BaseModel):
    """One task's worth of calls, made one after another: the orientation, a view's phases, a tile's synthesis or
    the final review. known: which of them the memo answered when the work was queued (they count as cached)."""

    kind: WorkKind
    name: str  # e.g. inspect-r1c2: the task run's name in Prefect
    target: str  # the view or tile it is about ("" for orientation and final)
    calls: list[ModelCall]
    known: list[bool]


def carried_images(work: Work, ctx: RunContext) -> dict[str, bytes]:
    """The crops a work item's calls show, by sha256: for a worker that does not share this cache folder."""
    blobs = ctx.blobs
    return {sha: blobs.get(sha) for call in work.calls for sha in call.images}


def ask_at(work: Work, ctx: RunContext, addresses: list[str], carried: dict[str, bytes] | None = None) -> list[ModelReply]:
    """ask at the first server; when it fails as a server that is down does (no answer, 5xx, 429), at the next:
    what is answered is in the memo, so each server is asked only what is missing."""
    for i, address in enumerate(addresses):
        try:
            return ask(work, ctx, carried=carried, address=address)
        except BackendError as e:
            if i == len(addresses) - 1 or not e.retryable:
                raise
    raise AssertionError("no address")


def ask_several(works: list[Work], ctx: RunContext, addresses: list[str], carried: dict[str, bytes] | None = None,
                retries: int = 3, delay_s: float = 1.0) -> list[tuple[list[ModelReply] | None, str | None]]:
    """ask_at for each work item, one after another on one server slot, each retried on its own (exponential
    backoff): fewer, larger tasks where a task run costs more than a call. Per item (replies, None) or (None, why
    it failed), so one item's failure does not fail the others'."""
    outcomes: list[tuple[list[ModelReply] | None, str | None]] = []
    for work in works:
        try:
            outcomes.append((retried(lambda work=work: ask_at(work, ctx, addresses, carried), retries, delay_s), None))
        except BackendError as e:
            outcomes.append((None, str(e)))
    return outcomes


def retried(attempt: Callable[[], T], retries: int, delay_s: float) -> T:
    """attempt(), again after a failure worth retrying (exponential backoff): what Prefect's task retries do."""
    for n in range(retries + 1):
        try:
            return attempt()
        except Exception as e:
            if n == retries or not worth_retrying(e):
                raise
            time.sleep(delay_s * 2**n)
    raise AssertionError("unreachable")


def worth_retrying(error: BaseException) -> bool:
    """What can pass on a second try (timeouts, 5xx, 429); not a bad request or an unknown model."""
    return error.retryable if isinstance(error, BackendError) else True


def ask(work: Work, ctx: RunContext,
        backend_slot: Callable[[str | None], AbstractContextManager] = lambda address: nullcontext(),
        carried: dict[str, bytes] | None = None, address: str | None = None) -> list[ModelReply]:
    """Make a work item's calls, one after another (it holds one backend slot's worth of work). Every call is
    attempted before a failure is raised, so what was answered is in the memo and a retry makes only what is
    missing; a failure worth retrying is raised before one that is not, so a retry decision sees it.
    backend_slot(address): held around each network call only (a memo hit needs none), e.g. Prefect's concurrency
    limit of the server the call goes to (the one a ServerPool chose, when the backend has several).
    carried: crops by sha256 (carried_images), for a worker on another machine: it uses its own cache folder
    (its MOSAIC_CACHE_DIR), where they are stored first.
    address: the server to call, when the driver chose it (a batch holds every server's slots itself); no slot is
    taken here then."""
    if carried is not None and ctx.use_memo:
        ctx = ctx.model_copy(update={"cache_dir": str(load_settings().cache_dir)})
    pool, blobs = ctx.server_pool, ctx.blobs
    for sha, data in (carried or {}).items():
        if not blobs.has(sha):
            blobs.put(data)

    @contextmanager
    def slot() -> Iterator[str | None]:
        if address is not None:
            yield address
            return
        with ctx.in_flight:
            if pool is None:
                with backend_slot(None):
                    yield None
                return
            with pool.hold() as chosen, backend_slot(chosen):
                yield chosen

    memo, complete = ctx.memo, ctx.complete  # once per item, not per call
    replies, failures = [], []
    for call in work.calls:
        try:
            replies.append(call_model(call, blobs, memo, ctx.backend.timeout_s, slot, complete))
        except Exception as e:
            failures.append(e)
    if failures:
        raise next((e for e in failures if getattr(e, "retryable", True)), failures[0])
    return replies


class Review:
    """One image's review, from its plan to its report. Not thread-safe: one driver thread calls it.

    on_call(cached, failed) and on_tile() report progress; follow_up(review, view, observations) is called when a
    view has answered and may add views (add_view) before the tiles it touches are reported.
    second_look: when given, no tile is reported before every view of the first wave has answered; then the
    readings worth it get closer crops (mosaic.second_look), at most second_look.cap(first wave's calls) of them."""

    def __init__(self, plan: Plan, ctx: RunContext, on_call: Callable[[bool, bool], None] | None = None,
                 on_tile: Callable[[], None] | None = None,
                 follow_up: Callable[[Review, View, list[Observation]], None] | None = None,
                 second_look: SecondLook | None = None):
        plan = plan.model_copy(deep=True)  # views are added to it: the caller's plan stays as it was
        self.plan, self.ctx = plan, ctx
        self.memo = ctx.memo
        self.first_wave_calls = plan.total_calls
        self.stats = CallStats(planned=plan.total_calls)
        if not {"text", "inspect"} & set(plan.phases):
            second_look = None  # it looks again at text: a run that asks for none has nothing to confirm
        self.second_look = second_look
        self.second_look_cap = second_look.cap(plan.total_calls) if second_look else 0
        if second_look and plan.second_look_cap is not None:  # the plan's own (mosaic.shaping), instead of the share
            self.second_look_cap = plan.second_look_cap
        self.notes: list[str] = []
        self._first_wave_done = second_look is None
        self.orientation: str | None = None
        self.observed: dict[str, list[Observation]] = {}
        self.failed_views: list[str] = []
        self.reports: dict[str, TileReport] = {}
        self.review: str | None = None
        self._failures: list[BaseException | str] = []  # what each failed work item ended with
        self.blocked: list[tuple[str, list[str]]] = []  # (tile, its failed views) for tiles that needed a synthesis
        self._on_call, self._on_tile, self._follow_up = on_call, on_tile, follow_up
        self._waiting: deque[Work] = deque()
        self._running: set[str] = set()
        self._unsettled = [t.id for t in plan.tiles]
        self._final_queued = self._final_failed = False
        self._in_follow_up = 0
        self._queue(Work(kind="orientation", name="orient", target="",
                         calls=[pipeline.orientation_call(plan, ctx.backend)], known=[]))

    # --- what the driver calls ---------------------------------------------------------------------------------

    def next_work(self, limit: int | None = None) -> list[Work]:
        """Work to start now, at most limit items (the driver's free slots); each is marked running."""
        started = []
        while self._waiting and (limit is None or len(started) < limit):
            work = self._waiting.popleft()
            self._running.add(work.name)
            started.append(work)
        return started

    def settle(self, work: Work, replies: list[ModelReply] | None = None, error: BaseException | str | None = None) -> None:
        """A work item's replies (one per call), or the failure after its retries."""
        self._running.discard(work.name)
        if replies is None:
            self._failures.append(error if error is not None else "upstream failure")
            # a failed item may still have answered some of its calls: those are in the memo
            answered = [cached_reply(call, self.memo) for call in work.calls]
        else:
            answered = list(replies)
        for was_known, reply in zip(work.known, answered):
            self._count(was_known, failed=reply is None)
        getattr(self, f"_settle_{work.kind}")(work, answered if replies is not None else None)

    @property
    def waiting(self) -> int:
        """Work items ready to start."""
        return len(self._waiting)

    @property
    def errors(self) -> list[str]:
        return [str(e) for e in self._failures]

    @property
    def finished(self) -> bool:
        return not self._waiting and not self._running and (self.review is not None or self._stuck)

    @property
    def failed_tiles(self) -> list[str]:
        return [t.id for t in self.plan.tiles if t.id not in self.reports]

    def add_view(self, view: View) -> None:
        """Ask one more view, e.g. a closer crop; the tiles it touches are reported only after it has answered."""
        if view.kind == "tile":
            raise ValueError("add_view adds a seam or detail view, not a tile: the grid is fixed")
        if any(v.id == view.id for v in self.plan.views):
            raise ValueError(f"view {view.id} is already in the plan")
        touched = [t.id for t in self.plan.tiles if t.cells[0] in view.cells]
        if not set(touched) <= set(self._unsettled):
            raise ValueError(f"view {view.id} touches a tile that is already reported")
        self.plan.views.append(view)
        self.stats.planned = self.plan.total_calls
        if self.orientation is not None:  # before it, the orientation's answer queues every view in the plan
            self._queue_view(view)

    def report(self, elapsed_s: float = 0.0) -> FinalReport:
        """The report as it stands: complete once the review is written, else what the finished tiles hold."""
        plan, backend = self.plan, self.ctx.backend
        readings = self.readings()
        tiles = self._tile_reports(readings)
        report = FinalReport(
            image=plan.image_path, image_sha256=plan.image_sha256, size=(plan.width, plan.height), model=backend.model,
            api_base=",".join(backend.addresses) or None, density=plan.density, grid=f"{plan.cols}x{plan.rows}", cols=plan.cols,
            rows=plan.rows, phases=plan.phases, notes=plan.notes + self.notes, orientation=self.orientation or "", review="",
            readings=readings, tiles=tiles, answers=pipeline.answers(plan, self.observed),
            second_look=self.second_look is not None, failed_tiles=self.failed_tiles, calls=self.stats.model_copy(),
            elapsed_s=round(elapsed_s, 3), complete=self.review is not None, settings=self.settings(),
        )
        if self.review is not None:
            report.review = pipeline.complete_review(self.review, report.readings)
        return report

    def settings(self) -> dict:
        """What made this report besides the image: enough to make it again, or to tell two reports apart."""
        plan, backend, look = self.plan, self.ctx.backend, self.second_look
        return {
            "model": backend.model, "api_base": ",".join(backend.addresses) or None, "density": plan.density,
            "grid": f"{plan.cols}x{plan.rows}", "phases": list(plan.phases),
            "second_look": look.model_dump() | {"calls_cap": self.second_look_cap} if look else None,
            "structured_output": backend.structured_output, "temperature": backend.temperature,
            "max_tokens": backend.max_tokens, "num_ctx": backend.num_ctx, "timeout_s": backend.timeout_s,
            "memo": self.ctx.use_memo, "concurrency": self.ctx.concurrency,
        }

    def _tile_reports(self, readings: list[Reading]) -> list[TileReport]:
        """The finished tiles' reports, each with the run's readings that lie in it (a crop reaching past the tiles
        it is cut for, a seam's corner reach, can read a sign in another tile)."""
        return [self.reports[t.id].model_copy(update={"readings": [r for r in readings if t.id in r.tiles]})
                for t in self.plan.tiles if t.id in self.reports]

    def readings(self) -> list[Reading]:
        """Every reading the views made so far, one per sign with its evidence, confirmed first."""
        return pipeline.run_readings(self.plan, [o for v in self.plan.views for o in self.observed.get(v.id, [])])

    def failure(self, report_dir: str | None, retry: str | None) -> RunFailed | BackendError:
        """What failed, for a review that did not finish: the tiles, or the final review. When the orientation or
        the final review failed on a backend error, that error itself (e.g. an unknown model, exit 3)."""
        failed, first = self.failed_tiles, self.errors[0] if self.errors else "upstream failure"
        if (self.orientation is None or self._final_failed) and self._failures and isinstance(
                self._failures[-1], BackendError):
            return self._failures[-1]
        if self.orientation is None:
            what = f"the orientation call failed after retries, so no tile was asked ({first})"
        elif failed:
            what = (f"{len(failed)} of {len(self.plan.tiles)} tiles failed after retries: {', '.join(failed)} "
                    f"({first})")
        else:
            what = f"the final review failed after retries ({first})"
        return RunFailed(what, failed_tiles=failed, report_dir=report_dir, retry=retry)

    # --- inside ------------------------------------------------------------------------------------------------

    @property
    def _stuck(self) -> bool:
        """Nothing more can be done: the orientation or the final review failed, or every tile is settled and some
        failed."""
        if self.orientation is None or self._final_failed:
            return True
        return not self._unsettled and bool(self.failed_tiles)

    def _queue(self, work: Work, first: bool = False) -> None:
        """Settled at once from the memo when it answers every call, else waiting for a driver."""
        hits = [cached_reply(call, self.memo) for call in work.calls]
        if None not in hits:
            for _ in hits:
                self._count(True)
            getattr(self, f"_settle_{work.kind}")(work, hits)
            return
        work = work.model_copy(update={"known": [hit is not None for hit in hits]})
        (self._waiting.appendleft if first else self._waiting.append)(work)

    def _count(self, cached: bool, failed: bool = False) -> None:
        if failed:
            self.stats.failed += 1
        else:
            self.stats.total += 1
            self.stats.cached += int(cached)
            self.stats.made += int(not cached)
        if self._on_call:
            self._on_call(cached, failed)

    def _settle_orientation(self, work: Work, replies: list[ModelReply] | None) -> None:
        if replies is None:
            return
        self.orientation = replies[0].content
        for view in self.plan.views_in_call_order():
            self._queue_view(view)
        self._settle_tiles()

    def _queue_view(self, view: View) -> None:
        if not view.phases:
            return
        calls = [pipeline.view_call(self.plan, view, p, self.orientation, self.ctx.backend) for p in view.phases]
        self._queue(Work(kind="view", name=f"inspect-{view.id}", target=view.id, calls=calls, known=[]))

    def _view(self, view_id: str) -> View:
        return next(v for v in self.plan.views if v.id == view_id)

    def _settle_view(self, work: Work, replies: list[ModelReply] | None) -> None:
        view = self._view(work.target)
        if replies is None:
            self.failed_views.append(view.id)
            if view.kind == "detail":
                self.notes.append(f"the closer look {view.id} at pixels {list(view.box)} failed; its readings stay "
                                  "unconfirmed")
        else:
            self.observed[view.id] = [pipeline.parse_observation(view, p, r, self.plan.tile_boxes)
                                      for p, r in zip(view.phases, replies)]
            if self._follow_up:
                self._in_follow_up += 1
                try:
                    self._follow_up(self, view, self.observed[view.id])
                finally:
                    self._in_follow_up -= 1
        self._settle_tiles()

    def _inputs(self, tile: View) -> list[str]:
        return [v.id for v in self.plan.views_touching(tuple(tile.cells[0])) if v.phases]

    def _observations(self, tile: View) -> list[Observation]:
        return [o for v in self._inputs(tile) for o in self.observed.get(v, [])]  # a failed closer look: none

    def _settle_tiles(self) -> None:
        """Tiles whose views have all answered (or failed): a report in code, or a synthesis to ask (first in line,
        so it does not wait behind later rows)."""
        if self._in_follow_up:  # views added from the memo settle once the hook is done adding
            return
        if not self._first_wave_done:
            if self.orientation is None or not all(v.id in self.observed or v.id in self.failed_views
                                                   for v in self.plan.views if v.phases):
                return
            self._first_wave_done = True
            if not self.failed_views:  # planned from partial readings, a rerun would ask other crops
                self._in_follow_up += 1
                try:
                    self._plan_second_look()
                except BadImage as e:
                    self.notes.append(f"no second look: {e}")
                finally:
                    self._in_follow_up -= 1
        for tile in [self._view(t) for t in self._unsettled]:
            inputs = self._inputs(tile)
            if not all(v in self.observed or v in self.failed_views for v in inputs):
                continue
            self._unsettled.remove(tile.id)
            broken = [v for v in inputs if v in self.failed_views and self._view(v).kind != "detail"]
            if broken:
                if self.plan.needs_synthesis(tile):
                    self.blocked.append((tile.id, broken))
                continue
            if not self.plan.needs_synthesis(tile):
                self._tile_done(pipeline.make_tile_report(self.plan, tile, self._observations(tile), None))
                continue
            call = pipeline.tile_synthesis_call(self.plan, tile, self._observations(tile), self.orientation,
                                                self.ctx.backend)
            self._queue(Work(kind="synthesis", name=f"synthesize-{tile.id}", target=tile.id, calls=[call], known=[]),
                        first=True)
        self._maybe_final()

    def _plan_second_look(self) -> None:
        """Closer crops, each a view of the text phase: first of the readings worth one more look, then, within the
        cap, of text-like regions that no view read."""
        plan, look, cap = self.plan, self.second_look, self.second_look_cap
        tile_side = max(max(t.box[2] - t.box[0], t.box[3] - t.box[1]) for t in plan.tiles)
        readings = self.readings()
        boxes = verification_boxes(readings, {v.id: v for v in plan.views}, plan.width, plan.height, tile_side, cap)
        image = pipeline.original_image(plan)
        if look.zoom_unread and len(boxes) < cap:
            regions = text_regions(image, plan.image_sha256, self.ctx.blobs)
            boxes += zoom_boxes(regions, readings, plan.width, plan.height, tile_side, cap - len(boxes), boxes)
        for view in pipeline.detail_views(plan, image, boxes, self.ctx.blobs, look.zoom_px):
            self.stats.second_look += len(view.phases)
            self.add_view(view)

    def _settle_synthesis(self, work: Work, replies: list[ModelReply] | None) -> None:
        if replies is not None:
            tile = self._view(work.target)
            self._tile_done(pipeline.make_tile_report(self.plan, tile, self._observations(tile), replies[0]))
        self._maybe_final()

    def _tile_done(self, report: TileReport) -> None:
        self.reports[report.tile] = report
        if self._on_tile:
            self._on_tile()

    def _maybe_final(self) -> None:
        if self._final_queued or self._unsettled or len(self.reports) < len(self.plan.tiles):
            return
        self._final_queued = True
        tiles = self._tile_reports(self.readings())
        call = pipeline.final_call(self.plan, self.orientation, tiles, self.ctx.backend)
        self._queue(Work(kind="final", name="write-review", target="", calls=[call], known=[]))

    def _settle_final(self, work: Work, replies: list[ModelReply] | None) -> None:
        if replies is None:
            self._final_failed = True
        else:
            self.review = replies[0].content
