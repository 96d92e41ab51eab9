"""Mosaic on a Prefect server, through Prefect's API client: serve the inbox deployment, history, show, rerun."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, FlowFilter, FlowFilterName, FlowRunFilter,
    FlowRunFilterName, FlowRunFilterParentFlowRunId, FlowRunFilterStartTime,
)
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from mosaic.errors import BadOption, BackendError, RunFailed
from mosaic_tasks.artifacts import SUMMARY_PREFIX, summary_from_table

REVIEW_FLOW, INBOX_FLOW = "mosaic-review", "review-inbox"
COMPARE_FLOW = "mosaic-compare"
BATCH_FLOW = "mosaic-batch"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def client() -> SyncPrefectClient:
    return get_client(sync_client=True)


def serve_inbox(name: str, parameters: dict, cron: str | None, interval_min: float | None, paused: bool = False,
                say=lambda line: None) -> None:
    """Register the recurring `review-inbox/NAME` deployment and run its runs in this process until stopped.
    say: told what is served once the name is known to be free to serve here."""
    from prefect.deployments.runner import EntrypointType

    from mosaic_flows.inbox import review_inbox

    schedule = {"cron": cron} if cron else {"interval": timedelta(minutes=interval_min)} if interval_min else {}
    with client() as c:
        try:
            existing = c.read_deployment_by_name(f"{INBOX_FLOW}/{name}")
        except ObjectNotFound:
            existing = None
    if existing is not None and existing.work_pool_name:
        raise BadOption(f"{INBOX_FLOW}/{name} is a deployment of work pool {existing.work_pool_name!r} (made by prefect "
                        "deploy); serving it here would take it over: choose another --name")
    when = f"cron {cron}" if cron else f"every {interval_min:g} min" if interval_min else "no schedule"
    say(f"mosaic: serving {INBOX_FLOW}/{name} ({when}); Ctrl-C stops")
    review_inbox.serve(
        name=name, parameters=parameters, paused=paused, tags=["mosaic"], limit=1,
        description="Review every new image in the inbox (same content and settings are not reviewed twice); "
                    "reports go to the outbox.",
        entrypoint_type=EntrypointType.MODULE_PATH, **schedule,
    )


def find_run(c: SyncPrefectClient, id_or_name: str) -> FlowRun:
    try:
        return c.read_flow_run(uuid.UUID(id_or_name))
    except ValueError:
        pass
    except ObjectNotFound:
        raise BadOption(f"no flow run {id_or_name} on the Prefect server") from None
    runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[id_or_name])),
                            sort=FlowRunSort.START_TIME_DESC, limit=2)
    if not runs:
        raise BadOption(f"no flow run named {id_or_name!r} on the Prefect server (give its id or name)")
    if len(runs) > 1:
        raise BadOption(f"several flow runs are named {id_or_name!r}: give the run's id")
    return runs[0]


def summaries(c: SyncPrefectClient, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """The run-summary table artifact of each run (the last one a run wrote)."""
    if not run_ids:
        return {}
    found: dict[uuid.UUID, dict] = {}
    for a in read_artifacts(c, run_ids, key_prefix=SUMMARY_PREFIX):
        summary = summary_from_table(_table(a.data))
        if summary and a.flow_run_id:
            found[a.flow_run_id] = summary
    return found


def read_artifacts(c: SyncPrefectClient, run_ids: list[uuid.UUID], key_prefix: str | None = None,
                   limit: int = 200) -> list[Artifact]:
    """Artifacts of these runs, oldest first (the sync client's read_artifacts sends nulls the server refuses)."""
    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids),
                         **({"key": ArtifactFilterKey(like_=f"{key_prefix}%")} if key_prefix else {}))
    response = c.request("POST", "/artifacts/filter", json={
        "artifacts": flt.model_dump(mode="json", exclude_unset=True), "sort": ArtifactSort.CREATED_DESC.value,
        "limit": limit, "offset": 0})
    found = Artifact.model_validate_list(response.json())
    return sorted((a for a in found if not key_prefix or (a.key or "").startswith(key_prefix)), key=lambda a: a.created)


def history(limit: int = 20, flows: tuple[str, ...] = (REVIEW_FLOW,)) -> list[dict[str, Any]]:
    """Recent runs, newest first. A failed review whose image and settings a later run completed says so."""
    with client() as c:
        runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))),  # runs that started:
                                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
                                sort=FlowRunSort.START_TIME_DESC, limit=limit)  # not a schedule's coming ones
        facts = summaries(c, [r.id for r in runs])
    rows = []
    completed_later: dict[str, str] = {}  # report folder -> the newest run that completed it
    for r in reversed(runs):  # oldest first, so a fix is found after the failure
        s = facts.get(r.id, {})
        if r.state and r.state.is_completed() and s.get("report_dir"):
            completed_later[s["report_dir"]] = r.name
    for r in runs:
        s = facts.get(r.id, {})
        params = r.parameters or {}
        state = r.state.name if r.state else ""
        fixed_by = completed_later.get(s.get("report_dir", "")) if r.state and r.state.is_failed() else None
        rows.append({
            "run": r.name, "id": str(r.id), "started": r.start_time.strftime("%Y-%m-%d %H:%M:%S") if r.start_time else "",
            "image": s.get("image") or _images_of(params),
            "model": s.get("model") or params.get("model", ""),
            "backend": s.get("api_base") or params.get("api_base") or "",
            "density": s.get("grid") and f"{s['density']} {s['grid']}" or params.get("density", ""),
            "state": f"{state}, fixed by {fixed_by}" if fixed_by else state,
            "calls": s.get("made", ""), "cached": s.get("cached", ""),
            "duration": f"{r.total_run_time.total_seconds():.1f}s" if r.total_run_time else "",
            "failed tiles": s.get("failed_tiles", ""),
        })
    return rows


def _images_of(parameters: dict) -> str:
    """What a run reviewed, by its parameters: an image, a batch's folder or pattern, or how many images."""
    source = parameters.get("image_path") or parameters.get("images") or ""
    return f"{len(source)} images" if isinstance(source, list) else str(source).rsplit("/", 1)[-1]


def show(id_or_name: str) -> dict[str, Any]:
    """A run, its state, its review (markdown artifact) and its report folder; for an inbox run, each image run's
    state, review and report folder."""
    with client() as c:
        run = find_run(c, id_or_name)
        children = c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])),
                                    sort=FlowRunSort.START_TIME_ASC, limit=200)
        artifacts = read_artifacts(c, [run.id] + [r.id for r in children])
    of_run = lambda run_id: [a for a in artifacts if a.flow_run_id == run_id]  # noqa: E731
    return {**_run_facts(run, of_run(run.id)), "parameters": run.parameters,
            "children": [_run_facts(r, of_run(r.id)) for r in children]}


def _run_facts(run: FlowRun, artifacts: list[Artifact]) -> dict[str, Any]:
    review = next((a.data for a in reversed(artifacts) if a.type == "markdown"
                   and (a.key or "").startswith(("review-", "comparison-"))), None)
    summary = next((summary_from_table(_table(a.data)) for a in reversed(artifacts)
                    if (a.key or "").startswith(SUMMARY_PREFIX)), {})
    images = next((rows for a in reversed(artifacts) if a.type == "table" and not a.key
                   and (rows := _table(a.data)) and {"image", "state", "report_dir"} <= set(rows[0])), [])
    return {"run": run.name, "id": str(run.id), "state": run.state.name if run.state else "",
            "message": run.state.message if run.state else "", "review": _without_pictures(review) if review else None,
            "summary": summary, "images": images}  # images: a batch's, each with its state and report folder


def _without_pictures(markdown: str) -> str:
    """The review as text: the overview picture inlined for the UI is no use in a terminal."""
    return re.sub(r"\n?!\[[^\]]*\]\(data:[^)]*\)\n?", "\n", markdown)


def rerun(id_or_name: str, wait_s: float = 0) -> dict[str, Any]:
    """Run a finished run again with its own parameters; the memo answers every call that had completed.

    A run of a deployment is set back to Scheduled (what the UI's Retry and `prefect flow-run retry` do): the same
    run, picked up by its worker or `mosaic serve`. A run without a deployment (`mosaic run`, an inbox's image run)
    is run again here, with the same parameters, as a new run.
    """
    with client() as c:
        run = find_run(c, id_or_name)
        if not run.state or run.state.type.value not in TERMINAL:
            raise BadOption(f"run {run.name} is {run.state.name if run.state else 'unknown'}: only a finished run can be rerun")
        if run.deployment_id:
            result = c.set_flow_run_state(run.id, Scheduled(message="Retried by mosaic rerun"), force=True)
            if result.status.value != "ACCEPT":
                raise BackendError(f"the Prefect server refused to retry run {run.name}: {result.details}", retryable=False)
            return {"run": run.name, "id": str(run.id), "how": "scheduled", **(_wait(c, run.id, wait_s) if wait_s else {})}
    flow = _local_flow(run)
    state = flow(**run.parameters, return_state=True)
    out = {"run": run.name, "id": str(run.id), "how": "local", "state": state.name, "message": state.message or ""}
    if state.is_completed():
        value = state.result()
        if isinstance(value, dict) and "calls" in value:
            out["calls"], out["report_dir"] = value["calls"], value.get("report_dir")
        elif isinstance(value, dict) and "totals" in value:  # a batch: its reports are in out_dir
            totals = value["totals"]
            out["calls"] = {"made": totals["calls_made"], "cached": totals["calls_cached"]}
            out["report_dir"] = str(Path(run.parameters.get("out_dir", "mosaic-reports")).resolve())
    else:
        error = state.result(raise_on_failure=False)
        raise error if isinstance(error, RunFailed) else RunFailed(f"the rerun of {run.name} failed: {state.message}")
    return out


def _local_flow(run: FlowRun):
    with client() as c:
        flow_name = c.read_flow(run.flow_id).name
    if flow_name == REVIEW_FLOW:
        from mosaic_flows.review import review_image

        return review_image
    if flow_name == INBOX_FLOW:
        from mosaic_flows.inbox import review_inbox

        return review_inbox
    if flow_name == BATCH_FLOW:
        from mosaic_flows.batch import review_batch

        return review_batch
    if flow_name == COMPARE_FLOW:
        from mosaic_flows.compare import compare_models

        return compare_models
    raise BadOption(f"run {run.name} is a run of {flow_name!r}, not of a Mosaic flow")


def _wait(c: SyncPrefectClient, run_id: uuid.UUID, wait_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        run = c.read_flow_run(run_id)
        state = run.state
        if state and state.type.value in TERMINAL and state.message != "Retried by mosaic rerun":
            return {"state": state.name, "message": state.message or ""}
        if time.monotonic() > deadline:
            return {"state": state.name if state else "", "message": f"still {state.name if state else '?'} after {wait_s:g} s"}
        time.sleep(1)


def _table(data: Any) -> list[dict]:
    import json

    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return []
    return data if isinstance(data, list) and all(isinstance(r, dict) for r in data) else []
