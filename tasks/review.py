from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff

from mosaic import driver, engine
from mosaic.context import RunContext
from mosaic.report import write_comparison, write_report
from mosaic.schema import Comparison, FinalReport, ModelReply, Plan
from mosaic.settings import Settings

from .limits import backend_slot


def worth_retrying(task, task_run, state) -> bool:
    """Retry what can pass on a second try (timeouts, 5xx, 429); not a bad request or an unknown model."""
    try:
        state.result()
    except Exception as e:
        return driver.worth_retrying(e)
    return True


# The memo is the cache: it is content-addressed and shared by every run, so Prefect's own result cache is off.
model_task = dict(
    retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1), retry_jitter_factor=0.2,
    retry_condition_fn=worth_retrying, cache_policy=NO_CACHE, persist_result=False,
)


@task(name="prepare-image", cache_policy=NO_CACHE, persist_result=False)
def prepare_image(image_path: str, density: str, grid: str | None, phases: list[str], ctx: RunContext,
                  settings: Settings) -> Plan:
    return ctx.prepare(image_path, density, grid, phases, settings)


# One task per work item (a view's phases, not each call): a Prefect task run costs tens of milliseconds of this
# machine's time, as much as several calls to a local backend cost Mosaic itself (docs/bench/notes.md).
@task(name="ask-model", task_run_name="{work.name}", **model_task)
def ask_model(work: engine.Work, ctx: RunContext, carried: dict[str, bytes] | None = None,
              addresses: list[str] | None = None) -> list[ModelReply]:
    """The work item's calls, each holding a slot of its server's limit over every run on this Prefect server.
    carried: the crops it shows, for a worker on another machine (engine.carried_images). addresses: the server the
    batch chose (it holds the slot), then the others to fail over to (flows/batch.py)."""
    if addresses:
        return engine.ask_at(work, ctx, addresses, carried)
    return engine.ask(work, ctx, lambda server: backend_slot(ctx.backend, server), carried)


@task(name="ask-several", cache_policy=NO_CACHE, persist_result=False)
def ask_several(works: list[engine.Work], ctx: RunContext, carried: dict[str, bytes] | None, addresses: list[str],
                retries: int, retry_delay_s: float) -> list[tuple[list[ModelReply] | None, str | None]]:
    """Several work items on the slot of the server the batch chose, each retried on its own (engine.ask_several):
    per item its replies or why it failed."""
    outcomes = engine.ask_several(works, ctx, addresses, carried, retries, retry_delay_s)
    for work, (_, error) in zip(works, outcomes):
        if error:
            get_run_logger().warning("%s failed: %s", work.name, error)
    return outcomes


# Named by kind in the UI, as the review's steps: orient, inspect-view, synthesize-tile, write-review.
ASK = {kind: ask_model.with_options(name=name) for kind, name in
       [("orientation", "orient"), ("view", "inspect-view"), ("synthesis", "synthesize-tile"), ("final", "write-review")]}


@task(name="synthesize-tile", task_run_name="synthesize-{tile_id}", cache_policy=NO_CACHE, persist_result=False)
def synthesis_not_attempted(tile_id: str, failed_views: list[str]) -> State:
    """The synthesis of a tile whose views failed: a failed task run named after the tile, so the run's graph ends
    and shows where."""
    return Failed(message=f"tile {tile_id} not synthesized: its view(s) {', '.join(failed_views)} failed")


@task(name="save-report", cache_policy=NO_CACHE, persist_result=False)
def save_report(report: FinalReport, plan: Plan, folder: str, ctx: RunContext) -> str:
    return str(write_report(report, plan, ctx.blobs, Path(folder)))


@task(name="save-comparison", cache_policy=NO_CACHE, persist_result=False)
def save_comparison(comparison: Comparison, folder: str) -> str:
    return str(write_comparison(comparison, Path(folder)))
