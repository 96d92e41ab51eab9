from __future__ import annotations

import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from prefect import flow, tags
from prefect.task_runners import ThreadPoolTaskRunner

from mosaic import compare
from mosaic.backend import Backend
from mosaic.schema import DEFAULT_PHASES, FinalReport
from mosaic.settings import load_settings
from mosaic_tasks import save_comparison
from mosaic_tasks.artifacts import comparison_artifacts

from .review import TASK_WORKERS, heartbeats_only_on_a_shared_server, review_image


def _run_name() -> str:
    from prefect.runtime import flow_run

    image = Path(str((flow_run.parameters or {}).get("image_path", "image"))).name
    return f"compare-{image}-{datetime.now():%Y%m%d-%H%M%S}-{str(flow_run.id or '')[:4]}"


@flow(name="mosaic-compare", flow_run_name=_run_name, persist_result=False)
def compare_models(
    image_path: str,
    models: list[dict],
    density: str = "light",
    grid: str | None = None,
    phases: list[str] = list(DEFAULT_PHASES),
    out_dir: str = "mosaic-reports",
    use_memo: bool = True,
    concurrency: int | None = None,
    input_px: int | None = None,
    second_look: bool | None = None,
    show_progress: bool = False,
) -> dict:
    """Review one image with every model (each a subflow, on one grid; models on different servers at once, each
    within its own concurrency) and compare what they read.
    models: [{"model": "ollama_chat/qwen2.5vl:7b", "api_base": null}, ...]; a model that fails or is unreachable is
    named in the comparison, the others' work is kept. Returns the comparison (comparison.json)."""
    started = time.monotonic()
    pairs = [(m["model"], m.get("api_base")) for m in models]
    settings = load_settings(concurrency=concurrency)
    labels = compare.labels_for(pairs)
    backends = [Backend.create(m, base, settings.offline_budget) for m, base in pairs]
    compare.check_models(backends)
    cols, rows, label, px = compare.shared_grid(compare.image_size(image_path), backends, density, grid,
                                                input_px or settings.input_px)
    runner = ThreadPoolTaskRunner(max_workers=max(TASK_WORKERS, 2 * settings.concurrency))
    run_ids: dict[str, str] = {}

    def review_model(i: int) -> FinalReport | BaseException:
        (model, base), name = pairs[i], labels[i]
        outcome, run_ids[name] = _review(
            runner, backends[i], image_path=image_path, model=model, api_base=base, density=density, grid=f"{cols}x{rows}",
            phases=phases, out_dir=out_dir, use_memo=use_memo, concurrency=settings.concurrency, input_px=px,
            second_look=second_look)
        return outcome

    def said(run) -> None:
        if show_progress:
            print(f"mosaic: {_line(run)}", file=sys.stderr)

    outcomes = compare.review_each(backends, labels, review_model, said)  # each review a subflow of this run
    result, folder, witnessed = compare.assemble(image_path, labels, backends, outcomes, out_dir, phases,
                                                 time.monotonic() - started, (cols, rows, label), run_ids)
    result.flow_run_id = _this_run_id()
    if folder:
        result.comparison_dir = save_comparison(result, str(folder), witnessed)
        comparison_artifacts(result)
    return result.model_dump(mode="json")


# Prefect numbers a flow run's subflows by a counter it reads and writes without a lock: two threads starting a
# subflow at the same moment could get one number, and so one run. A subflow starts only once the one before it runs.
_SUBFLOW_START = threading.Lock()


def _review(runner: ThreadPoolTaskRunner, backend: Backend, model: str,
            **parameters) -> tuple[FinalReport | BaseException, str]:
    """One model's review as a subflow: its report, or what it failed with (a partial report is in its folder), and
    its flow run's id."""
    _SUBFLOW_START.acquire()
    holding = [True]

    def let_the_next_start(*_) -> None:
        if holding[0]:
            holding[0] = False
            _SUBFLOW_START.release()

    try:
        with tags(*backend.tags(model)):
            state = review_image.with_options(task_runner=runner, on_running=[let_the_next_start])(
                model=model, **parameters, return_state=True)
    finally:
        let_the_next_start()
    run_id = str(state.state_details.flow_run_id)
    if state.is_completed():
        return FinalReport.model_validate(state.result()), run_id
    error = state.result(raise_on_failure=False)
    return (error if isinstance(error, BaseException) else RuntimeError(state.message or "the review failed")), run_id


def _this_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _line(run) -> str:
    if run.state == "completed":
        return (f"{run.label}: {run.readings} readings, {run.calls.total} calls ({run.calls.cached} from the memo), "
                f"{run.elapsed_s:.1f} s")
    return f"{run.label}: {run.state}: {run.error}"


def run_compare(**parameters):
    """Run the comparison flow; returns its final state."""
    with heartbeats_only_on_a_shared_server():
        return compare_models(**parameters, return_state=True)
