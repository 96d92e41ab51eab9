"""The one driver: it runs reviews' steps on any executor whose futures have add_done_callback (a thread pool,
Prefect's task runner through `.submit`, Dask through Prefect's DaskTaskRunner), and the Python API on a thread pool.

    import mosaic
    report = mosaic.review("photo.jpg", model="ollama_chat/qwen2.5vl:7b", density="dense")
    print(report.review, report.report_dir)

`drive` keeps `in_flight` steps at the backend, gives each its server (ServerPool: free slot, fewest in flight, a
failed server cooled down), answers from the memo on the spot what it already holds, opens images as the policy
says (a few at a time, the next one ahead when little work is left) and has each finished review's report saved.
What runs where is the executor's business (mosaic.steps.perform, the tasks of flows/)."""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import evidence
from .context import RunContext
from .engine import Outcome, Review, StepsFailed, Work
from .errors import BackendError, RunFailed
from .llm import cached_reply
from .memo import Memo
from .pipeline import report_dir_name
from .progress import Progress
from .report import write_report
from .schema import DEFAULT_PHASES, FinalReport
from .second_look import for_run
from .servers import ServerPool
from .shaping import plan_line
from .settings import Settings, load_settings
from .steps import perform


@dataclass
class Job:
    """One image of a drive: pending → opening → running → saving → reviewed | failed."""

    image: str
    name: str  # unique in the drive, for task names
    state: str = "pending"
    review: Review | None = None
    folder: str | None = None
    report: FinalReport | None = None
    error: str | None = None
    started: float = 0.0

    @property
    def ended(self) -> bool:
        return self.state in ("reviewed", "failed")

    def summary(self) -> dict:
        calls = self.report.calls.model_dump() if self.report else None
        report_dir = self.report.report_dir if self.report else self.folder
        return {"image": self.image, "state": self.state, "report_dir": report_dir, "calls": calls, "error": self.error}


class Executor(Protocol):
    """Where a drive's work runs. Each method returns a future (add_done_callback, result)."""

    def open(self, job: Job) -> Future:  # -> (Review, report folder)
        ...

    def steps(self, works: list[tuple[Job, Work]], addresses: list[str] | None) -> Future:  # -> list[Outcome]
        ...

    def save(self, job: Job, report: FinalReport) -> Future:  # -> the report folder written
        ...


def drive(jobs: Sequence[Job], executor: Executor, *, in_flight: int, servers: ServerPool | None = None,
          memo: Memo | None = None, open_at_once: int = 1, per_task: int = 1, low_water: int = 8,
          remember: bool = False, on_change: Callable[[Job], None] | None = None) -> None:
    """Run every job to its end. in_flight: steps at the backend at once (with servers: also at most their slots).
    per_task: ready steps one task may make in turn on one server slot, where a task costs more than a call.
    remember: keep answers made elsewhere (workers with their own cache folders) in this memo too."""
    if in_flight < 1 or open_at_once < 1 or per_task < 1:
        raise ValueError("in_flight, open_at_once and per_task must be at least 1")
    arrived: queue.Queue = queue.Queue()
    running: dict[Future, tuple[str, object, str | None, bool]] = {}  # kind, what it is for, server, counted
    order: list[Job] = [j for j in jobs if j.state == "running"]  # images opened first are served first
    busy = 0

    def launch(kind: str, future: Future, payload, address: str | None = None, counted: bool = False) -> None:
        running[future] = (kind, payload, address, counted)
        future.add_done_callback(arrived.put)

    def take(limit: int, calls: int | None = None) -> list[tuple[Job, Work]]:
        """Up to limit steps for the backend, with about `calls` calls between them; a look is launched on its own,
        what the memo answers is settled."""
        taken: list[tuple[Job, Work]] = []
        asked = 0
        for job in [j for j in order if j.state == "running"]:
            while len(taken) < limit and (calls is None or asked < calls):
                progressed = False
                for work in job.review.ready(limit - len(taken), None if calls is None else calls - asked):
                    if not work.needs_backend:
                        launch("steps", executor.steps([(job, work)], None), [(job, work)])
                    elif memo is not None and None not in (hits := [cached_reply(c, memo) for c in work.calls]):
                        settle(job, work, Outcome(replies=hits))
                        progressed = True
                    else:
                        taken.append((job, work))
                        asked += len(work.calls)
                if not progressed:
                    break
        return taken

    def settle(job: Job, work: Work, outcome: Outcome) -> None:
        if remember and memo is not None:
            for call, reply in zip(work.calls, outcome.replies):
                if reply is not None and not reply.cached:
                    memo.put(call.key(), reply.content, reply.usage)
        job.review.done(work, outcome)
        if on_change:
            on_change(job)

    def hand_out() -> None:
        nonlocal busy
        while busy < in_flight:
            size, calls = 1, None
            if per_task > 1:  # several steps in one task, but no more calls than a slot's share of those waiting
                size = per_task
                waiting = sum(j.review.waiting_calls for j in order if j.state == "running")
                calls = max(1, math.ceil(waiting / in_flight))
            address = None
            if servers is not None and (address := servers.try_acquire()) is None:
                return
            group = take(size, calls)
            if not group:
                if address is not None:
                    servers.release(address)
                return
            addresses = servers.failover_order(address) if address is not None else None
            launch("steps", executor.steps(group, addresses), group, address, counted=True)
            busy += 1

    def admit() -> None:
        """Pending images to open: while fewer than open_at_once are open, or one ahead when the open ones have
        little work left to hand out (opening takes seconds; a review waiting on its last answers leaves the
        backend idle meanwhile)."""
        pending = [j for j in jobs if j.state == "pending"]
        open_now = [j for j in jobs if j.state == "running"]
        opening = sum(j.state == "opening" for j in jobs)
        starved = (bool(open_now) and not opening and len(open_now) < 2 * open_at_once
                   and sum(j.review.waiting for j in open_now) < low_water)
        for job in pending[:max(0, open_at_once - len(open_now) - opening) or int(starved)]:
            job.state = "opening"
            launch("open", executor.open(job), job)

    def save_finished() -> None:
        for job in order:
            if job.state == "running" and job.review.finished:
                job.state = "saving"
                report = job.review.report(time.monotonic() - job.started)
                launch("save", executor.save(job, report), (job, report))

    while not all(j.ended for j in jobs):
        admit()
        hand_out()
        save_finished()
        if not running:
            for job in jobs:
                if not job.ended:  # not expected: a review with nothing to ask that is not finished
                    job.state, job.error = "failed", "nothing left that can be asked"
            break
        future = arrived.get()
        kind, payload, address, counted = running.pop(future)
        busy -= counted
        if kind == "steps":
            outcomes = outcomes_of(future, [w for _, w in payload])
            if address is not None:  # a server that failed on the way is cooled down, even when another answered
                trouble = any(address in o.troubled for o in outcomes)
                servers.release(address, BackendError(f"{address} failed", retryable=True) if trouble else None)
            for (job, work), outcome in zip(payload, outcomes):
                settle(job, work, outcome)
        elif kind == "open":
            try:
                payload.review, payload.folder = future.result()
            except Exception as e:  # a bad image is named as failed; the others go on
                payload.state, payload.error = "failed", one_line(e)
            else:
                payload.state, payload.started = "running", time.monotonic()
                order.append(payload)
        else:
            job, report = payload
            try:
                report.report_dir = future.result()
            except Exception as e:  # the report could not be written: the image failed, the others go on
                job.state, job.error = "failed", one_line(e)
            else:
                job.report = report
                job.state = "reviewed" if report.complete else "failed"
                if not report.complete:
                    job.error = one_line(job.review.failure(report.report_dir, None))
            if on_change:
                on_change(job)


def outcomes_of(future: Future, works: list[Work]) -> list[Outcome]:
    """What each step of a task came to; a task that failed whole (a crash, a lost worker) fails each of them."""
    try:
        return future.result()
    except StepsFailed as e:
        return e.outcomes
    except Exception as e:
        return [Outcome(replies=[None] * len(w.calls), error=e) for w in works]


def one_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return (text.splitlines() or [type(error).__name__])[0]


def jobs_of(images: Sequence[str | Path]) -> list[Job]:
    """A job per image, named by its file name (its path where two share a name)."""
    names = [Path(p).name for p in images]
    unique = len(set(names)) == len(names)
    return [Job(str(p), Path(p).name if unique else str(p)) for p in images]


def planned_line(run: Review) -> str:
    """What a run will ask, said before the first call."""
    plan = run.plan
    skipped = [v.id for v in plan.views if not v.phases and v.kind != "detail"]
    line = "mosaic: " + plan_line(plan, run.second_look_cap if run.second_look else 0)
    return line + (f" ({len(skipped)} views ask nothing: {', '.join(skipped)})" if skipped else "")


def run_settings(ctx: RunContext) -> dict:
    """The run's own settings a report records beside the review's."""
    return {"memo": ctx.use_memo, "concurrency": ctx.concurrency}


# --- the Python API: a thread pool --------------------------------------------------------------------------------

class ThreadExecutor:
    """Steps that ask the backend on `pool`; local work (the witnesses, the regions, the second look) on `local`, so it
    never holds a thread a call waits for."""

    def __init__(self, pool: ThreadPoolExecutor, ctx: RunContext, open_image: Callable[[Job], tuple[Review, str]],
                 local: ThreadPoolExecutor | None = None):
        self.pool, self.ctx, self.open_image, self.local = pool, ctx, open_image, local or pool

    def open(self, job: Job) -> Future:
        return self.pool.submit(self.open_image, job)

    def steps(self, works: list[tuple[Job, Work]], addresses: list[str] | None) -> Future:
        pool = self.pool if any(w.needs_backend for _, w in works) else self.local
        return pool.submit(perform, [w for _, w in works], self.ctx, addresses)

    def save(self, job: Job, report: FinalReport) -> Future:
        return self.pool.submit(lambda: str(write_report(report, job.review.plan, self.ctx.blobs, Path(job.folder))))


def servers_for(ctx: RunContext, share: int | None = None) -> ServerPool | None:
    """A run's own pool of its backend's servers, `share` slots each (default ctx.server_slots)."""
    return ServerPool(ctx.backend.addresses, share or ctx.server_slots) if ctx.backend.pooled else None


def review(image_path: str, model: str | None = None, api_base: str | None = None, *, density: str = "light",
           grid: str | None = None, phases: list[str] | tuple[str, ...] = DEFAULT_PHASES, out_dir: str | None = None,
           use_memo: bool = True, concurrency: int | None = None, input_px: int | None = None,
           second_look: bool | None = None, show_progress: bool = False,
           settings: Settings | None = None) -> FinalReport:
    """Review one image and write its report folder; returns the report. Settings not given come from the
    environment (MOSAIC_...), or from `settings` when given. second_look: a closer look at readings seen once or
    read differently (default $MOSAIC_SECOND_LOOK, on). Raises BadOption/BadImage before any call for a bad
    request (mosaic.checks), RunFailed (with the partial report written) when tiles failed after retries,
    BackendError when the backend refused the orientation or the final review."""
    started = time.monotonic()
    given = {k: v for k, v in dict(model=model, api_base=api_base, concurrency=concurrency, input_px=input_px,
                                    out_dir=out_dir).items() if v is not None}
    settings = settings.model_copy(update=given) if settings else load_settings(**given)
    ctx = RunContext.from_settings(settings, settings.model, settings.api_base, use_memo)
    try:
        plan = ctx.prepare(image_path, density, grid, list(phases), settings)
        review = Review(plan, ctx.backend, for_run(settings, ctx.backend, second_look), run_settings=run_settings(ctx),
                        witnesses=evidence.run_settings())
        job = Job(image_path, Path(image_path).name, state="running", review=review, started=started,
                  folder=str(Path(settings.out_dir) / report_dir_name(plan, ctx.backend)))
        bar = Progress(job.review.first_wave_calls + job.review.second_look_cap, len(plan.tiles), enabled=show_progress)
        bar.announce(planned_line(job.review))
        with (ThreadPoolExecutor(max_workers=ctx.concurrency + 1, thread_name_prefix="mosaic") as pool,
              ThreadPoolExecutor(max_workers=2, thread_name_prefix="mosaic-local") as local):
            drive([job], ThreadExecutor(pool, ctx, None, local), in_flight=ctx.concurrency, servers=servers_for(ctx),
                  memo=ctx.memo, on_change=lambda j: bar.show(j.review))
        bar.close()
    finally:
        ctx.discard_scratch()
    if job.report is None:
        raise RunFailed(job.error or "the report could not be written", report_dir=job.folder)
    if not job.report.complete:
        raise job.review.failure(job.folder, "run the same call again")
    return job.report


__all__ = ["BackendError", "Job", "RunFailed", "drive", "planned_line", "review"]
