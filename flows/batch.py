"""`mosaic-batch`: review every image of a folder or pattern in one flow run, the work of all of them in one stream
of tasks, on threads of this process or on a Dask cluster (prefect-dask's DaskTaskRunner).

The flow prepares each image and writes its report here; the model calls (the ask tasks) run where the task
runner puts them. On a cluster of other machines a task carries the crops it shows, and the answers it brings
back are kept in this machine's memo too, so a rerun from here makes only the calls still missing."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from mosaic.batch import batch_images, summary
from mosaic.context import RunContext
from mosaic.driver import Job, jobs_of
from mosaic.schema import DEFAULT_PHASES
from mosaic.settings import load_settings
from mosaic_tasks import synthesis_not_attempted
from mosaic_tasks.artifacts import batch_progress, batch_summary

from .executor import PrefectExecutor, drive_leased
from .review import TASK_WORKERS
from .temporary_server import temporary_server_env


def _run_name() -> str:
    from prefect.runtime import flow_run

    source = (flow_run.parameters or {}).get("images", "images")
    name = Path(source).name if isinstance(source, str) else f"{len(source)}-images"
    return f"batch-{name or 'images'}-{datetime.now():%Y%m%d-%H%M%S}"


@flow(name="mosaic-batch", flow_run_name=_run_name, persist_result=False,
      task_runner=ThreadPoolTaskRunner(max_workers=TASK_WORKERS))
def review_batch(
    images: str | list[str],
    model: str = "offline",
    api_base: str | None = None,
    density: str = "light",
    grid: str | None = None,
    phases: list[str] = list(DEFAULT_PHASES),
    out_dir: str = "mosaic-reports",
    use_memo: bool = True,
    concurrency: int | None = None,
    second_look: bool | None = None,
    carry_images: bool = False,
    open_at_once: int = 4,
    works_per_task: int = 8,
) -> dict:
    """Review every image; one that fails is named as failed and the others go on.

    Args:
        images: A folder, a glob pattern (photos/**/*.jpg) or a list of image paths.
        api_base: The model server's address; several servers of the model comma-separated.
        concurrency: Model calls in flight at once over the whole batch (default $MOSAIC_CONCURRENCY, at least
            $MOSAIC_BACKEND_SLOTS per server).
        carry_images: Each task carries the crops it shows (for workers on other machines, which do not share
            this machine's cache folder).
        open_at_once: Images prepared and reviewed at the same time.
        works_per_task: Work items (a view's phases, a tile's synthesis) one task may ask in turn on one server
            slot, when more are ready than there are slots, with no more calls than a slot's share of those
            waiting: fewer task runs where one costs more than a call.
    """
    logger = get_run_logger()
    started = time.monotonic()
    settings = load_settings(concurrency=concurrency, out_dir=out_dir)
    ctx = RunContext.from_settings(settings, model, api_base, use_memo)
    jobs = jobs_of(batch_images(images))
    progress = batch_progress(len(jobs))
    executor = PrefectExecutor(ctx, settings, out_dir, (density, grid, phases), second_look, carry_images,
                                name_images=True)

    def on_change(job: Job) -> None:
        if job.ended:
            logger.info("%s %s: %s", job.name, job.state, job.error or job.report.report_dir)
            progress(jobs)
            for tile, views in job.review.blocked if job.review else ():
                synthesis_not_attempted.with_options(task_run_name=f"{job.name}/synthesize-{tile}")(
                    tile, views, return_state=True)

    try:
        drive_leased(jobs, executor, ctx, logger.info, open_at_once=open_at_once, per_task=works_per_task,
                     remember=carry_images, on_change=on_change)
    finally:
        ctx.discard_scratch()
    result = summary(jobs, time.monotonic() - started)
    batch_summary(result)
    totals = result["totals"]
    logger.info("batch: %d of %d images reviewed, %d failed; %d calls made, %d from the memo",
                totals["reviewed"], totals["images"], totals["failed"], totals["calls_made"], totals["calls_cached"])
    return result


def task_runner(runner: str = "threads", dask_address: str | None = None, concurrency: int = 2):
    """threads: this process's threads. dask: prefect-dask's DaskTaskRunner, on the scheduler at dask_address, or on
    a local cluster (distributed.LocalCluster: one worker process per core) started for the run."""
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max(TASK_WORKERS, 2 * concurrency))
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    workers = max(1, min(os.cpu_count() or 1, 4))
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": max(2, concurrency),
                                          "processes": True, "dashboard_address": None, "env": temporary_server_env()})


def review_batch_with(runner: str = "threads", dask_address: str | None = None, concurrency: int | None = None):
    """The mosaic-batch flow on the chosen task runner."""
    workers = concurrency or load_settings().concurrency
    return review_batch.with_options(task_runner=task_runner(runner, dask_address, workers))


def run_batch(runner: str = "threads", dask_address: str | None = None, **parameters):
    """Run the flow on the chosen task runner; returns the flow's final state."""
    from prefect import tags

    from mosaic.backend import Backend

    from .review import heartbeats_only_on_a_shared_server

    model = parameters.get("model", "offline")
    backend = Backend.create(model, parameters.get("api_base"), load_settings().offline_budget)
    parameters.setdefault("carry_images", bool(dask_address))
    with heartbeats_only_on_a_shared_server(), tags(*backend.tags(model), f"runner:{runner}"):
        return review_batch_with(runner, dask_address, parameters.get("concurrency"))(**parameters, return_state=True)
