from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from mosaic.context import RunContext
from mosaic.engine import Outcome, Work
from mosaic.report import write_comparison, write_report
from mosaic.schema import Comparison, FinalReport, Plan
from mosaic.settings import Settings
from mosaic.steps import perform

# The memo is the cache: it is content-addressed and shared by every run, so Prefect's own result cache is off.
# No task retries: a step's calls are retried inside it, once, by one policy (mosaic.steps.ask), each retry logged.
quiet = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="prepare-image", **quiet)
def prepare_image(image_path: str, density: str, grid: str | None, phases: list[str], ctx: RunContext,
                  settings: Settings) -> Plan:
    return ctx.prepare(image_path, density, grid, phases, settings)


# One task per step (a view's phases, not each call), or a few steps in turn on one server slot: a Prefect task run
# costs tens of milliseconds of this machine's time, as much as several calls to a local backend cost Mosaic itself.
@task(name="ask-model", **quiet)
def run_steps(works: list[Work], ctx: RunContext, addresses: list[str] | None = None,
              carried: dict[str, bytes] | None = None) -> list[Outcome]:
    """The steps' calls (mosaic.steps.perform); Failed when one step failed after its retries.
    addresses: the server the driver chose, then the others to fail over to. carried: the crops they show, for a
    worker on another machine."""
    return perform(works, ctx, addresses, carried, log=get_run_logger().warning)


# Named by kind in the UI, as the review's steps: orient, inspect-view, second-look, synthesize-tile, witness,
# write-review (a view's witnesses and the text regions run in the flow's own process: flows/executor.py).
STEP_TASKS = {kind: run_steps.with_options(name=name) for kind, name in
              [("orientation", "orient"), ("view", "inspect-view"), ("look", "second-look"),
               ("synthesis", "synthesize-tile"), ("evidence", "witness"), ("final", "write-review")]}


@task(name="synthesize-tile", task_run_name="synthesize-{tile_id}", **quiet)
def synthesis_not_attempted(tile_id: str, failed_views: list[str]) -> State:
    """The synthesis of a tile whose views failed: a failed task run named after the tile, so the run's graph ends
    and shows where."""
    return Failed(message=f"tile {tile_id} not synthesized: its view(s) {', '.join(failed_views)} failed")


@task(name="save-report", **quiet)
def save_report(report: FinalReport, plan: Plan, folder: str, ctx: RunContext) -> str:
    return str(write_report(report, plan, ctx.blobs, Path(folder)))


@task(name="save-comparison", **quiet)
def save_comparison(comparison: Comparison, folder: str, witnessed: list[FinalReport]) -> str:
    return str(write_comparison(comparison, Path(folder), witnessed))
