from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, tags
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from mosaic.backend import Backend
from mosaic.context import RunContext
from mosaic.driver import Job, planned_line
from mosaic.errors import RunFailed
from mosaic.progress import Progress
from mosaic.schema import DEFAULT_PHASES
from mosaic.settings import load_settings
from mosaic_tasks import prepare_image, synthesis_not_attempted
from mosaic_tasks.artifacts import RunArtifacts, retry_hint

from .executor import PrefectExecutor, drive_leased, untagged_tasks


def _run_name() -> str:
    """Unique and readable: the image, when the run started, the first characters of its id."""
    from prefect.runtime import flow_run

    image = Path(str((flow_run.parameters or {}).get("image_path", "image"))).name
    return f"review-{image}-{datetime.now():%Y%m%d-%H%M%S}-{str(flow_run.id or '')[:4]}"


# The driver keeps `concurrency` steps in flight, each a task; the pool has room for more (reports, a look).
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
    second_look: bool | None = None,
    works_per_task: int = 8,
) -> dict:
    """Review one image: orientation, every tile and seam crop (its phases asked one after another), the second
    look, a report per tile, the final review.
    concurrency: model calls in flight at once (default $MOSAIC_CONCURRENCY or 2).
    input_px: the model's encoder size, for density auto when Mosaic cannot size the model ($MOSAIC_INPUT_PX).
    second_look: closer crops of readings seen once, unclear or read differently ($MOSAIC_SECOND_LOOK, on).
    works_per_task: work items (a view's phases, a tile's synthesis) one task may ask in turn on one server slot
        when more are ready than there are slots, with no more calls than a slot's share of those waiting: a
        task's start costs Prefect more than a fast call."""
    started = time.monotonic()
    settings = load_settings(concurrency=concurrency, input_px=input_px, out_dir=out_dir)
    ctx = RunContext.from_settings(settings, model, api_base, use_memo)
    say = (lambda line: print(line, file=sys.stderr)) if show_progress else get_run_logger().info
    with untagged_tasks():  # the flow run keeps its tags
        try:
            plan = prepare_image(image_path, density, grid, phases, quote(ctx), quote(settings))
            executor = PrefectExecutor(ctx, settings, out_dir, second_look=second_look)
            review, folder = executor.review_of(plan)
            job = Job(image_path, Path(image_path).name, state="running", review=review, folder=folder, started=started)
            artifacts = RunArtifacts(plan, Path(folder).name)
            bar = Progress(review.first_wave_calls + review.second_look_cap, len(plan.tiles), enabled=show_progress)
            bar.announce(planned_line(review))

            def on_change(job: Job) -> None:
                bar.show(job.review)
                artifacts.tiles_done(len(job.review.reports))

            drive_leased([job], executor, ctx, say, per_task=works_per_task, on_change=on_change)
            for tile, views in review.blocked:  # a final state in the UI, named after its tile, instead of NotReady
                synthesis_not_attempted(tile, views, return_state=True)
            bar.close()
        finally:
            ctx.discard_scratch()
    if job.report is None:
        raise RunFailed(job.error or "the report could not be written", report_dir=folder)
    report = job.report
    if not report.complete:
        failure = review.failure(folder, retry_hint())
        artifacts.finish(report, folder, str(failure))
        raise failure
    artifacts.finish(report, report.report_dir)
    return report.model_dump(mode="json")


def run_review(concurrency: int = 2, **parameters):
    """Run the flow with `concurrency` calls in flight; returns the flow's final state."""
    runner = ThreadPoolTaskRunner(max_workers=max(TASK_WORKERS, 2 * concurrency))
    model = parameters.get("model", "offline")
    backend = Backend.create(model, parameters.get("api_base"), load_settings().offline_budget)
    with heartbeats_only_on_a_shared_server(), tags(*backend.tags(model)):
        return review_image.with_options(task_runner=runner)(**parameters, concurrency=concurrency, return_state=True)


@contextmanager
def heartbeats_only_on_a_shared_server() -> Iterator[None]:
    """Heartbeats let a Prefect server mark a run whose process died as crashed. A temporary server dies with this
    process, so there they only cost time: Prefect joins its heartbeat thread at the end of every run, after up to
    a second of that thread's sleep."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield
