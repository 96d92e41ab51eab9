"""`mosaic-batch`: review every image of a folder or pattern in one flow run, the work of all of them in one stream
of tasks, on threads of this process or on a Dask cluster (prefect-dask's DaskTaskRunner).

The flow prepares each image and writes its report here; the model calls (the ask tasks) run where the task
runner puts them. On a cluster of other machines a task carries the crops it shows, and the answers it brings
back are kept in this machine's memo too, so a rerun from here makes only the calls still missing."""

from __future__ import annotations

import contextvars
import os
import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from mosaic.batch import Batch, ImageJob, batch_images
from mosaic.context import RunContext
from mosaic.engine import Review, Work, carried_images
from mosaic.pipeline import report_dir_name
from mosaic.schema import DEFAULT_PHASES
from mosaic.second_look import for_run
from mosaic.servers import ServerPool
from mosaic.settings import load_settings
from tasks import ASK, ask_several, prepare_image, save_report, synthesis_not_attempted
from tasks.artifacts import batch_progress, batch_summary
from tasks.limits import leased_servers

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
            slot, when more are ready than there are slots: fewer task runs where one costs more than a call.
    """
    logger = get_run_logger()
    settings = load_settings(concurrency=concurrency)
    ctx = RunContext.from_settings(settings, model, api_base, use_memo)
    retry = dict(retries=settings.retries, retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_s))
    ask = {kind: task.with_options(**retry) for kind, task in ASK.items()}
    batch = Batch(batch_images(images), open_at_once=open_at_once)
    progress = batch_progress(len(batch.jobs))
    running: dict[PrefectFuture, list[tuple[ImageJob, Work]]] = {}
    # Quoted inputs are not walked for futures on threads; prefect-dask's own walk turns a quote into a tuple.
    wrap = quote if isinstance(FlowRunContext.get().task_runner, ThreadPoolTaskRunner) else (lambda value: value)

    # Preparing an image and writing a report take this process seconds: done on two threads beside the loop, so
    # the servers are not left waiting. Every finished task and side job arrives on one queue.
    finished: queue.Queue = queue.Queue()
    side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mosaic-batch")
    side_jobs = 0

    def on_side(kind: str, job: ImageJob, do: Callable) -> None:
        nonlocal side_jobs
        side_jobs += 1
        side.submit(contextvars.copy_context().run, do).add_done_callback(lambda f: finished.put((kind, job, f)))

    def prepare(job: ImageJob):
        return prepare_image.with_options(task_run_name=f"prepare-{job.name}")(
            job.image, density, grid, phases, quote(ctx), quote(settings))

    def opened(job: ImageJob, outcome) -> None:
        try:
            plan = outcome.result()
        except Exception as e:  # a bad image is named as failed; the others go on
            batch.failed_to_start(job, e)
            logger.warning("%s failed: %s", job.name, job.error)
            return
        folder = str(Path(out_dir) / report_dir_name(plan, ctx.backend))
        batch.start(job, plan, folder, lambda p: Review(p, ctx, second_look=for_run(settings, ctx.backend, second_look)))

    def write_ready() -> None:
        for job in batch.ready():
            while job.review.blocked:
                tile, views = job.review.blocked.pop(0)
                synthesis_not_attempted.with_options(task_run_name=f"{job.name}/synthesize-{tile}")(
                    tile, views, return_state=True)
            report = job.review.report(time.monotonic() - job.started)
            plan = job.review.plan
            on_side("saved", job, lambda job=job, report=report, plan=plan: (
                report, save_report.with_options(task_run_name=f"save-{job.name}")(
                    quote(report), quote(plan), job.folder, quote(ctx))))

    def saved(job: ImageJob, outcome) -> None:
        try:
            report, report.report_dir = outcome.result()
        except Exception as e:  # the report could not be written: the image failed, the others go on
            batch.failed_to_start(job, e)
            return
        batch.finish(job, report)
        logger.info("%s %s: %s", job.name, job.state, report.report_dir)
        progress(batch)

    # The flow gives each call its server and slot, exactly, wherever the task runs; the batch holds every slot of
    # each server's Prefect limit meanwhile (leased_servers), so other runs wait instead of overloading them.
    servers = ServerPool(ctx.backend.addresses, settings.backend_slots) if ctx.backend.addresses else None
    in_flight = min(ctx.concurrency, settings.backend_slots * len(servers.addresses)) if servers else ctx.concurrency
    addressed: dict[PrefectFuture, str] = {}

    def submit() -> None:
        if not servers:  # the offline reader: one item per task, as many as the concurrency
            for job, work in batch.next_work(in_flight - len(running)):
                send(None, [(job, work)])
            return
        free = []
        while len(running) + len(free) < in_flight and (address := servers.try_acquire()) is not None:
            free.append(address)
        # several ready items share a slot when there are more than slots: a task run costs a fast server's call
        groups = batch.next_groups(len(free), in_flight, works_per_task)
        for address, group in zip(free, groups):
            send(address, group)
        for address in free[len(groups):]:
            servers.release(address, None)

    def send(address: str | None, handed: list[tuple[ImageJob, Work]]) -> None:
        addresses = servers.failover_order(address) if address else None
        if len(handed) == 1:
            job, work = handed[0]
            carried = wrap(carried_images(work, ctx)) if carry_images else None
            task = ask[work.kind].with_options(task_run_name=f"{job.name}/{work.name}", tags=[f"image:{job.name}"])
            future = task.submit(wrap(work), wrap(ctx), carried, addresses)
        else:
            works = [w for _, w in handed]
            carried = wrap({k: v for w in works for k, v in carried_images(w, ctx).items()}) if carry_images else None
            names = ", ".join(f"{j.name}/{w.name}" for j, w in handed)
            images = sorted({f"image:{j.name}" for j, _ in handed})
            future = ask_several.with_options(task_run_name=names[:120], tags=images).submit(
                wrap(works), wrap(ctx), carried, addresses, settings.retries, settings.retry_delay_s)
        running[future] = handed
        if address:
            addressed[future] = address
        future.add_done_callback(lambda f: finished.put(("asked", None, f)))

    def asked(future: PrefectFuture) -> None:
        future.wait()
        handed = running.pop(future)
        done = future.state.is_completed()
        replies = future.result() if done else None
        error = None if done else future.result(raise_on_failure=False)
        if future in addressed:
            servers.release(addressed.pop(future), error if isinstance(error, BaseException) else None)
        # ask_several gives each item its own outcome; one item, or a task that failed whole, gives one for all
        outcomes = replies if done and len(handed) > 1 else [(replies, error)] * len(handed)
        for (job, work), (answers, failure) in zip(handed, outcomes):
            batch.settle(job, work, answers, failure, remember=ctx.memo if carry_images and answers else None)

    try:
        with leased_servers(ctx.backend, settings.backend_slots):
            while not batch.finished:
                for job in batch.to_open():
                    on_side("opened", job, lambda job=job: prepare(job))
                write_ready()
                submit()
                if not running and not side_jobs:
                    for job in batch.running:  # not expected: a review with nothing to ask that is not finished
                        batch.failed_to_start(job, "nothing left that can be asked")
                    continue
                kind, job, outcome = finished.get()
                if kind == "asked":
                    asked(outcome)
                    continue
                side_jobs -= 1
                (opened if kind == "opened" else saved)(job, outcome)
    finally:
        side.shutdown(wait=True)
        ctx.discard_scratch()
    summary = batch.summary()
    batch_summary(summary)
    totals = summary["totals"]
    logger.info("batch: %d of %d images reviewed, %d failed; %d calls made, %d from the memo",
                totals["reviewed"], totals["images"], totals["failed"], totals["calls_made"], totals["calls_cached"])
    return summary


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
