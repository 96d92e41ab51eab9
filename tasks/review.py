from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff

from mosaic import pipeline
from mosaic.context import RunContext
from mosaic.errors import BackendError
from mosaic.llm import call_model
from mosaic.report import write_report
from mosaic.schema import FinalReport, ModelCall, ModelReply, Observation, Plan, TileReport, View

from .ops import backend_slot


def worth_retrying(task, task_run, state) -> bool:
    """Retry what can pass on a second try (timeouts, 5xx, 429); not a bad request or an unknown model."""
    try:
        state.result()
    except BackendError as e:
        return e.retryable
    except Exception:
        return True
    return True


# The memo is the cache: it is content-addressed and shared by every run, so Prefect's own result cache is off.
model_task = dict(
    retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1), retry_jitter_factor=0.2,
    retry_condition_fn=worth_retrying, cache_policy=NO_CACHE, persist_result=False,
)


@contextmanager
def _backend_slot(ctx: RunContext) -> Iterator[None]:
    with ctx.in_flight, backend_slot(ctx.backend):
        yield


def _call(call: ModelCall, ctx: RunContext) -> ModelReply:
    return call_model(call, ctx.blobs, ctx.memo, ctx.backend.timeout_s, lambda: _backend_slot(ctx))


@task(name="prepare-image", cache_policy=NO_CACHE, persist_result=False)
def prepare_image(image_path: str, density: str, grid: str | None, phases: list[str], ctx: RunContext,
                  orientation_px: int = 1280, view_px: int = 1280, offline_budget: int = 448,
                  skip_blank: bool = False, input_px: int | None = None) -> Plan:
    return pipeline.prepare(image_path, density, grid, phases, ctx.backend.model, ctx.blobs,
                            orientation_px, view_px, offline_budget, skip_blank, input_px, ctx.backend.api_base)


@task(name="orient", **model_task)
def orient(plan: Plan, ctx: RunContext) -> ModelReply:
    return _call(pipeline.orientation_call(plan, ctx.backend), ctx)


def _call_each(calls: list[ModelCall], ctx: RunContext) -> list[ModelReply]:
    """The calls one after another (the task holds one backend slot's worth of work); every one is attempted before a
    failure is raised, so what was answered is kept (ctx.memo) and a retry makes only the calls still missing. A
    failure worth retrying is raised before one that is not, so the task's retry decision sees it."""
    replies, failures = [], []
    for call in calls:
        try:
            replies.append(_call(call, ctx))
        except Exception as e:
            failures.append(e)
    if failures:
        raise next((e for e in failures if getattr(e, "retryable", True)), failures[0])
    return replies


# One task per view, not per call: a Prefect task run costs tens of milliseconds of this machine's time, as much as
# several calls to a local backend cost Mosaic itself (docs/bench/notes.md).
@task(name="inspect-view", task_run_name="inspect-{view.id}", **model_task)
def inspect_view(plan: Plan, view: View, orientation: str, ctx: RunContext) -> list[Observation]:
    """Every phase asked of one view."""
    replies = _call_each([pipeline.view_call(plan, view, p, orientation, ctx.backend) for p in view.phases], ctx)
    return [pipeline.parse_observation(view, p, r) for p, r in zip(view.phases, replies)]


@task(name="synthesize-tile", task_run_name="synthesize-{tile.id}", **model_task)
def synthesize_tile(plan: Plan, tile: View, observations: list[Observation], orientation: str,
                    ctx: RunContext) -> tuple[TileReport, ModelReply]:
    """observations: what each view touching the tile answered, view by view."""
    call = pipeline.tile_synthesis_call(plan, tile, observations, orientation, ctx.backend)
    reply = _call(call, ctx)
    return pipeline.make_tile_report(tile, observations, reply), reply


@task(name="synthesize-tile", task_run_name="synthesize-{tile_id}", cache_policy=NO_CACHE, persist_result=False)
def synthesis_not_attempted(tile_id: str, failed_views: list[str]) -> State:
    """The synthesis of a tile whose views failed: a failed task run named after the tile, so the run's graph ends
    and shows where."""
    return Failed(message=f"tile {tile_id} not synthesized: its view(s) {', '.join(failed_views)} failed")


@task(name="write-review", **model_task)
def write_review(plan: Plan, orientation: str, reports: list[TileReport], ctx: RunContext) -> ModelReply:
    call = pipeline.final_call(plan, orientation, reports, ctx.backend)
    return _call(call, ctx)


@task(name="save-report", cache_policy=NO_CACHE, persist_result=False)
def save_report(report: FinalReport, plan: Plan, folder: str, ctx: RunContext) -> str:
    return str(write_report(report, plan, ctx.blobs, Path(folder)))
