from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from prefect import flow, tags
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from mosaic.context import RunContext
from mosaic.errors import RunFailed
from mosaic import pipeline
from mosaic.llm import cached_reply, resolve_model
from mosaic.ops import run_tags
from mosaic.pipeline import complete_review, report_dir_name
from mosaic.progress import Progress
from mosaic.schema import DEFAULT_PHASES, Backend, CallStats, FinalReport, Observation, Plan, TileReport, View
from mosaic.settings import Settings, load_settings
from tasks import (inspect_view, orient, prepare_image, save_report, synthesis_not_attempted, synthesize_tile,
                   write_review)
from tasks.ops import RunArtifacts, retry_hint


def _run_name() -> str:
    """Unique and readable: the image, when the run started, the first characters of its id."""
    from prefect.runtime import flow_run

    image = Path(str((flow_run.parameters or {}).get("image_path", "image"))).name
    return f"review-{image}-{datetime.now():%Y%m%d-%H%M%S}-{str(flow_run.id or '')[:4]}"


class Work(NamedTuple):
    """One task's worth of calls: a view's phases, or a tile's synthesis. known: which calls the memo answered
    when it was queued."""

    kind: str  # "view" or "synthesis"
    view: View
    known: list[bool]


# A task is submitted only when a backend slot is free (at most `concurrency` at once, each making one call at a
# time), so a task run's duration in the UI is its calls'. The pool has room for more than that.
TASK_WORKERS = 16


@flow(name="mosaic-review", flow_run_name=_run_name, persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=TASK_WORKERS))
def review_image(
    image_path: str,
    model: str = "offline",
    api_base: str | None = None,
    density: str = "light",
    grid: str | None = None,
    phases: list[str] = list(DEFAULT_PHASES),
    out_dir: str = "mosaic-reports",
    use_memo: bool = True,
    show_progress: bool = False,
    concurrency: int | None = None,
    input_px: int | None = None,
) -> dict:
    """Review one image: orientation, every tile and seam crop (its phases asked one after another), a report per
    tile, the final review.
    concurrency: model calls in flight at once (default $MOSAIC_CONCURRENCY or 2).
    input_px: the model's encoder size, for density auto when Mosaic cannot size the model ($MOSAIC_INPUT_PX)."""
    started = time.monotonic()
    settings = load_settings(concurrency=concurrency, input_px=input_px)
    ctx = run_context(settings, model, api_base, use_memo)
    retry = dict(retries=settings.retries, retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_s))
    orient_, inspect_, synthesize_, review_ = (t.with_options(**retry) for t in (orient, inspect_view, synthesize_tile, write_review))

    plan = prepare_image(image_path, density, grid, phases, ctx, settings.orientation_px, settings.view_px,
                         settings.offline_budget, settings.skip_blank, settings.input_px)
    folder = str(Path(out_dir) / report_dir_name(plan, ctx.backend))
    stats = CallStats(planned=plan.total_calls)
    bar = Progress(plan.total_calls, len(plan.tiles), enabled=show_progress)
    blank = [v.id for v in plan.views if not v.phases]
    bar.announce(f"mosaic: {plan.total_calls} calls planned" + (f" ({len(blank)} blank views skipped: {', '.join(blank)})" if blank else ""))
    artifacts = RunArtifacts(plan, Path(folder).name)

    def tile_done() -> None:
        bar.tile_done()
        artifacts.tile_done()

    memo = ctx.memo
    orientation = cached_reply(pipeline.orientation_call(plan, ctx.backend), memo) or orient_(quote(plan), quote(ctx))
    _count(stats, bar, orientation.cached)

    # Large inputs are quoted: Prefect would otherwise walk every field of the plan on each task, looking for futures.
    # What the memo answers in full gets no task: a rerun runs tasks only for what is missing (and shows only those).
    observed: dict[str, list[Observation]] = {}
    failed_views: list[str] = []
    reports: dict[str, TileReport] = {}
    # Work for the backend, in call order, each item with which of its phases the memo answered before it started.
    # A tile's synthesis goes to the front once its views have answered, so it does not queue behind later rows.
    waiting: deque[Work] = deque()
    for view in plan.views_in_call_order():
        if not view.phases:
            continue
        hits = [cached_reply(pipeline.view_call(plan, view, p, orientation.content, ctx.backend), memo) for p in view.phases]
        if None in hits:
            waiting.append(Work("view", view, [hit is not None for hit in hits]))
        else:
            observed[view.id] = [pipeline.parse_observation(view, p, hit) for p, hit in zip(view.phases, hits)]
            for _ in hits:
                _count(stats, bar, True)
    inputs = {tile.id: [v.id for v in plan.views_touching(tuple(tile.cells[0])) if v.phases] for tile in plan.tiles}
    unsettled = list(plan.tiles)

    def settle_tiles() -> None:
        """Tiles whose views have all answered (or failed): a report in code, from the memo, or a synthesis to ask."""
        for tile in [t for t in unsettled if all(v in observed or v in failed_views for v in inputs[t.id])]:
            unsettled.remove(tile)
            broken = [v for v in inputs[tile.id] if v in failed_views]
            if broken:
                if plan.needs_synthesis(tile):  # a final state in the UI, named after its tile, instead of NotReady
                    synthesis_not_attempted(tile.id, broken, return_state=True)
                continue
            observations = [o for v in inputs[tile.id] for o in observed[v]]
            if not plan.needs_synthesis(tile):
                reports[tile.id] = pipeline.make_tile_report(tile, observations, None)
                tile_done()
                continue
            hit = cached_reply(pipeline.tile_synthesis_call(plan, tile, observations, orientation.content, ctx.backend), memo)
            if hit is None:
                waiting.appendleft(Work("synthesis", tile, [False]))
            else:
                reports[tile.id] = pipeline.make_tile_report(tile, observations, hit)
                _count(stats, bar, True)
                tile_done()

    errors: list[str] = []
    running: dict[PrefectFuture, Work] = {}
    settle_tiles()
    while waiting or running:
        while waiting and len(running) < ctx.concurrency:
            work = waiting.popleft()
            if work.kind == "synthesis":
                observations = [o for v in inputs[work.view.id] for o in observed[v]]
                future = synthesize_.submit(quote(plan), quote(work.view), quote(observations), orientation.content, quote(ctx))
            else:
                future = inspect_.submit(quote(plan), quote(work.view), orientation.content, quote(ctx))
            running[future] = work
        future = next(as_completed(list(running)))
        future.wait()  # sets the future's final state
        work = running.pop(future)
        item, state = work.view, future.state
        if state.is_failed():
            errors.append(str(future.result(raise_on_failure=False)))
        if work.kind == "synthesis":
            if state.is_completed():
                reports[item.id] = future.result()[0]
                _count(stats, bar, future.result()[1].cached)
                tile_done()
            else:
                stats.failed += 1
                bar.call_done(failed=True)
            continue
        # Counted against the memo as it was when the view was queued: a phase answered on a first attempt is made
        # by this run even if the task's retry found it in the memo. A failed view may still have answered some of
        # its phases; those are in the memo.
        answered = [True] * len(item.phases) if state.is_completed() else _answered(plan, item, orientation.content, ctx)
        for was_known, done in zip(work.known, answered):
            if done:
                _count(stats, bar, was_known)
            else:
                stats.failed += 1
                bar.call_done(failed=True)
        if state.is_completed():
            observed[item.id] = future.result()
        else:
            failed_views.append(item.id)
        settle_tiles()
    bar.close()

    failed_tiles = [t.id for t in plan.tiles if t.id not in reports]
    tile_reports = [reports[t.id] for t in plan.tiles if t.id in reports]
    backend = ctx.backend
    report = FinalReport(
        image=plan.image_path, image_sha256=plan.image_sha256, size=(plan.width, plan.height), model=backend.model,
        api_base=backend.api_base, density=plan.density, grid=f"{plan.cols}x{plan.rows}", cols=plan.cols, rows=plan.rows,
        phases=plan.phases, notes=plan.notes, orientation=orientation.content, review="", readings=[], tiles=tile_reports,
        failed_tiles=failed_tiles, calls=stats, elapsed_s=0.0, complete=not failed_tiles,
    )
    if failed_tiles:
        report.elapsed_s = round(time.monotonic() - started, 3)
        save_report(quote(report), quote(plan), folder, quote(ctx))
        failure = RunFailed(
            f"{len(failed_tiles)} of {len(plan.tiles)} tiles failed after retries: {', '.join(failed_tiles)} "
            f"({errors[0] if errors else 'upstream failure'})", failed_tiles=failed_tiles, report_dir=folder,
            retry=retry_hint())
        artifacts.finish(report, folder, str(failure))
        raise failure

    final = cached_reply(pipeline.final_call(plan, orientation.content, tile_reports, ctx.backend), memo) or review_(
        quote(plan), orientation.content, quote(tile_reports), quote(ctx))
    _count(stats, None, final.cached)
    report.review, report.readings = complete_review(final.content, tile_reports)
    report.elapsed_s = round(time.monotonic() - started, 3)
    report.report_dir = save_report(quote(report), quote(plan), folder, quote(ctx))
    artifacts.finish(report, report.report_dir)
    return report.model_dump(mode="json")


def _answered(plan: Plan, view: View, orientation: str, ctx: RunContext) -> list[bool]:
    """Which phases of a failed view have an answer: each answer is in the memo (or, without it, the run's own)."""
    return [cached_reply(pipeline.view_call(plan, view, p, orientation, ctx.backend), ctx.memo) is not None
            for p in view.phases]


def _count(stats: CallStats, bar: Progress | None, cached: bool) -> None:
    stats.total += 1
    stats.cached += int(cached)
    stats.made += int(not cached)
    if bar:
        bar.call_done(cached)


def run_context(settings: Settings, model: str, api_base: str | None, use_memo: bool) -> RunContext:
    backend = Backend(
        model=resolve_model(model, settings.offline_budget), api_base=(api_base or None) and api_base.rstrip("/"),
        temperature=settings.temperature, max_tokens=settings.max_tokens, num_ctx=settings.num_ctx,
        timeout_s=settings.timeout_s,
    )
    return RunContext(backend=backend, cache_dir=str(settings.cache_dir), use_memo=use_memo,
                      memo_size_mb=settings.cache_size_mb, concurrency=settings.concurrency)


def run_review(concurrency: int = 2, **parameters):
    """Run the flow with `concurrency` calls in flight; returns the flow's final state."""
    runner = ThreadPoolTaskRunner(max_workers=max(TASK_WORKERS, 2 * concurrency))
    with _heartbeats_only_on_a_shared_server(), tags(*run_tags(parameters.get("model", "offline"), parameters.get("api_base"))):
        return review_image.with_options(task_runner=runner)(**parameters, concurrency=concurrency, return_state=True)


@contextmanager
def _heartbeats_only_on_a_shared_server() -> Iterator[None]:
    """Heartbeats let a Prefect server mark a run whose process died as crashed. A temporary server dies with this
    process, so there they only cost time: Prefect joins its heartbeat thread at the end of every run, after up to
    a second of that thread's sleep."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield
