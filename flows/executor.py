"""The driver's executor in a flow: each step a Prefect task (named by kind in the UI), each image's preparation
and report a task, on the flow's task runner (threads, or Dask through prefect-dask)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from prefect.context import FlowRunContext, TagsContext
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from mosaic import evidence
from mosaic.context import RunContext
from mosaic.driver import Job, drive, run_settings, servers_for
from mosaic.engine import Review, Work
from mosaic.pipeline import report_dir_name
from mosaic.schema import FinalReport
from mosaic.second_look import for_run
from mosaic.settings import Settings
from mosaic.steps import perform
from mosaic_tasks import STEP_TASKS, prepare_image, save_report
from mosaic_tasks.limits import leased_servers


def untagged_tasks() -> TagsContext:
    """Task runs started within carry no tags (the flow run keeps its own): Prefect takes a slot of a tag's
    concurrency limit for every tagged task run, a round trip to its server that now and then cost 2.4 s of a task's
    start (one start in eight, measured) while the backend waited."""
    return TagsContext(current_tags=set())


def drive_leased(jobs: list[Job], executor: PrefectExecutor, ctx: RunContext, say, **options) -> None:
    """mosaic.driver.drive within a flow run: the run holds its share of each server's Prefect limit for its whole
    length (leased_servers: other runs wait instead of overloading the servers) and gives every call its server and
    slot itself, wherever the task runs (a slot taken from the Prefect server per call costs more than a fast
    server's answer). A shared limit lower than asked lowers the calls in flight, and is said."""
    pooled = ctx.backend.pooled
    with leased_servers(ctx.backend, ctx.server_slots if pooled else ctx.concurrency, say) as held, untagged_tasks():
        in_flight = min(ctx.concurrency, held * len(ctx.backend.addresses)) if pooled else held
        drive(jobs, executor, in_flight=in_flight, servers=servers_for(ctx, held), memo=ctx.memo, **options)


class PrefectExecutor:
    """prepare: (image path, density, grid, phases) of the images it opens; carry_images: each task carries the
    crops it shows (workers on other machines); name_images: a task's name names its image(s) (a batch). Submit
    within untagged_tasks()."""

    def __init__(self, ctx: RunContext, settings: Settings, out_dir: str, prepare: tuple = (),
                 second_look: bool | None = None, carry_images: bool = False, name_images: bool = False):
        self.ctx, self.settings, self.out_dir, self.prepare = ctx, settings, out_dir, prepare
        self.second_look, self.carry_images, self.name_images = second_look, carry_images, name_images
        # Large inputs are quoted: Prefect would otherwise walk every field of each, looking for futures; on threads
        # only (prefect-dask's own walk turns a quote into a tuple).
        on_threads = isinstance(FlowRunContext.get().task_runner, ThreadPoolTaskRunner)
        self.wrap = quote if on_threads else (lambda value: value)

    def review_of(self, plan) -> tuple[Review, str]:
        review = Review(plan, self.ctx.backend, for_run(self.settings, self.ctx.backend, self.second_look),
                        run_settings=run_settings(self.ctx), witnesses=evidence.run_settings())
        return review, str(Path(self.out_dir) / report_dir_name(plan, self.ctx.backend))

    def open(self, job: Job) -> PrefectFuture:
        density, grid, phases = self.prepare
        future = prepare_image.with_options(task_run_name=f"prepare-{job.name}").submit(
            job.image, density, grid, phases, self.wrap(self.ctx), self.wrap(self.settings))
        return _Mapped(future, self.review_of)

    def steps(self, works: list[tuple[Job, Work]], addresses: list[str] | None) -> PrefectFuture | Future:
        steps = [w for _, w in works]
        if all(w.kind in ("view-witness", "regions") for w in steps):  # in this process, not a task run each
            return _LOCAL.submit(perform, steps, self.ctx)
        names = ", ".join(f"{j.name}/{w.name}" if self.name_images else w.name for j, w in works)
        carried = None
        if self.carry_images:
            blobs = self.ctx.blobs
            carried = self.wrap({sha: blobs.get(sha) for w in steps for call in w.calls for sha in call.images})
        return STEP_TASKS[steps[0].kind].with_options(task_run_name=names[:120]).submit(
            self.wrap(steps), self.wrap(self.ctx), addresses, carried)

    def save(self, job: Job, report: FinalReport) -> PrefectFuture:
        return save_report.with_options(task_run_name=f"save-{job.name}" if self.name_images else "save-report").submit(
            self.wrap(report), self.wrap(job.review.plan), job.folder, self.wrap(self.ctx))


# A view's witnesses and the text-like regions are a second or so of local work, in the middle of the calls: as a
# task run each would also cost this process and the Prefect server the CPU of starting and tracking one.
_LOCAL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mosaic-witness")


class _Mapped:
    """A future whose result is fn(the task's result), computed in the driver's thread."""

    def __init__(self, future: PrefectFuture, fn):
        self.future, self.fn = future, fn

    def add_done_callback(self, callback) -> None:
        self.future.add_done_callback(lambda _: callback(self))

    def result(self):
        return self.fn(self.future.result())

    def __hash__(self):
        return id(self)
