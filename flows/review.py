from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from mosaic.context import RunContext
from mosaic.errors import RunFailed
from mosaic.llm import resolve_model
from mosaic.pipeline import complete_review, make_tile_report, report_dir_name
from mosaic.progress import Progress
from mosaic.schema import DEFAULT_PHASES, Backend, CallStats, FinalReport
from mosaic.settings import Settings, load_settings
from tasks import inspect_view, orient, prepare_image, save_report, synthesize_tile, write_review
from tasks.ops import RunArtifacts


def _run_name() -> str:
    from prefect.runtime import flow_run

    parameters = flow_run.parameters or {}
    return f"review-{Path(str(parameters.get('image_path', 'image'))).name}"


@flow(name="mosaic-review", flow_run_name=_run_name, persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=2))
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
) -> dict:
    """Review one image: orientation, every tile and seam one phase at a time, a report per tile, the final review."""
    started = time.monotonic()
    settings = load_settings()
    ctx = run_context(settings, model, api_base, use_memo)
    retry = dict(retries=settings.retries, retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_s))
    orient_, inspect_, synthesize_, review_ = (t.with_options(**retry) for t in (orient, inspect_view, synthesize_tile, write_review))

    plan = prepare_image(image_path, density, grid, phases, ctx, settings.orientation_px, settings.view_px,
                         settings.offline_budget, settings.skip_blank)
    stats = CallStats(planned=plan.total_calls)
    bar = Progress(plan.total_calls, len(plan.tiles), enabled=show_progress)
    blank = [v.id for v in plan.views if not v.phases]
    bar.announce(f"mosaic: {plan.total_calls} calls planned" + (f" ({len(blank)} blank views skipped: {', '.join(blank)})" if blank else ""))
    artifacts = RunArtifacts(plan)

    orientation = orient_(plan, ctx)
    _count(stats, bar, orientation.cached)

    observed = {
        (view.id, phase): inspect_.submit(plan, view, phase, orientation.content, ctx)
        for view in plan.views for phase in view.phases
    }
    synthesized = {
        tile.id: synthesize_.submit(
            plan, tile, [observed[(v.id, p)] for v in plan.views_touching(tuple(tile.cells[0])) for p in v.phases],
            orientation.content, ctx,
        )
        for tile in plan.tiles if plan.needs_synthesis(tile)
    }
    errors: list[str] = []
    for future in as_completed([*observed.values(), *synthesized.values()]):
        future.wait()
        state = future.state
        if state.is_completed():
            value = future.result()
            is_tile = isinstance(value, tuple)
            _count(stats, bar, (value[1] if is_tile else value.reply).cached)
            if is_tile:
                bar.tile_done()
                artifacts.tile_done()
        elif state.is_failed():
            stats.failed += 1
            bar.call_done(failed=True)
            errors.append(str(future.result(raise_on_failure=False)))
        # otherwise NotReady: a synthesis whose inputs failed, never attempted
    bar.close()

    reports, failed_tiles = [], []
    for tile in plan.tiles:
        future = synthesized.get(tile.id)
        if future is None:
            reports.append(make_tile_report(tile, [], None))
        elif future.state.is_completed():
            reports.append(future.result()[0])
        else:
            failed_tiles.append(tile.id)

    backend = ctx.backend
    report = FinalReport(
        image=plan.image_path, image_sha256=plan.image_sha256, size=(plan.width, plan.height), model=backend.model,
        api_base=backend.api_base, density=plan.density, grid=f"{plan.cols}x{plan.rows}", cols=plan.cols, rows=plan.rows,
        phases=plan.phases, notes=plan.notes, orientation=orientation.content, review="", readings=[], tiles=reports,
        failed_tiles=failed_tiles, calls=stats, elapsed_s=0.0, complete=not failed_tiles,
    )
    folder = str(Path(out_dir) / report_dir_name(plan, backend))
    if failed_tiles:
        report.elapsed_s = round(time.monotonic() - started, 3)
        save_report(report, plan, folder, ctx)
        failure = RunFailed(
            f"{len(failed_tiles)} of {len(plan.tiles)} tiles failed after retries: {', '.join(failed_tiles)} "
            f"({errors[0] if errors else 'upstream failure'}); the other tiles' work is kept, so running the same "
            f"command again makes only the missing calls. Partial report: {folder}"
        )
        artifacts.finish(report, folder, str(failure))
        raise failure

    final = review_(plan, orientation.content, reports, ctx)
    _count(stats, None, final.cached)
    report.review, report.readings = complete_review(final.content, reports)
    report.elapsed_s = round(time.monotonic() - started, 3)
    report.report_dir = save_report(report, plan, folder, ctx)
    artifacts.finish(report, report.report_dir)
    return report.model_dump(mode="json")


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
    return RunContext(backend=backend, cache_dir=str(settings.cache_dir), use_memo=use_memo, memo_size_mb=settings.cache_size_mb)


def run_review(concurrency: int = 2, **parameters):
    """Run the flow with `concurrency` calls in flight; returns the flow's final state."""
    runner = ThreadPoolTaskRunner(max_workers=concurrency)
    return review_image.with_options(task_runner=runner)(**parameters, return_state=True)
