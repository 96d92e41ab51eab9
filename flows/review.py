from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from prefect import flow, tags
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from mosaic.backend import Backend
from mosaic.context import RunContext
from mosaic.driver import planned_line
from mosaic.engine import Review, Work
from mosaic.pipeline import report_dir_name
from mosaic.progress import Progress
from mosaic.schema import DEFAULT_PHASES
from mosaic.second_look import for_run
from mosaic.servers import ServerPool
from mosaic.settings import load_settings
from tasks import ASK, prepare_image, save_report, synthesis_not_attempted
from tasks.artifacts import RunArtifacts, retry_hint
from tasks.limits import leased_servers


def _run_name() -> str:
    """Unique and readable: the image, when the run started, the first characters of its id."""
    from prefect.runtime import flow_run

    image = Path(str((flow_run.parameters or {}).get("image_path", "image"))).name
    return f"review-{image}-{datetime.now():%Y%m%d-%H%M%S}-{str(flow_run.id or '')[:4]}"


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
    second_look: bool | None = None,
) -> dict:
    """Review one image: orientation, every tile and seam crop (its phases asked one after another), a report per
    tile, the final review.
    concurrency: model calls in flight at once (default $MOSAIC_CONCURRENCY or 2).
    input_px: the model's encoder size, for density auto when Mosaic cannot size the model ($MOSAIC_INPUT_PX).
    second_look: closer crops of readings seen once, unclear or read differently ($MOSAIC_SECOND_LOOK, on)."""
    started = time.monotonic()
    settings = load_settings(concurrency=concurrency, input_px=input_px)
    ctx = RunContext.from_settings(settings, model, api_base, use_memo)
    retry = dict(retries=settings.retries, retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_s))
    ask = {kind: task.with_options(**retry) for kind, task in ASK.items()}
    try:
        plan = prepare_image(image_path, density, grid, phases, quote(ctx), quote(settings))
        folder = str(Path(out_dir) / report_dir_name(plan, ctx.backend))
        artifacts = RunArtifacts(plan, Path(folder).name)
        bar = Progress(plan.total_calls, len(plan.tiles), enabled=show_progress)
        review = Review(plan, ctx, on_call=bar.call_done, on_tile=lambda: (bar.tile_done(), artifacts.tile_done()),
                        second_look=for_run(settings, ctx.backend, second_look))
        bar.announce(planned_line(review))
        bar.total_calls = review.stats.planned  # a memoized rerun has settled its second look already

        # Large inputs are quoted: Prefect would otherwise walk every field of each on every task, looking for futures.
        # Only what the memo does not answer becomes a task: a rerun shows (and runs) only what was missing.
        # The run holds its share of each server's Prefect limit (leased_servers) and gives every call its server
        # and slot itself: a slot taken from the Prefect server per call costs more than a fast server's answer.
        share = min(settings.backend_slots, ctx.concurrency)
        servers = ServerPool(ctx.backend.addresses, share) if ctx.backend.addresses else None
        running: dict[PrefectFuture, tuple[Work, str | None]] = {}
        with leased_servers(ctx.backend, settings.backend_slots, occupy=share):
            while not review.finished:
                while len(running) < ctx.concurrency:
                    address = servers.try_acquire() if servers else None
                    if servers and address is None:
                        break
                    work = next(iter(review.next_work(1)), None)
                    if work is None:
                        if address:
                            servers.release(address)
                        break
                    addresses = servers.failover_order(address) if address else None
                    running[ask[work.kind].submit(quote(work), quote(ctx), None, addresses)] = (work, address)
                if not running:
                    break  # nothing left that can be asked
                future = next(as_completed(list(running)))
                future.wait()  # sets the future's final state
                work, address = running.pop(future)
                done = future.state.is_completed()
                error = None if done else future.result(raise_on_failure=False)
                if address:
                    servers.release(address, error if isinstance(error, BaseException) else None)
                review.settle(work, future.result() if done else None, error)
                while review.blocked:  # a final state in the UI, named after its tile, instead of NotReady
                    synthesis_not_attempted(*review.blocked.pop(0), return_state=True)
                bar.total_calls = review.stats.planned
        bar.close()
        report = review.report(time.monotonic() - started)
        report.report_dir = save_report(quote(report), quote(plan), folder, quote(ctx))
    finally:
        ctx.discard_scratch()
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
