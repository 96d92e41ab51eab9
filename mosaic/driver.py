"""Run a review in this process with a thread pool: the Python API, and the driver the tests compare with Prefect's.

    import mosaic
    report = mosaic.review("photo.jpg", model="ollama_chat/qwen2.5vl:7b", density="dense")
    print(report.review, report.report_dir)
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from .context import RunContext
from .engine import Review, Work, ask, retried, worth_retrying
from .errors import RunFailed
from .pipeline import report_dir_name
from .progress import Progress
from .report import write_report
from .schema import DEFAULT_PHASES, FinalReport
from .second_look import for_run
from .settings import Settings, load_settings


def review(image_path: str, model: str | None = None, api_base: str | None = None, *, density: str = "light",
           grid: str | None = None, phases: list[str] | tuple[str, ...] = DEFAULT_PHASES, out_dir: str | None = None,
           use_memo: bool = True, concurrency: int | None = None, input_px: int | None = None,
           second_look: bool | None = None, show_progress: bool = False,
           settings: Settings | None = None) -> FinalReport:
    """Review one image and write its report folder; returns the report. Settings not given come from the
    environment (MOSAIC_...), or from `settings` when given. second_look: a closer look at readings seen once or
    read differently (default $MOSAIC_SECOND_LOOK, on). Raises RunFailed (with the partial report written) when
    tiles failed after retries, BackendError when the backend refused the orientation or the final review."""
    started = time.monotonic()
    given = {k: v for k, v in dict(model=model, api_base=api_base, concurrency=concurrency, input_px=input_px,
                                    out_dir=out_dir).items() if v is not None}
    settings = settings.model_copy(update=given) if settings else load_settings(**given)
    ctx = RunContext.from_settings(settings, settings.model, settings.api_base, use_memo)
    try:
        plan = ctx.prepare(image_path, density, grid, list(phases), settings)
        folder = Path(settings.out_dir) / report_dir_name(plan, ctx.backend)
        bar = Progress(plan.total_calls, len(plan.tiles), enabled=show_progress)
        run = Review(plan, ctx, on_call=bar.call_done, on_tile=bar.tile_done,
                     second_look=for_run(settings, ctx.backend, second_look))
        bar.announce(planned_line(run))
        bar.total_calls = run.stats.planned  # a memoized rerun has settled its second look already
        drive(run, ctx, settings.retries, settings.retry_delay_s, bar)
        bar.close()
        report = run.report(time.monotonic() - started)
        report.report_dir = str(write_report(report, plan, ctx.blobs, folder))
    finally:
        ctx.discard_scratch()
    if not report.complete:
        raise run.failure(str(folder), "run the same call again")
    return report


def planned_line(run: Review) -> str:
    """What a run will ask, said before the first call."""
    plan = run.plan
    blank = [v.id for v in plan.views if not v.phases and v.kind != "detail"]
    line = f"mosaic: {run.first_wave_calls} calls planned"
    if run.second_look:
        line += f", and at most {run.second_look_cap} more for a second look"
    return line + (f" ({len(blank)} blank views skipped: {', '.join(blank)})" if blank else "")


def drive(run: Review, ctx: RunContext, retries: int = 3, retry_delay_s: float = 1.0, bar: Progress | None = None) -> None:
    """Make the review's calls, at most ctx.concurrency work items at once, until it is finished."""
    with ThreadPoolExecutor(max_workers=ctx.concurrency, thread_name_prefix="mosaic") as pool:
        running: dict[Future, Work] = {}
        while not run.finished:
            for work in run.next_work(ctx.concurrency - len(running)):
                running[pool.submit(ask_with_retries, work, ctx, retries, retry_delay_s)] = work
            if not running:
                break  # nothing left that can be asked
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                work = running.pop(future)
                try:
                    replies = future.result()
                except Exception as e:
                    run.settle(work, error=e)
                else:
                    run.settle(work, replies)
            if bar is not None:
                bar.total_calls = run.stats.planned


def ask_with_retries(work: Work, ctx: RunContext, retries: int, delay_s: float) -> list:
    """ask, again after a failure worth retrying (exponential backoff): what Prefect's task retries do."""
    return retried(lambda: ask(work, ctx), retries, delay_s)


__all__ = ["RunFailed", "drive", "review", "worth_retrying"]
