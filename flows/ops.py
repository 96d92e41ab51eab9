"""Mosaic on a Prefect server, through Prefect's API client: serve the inbox deployment, history, show, rerun."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, FlowFilter, FlowFilterName, FlowRunFilter,
    FlowRunFilterName, FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from mosaic.errors import BadOption, BackendError, RunFailed
from tasks.ops import SUMMARY_KEY

REVIEW_FLOW, INBOX_FLOW = "mosaic-review", "review-inbox"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def client() -> SyncPrefectClient:
    return get_client(sync_client=True)


def serve_inbox(name: str, parameters: dict, cron: str | None, interval_min: float | None, paused: bool = False) -> None:
    """Register the recurring `review-inbox/NAME` deployment and run its runs in this process until stopped."""
    from prefect.deployments.runner import EntrypointType

    from flows.inbox import review_inbox

    schedule = {"cron": cron} if cron else {"interval": timedelta(minutes=interval_min)} if interval_min else {}
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
    artifacts = read_artifacts(c, run_ids, key=SUMMARY_KEY)
    found: dict[uuid.UUID, dict] = {}
    for a in sorted(artifacts, key=lambda a: a.created):
        rows = _table(a.data)
        if rows and a.flow_run_id:
            found[a.flow_run_id] = rows[0]
    return found


def read_artifacts(c: SyncPrefectClient, run_ids: list[uuid.UUID], key: str | None = None, limit: int = 200) -> list[Artifact]:
    """Artifacts of these runs, oldest first (the sync client's read_artifacts sends nulls the server refuses)."""
    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids), **({"key": ArtifactFilterKey(any_=[key])} if key else {}))
    response = c.request("POST", "/artifacts/filter", json={
        "artifacts": flt.model_dump(mode="json", exclude_unset=True), "sort": ArtifactSort.CREATED_DESC.value,
        "limit": limit, "offset": 0})
    return sorted(Artifact.model_validate_list(response.json()), key=lambda a: a.created)


def history(limit: int = 20, flows: tuple[str, ...] = (REVIEW_FLOW,)) -> list[dict[str, Any]]:
    with client() as c:
        runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))),
                                sort=FlowRunSort.START_TIME_DESC, limit=limit)
        facts = summaries(c, [r.id for r in runs])
    rows = []
    for r in runs:
        s = facts.get(r.id, {})
        params = r.parameters or {}
        rows.append({
            "run": r.name, "id": str(r.id), "started": r.start_time.strftime("%Y-%m-%d %H:%M:%S") if r.start_time else "",
            "image": s.get("image") or str(params.get("image_path", "")).rsplit("/", 1)[-1],
            "model": s.get("model") or params.get("model", ""), "density": s.get("grid") and f"{s['density']} {s['grid']}" or params.get("density", ""),
            "state": r.state.name if r.state else "", "calls": s.get("made", ""), "cached": s.get("cached", ""),
            "duration": f"{r.total_run_time.total_seconds():.1f}s" if r.total_run_time else "",
            "failed tiles": s.get("failed_tiles", ""),
        })
    return rows


def show(id_or_name: str) -> dict[str, Any]:
    """A run, its state, its review (markdown artifact) and its report folder; for an inbox run, its image runs."""
    with client() as c:
        run = find_run(c, id_or_name)
        artifacts = read_artifacts(c, [run.id])
        children = c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])),
                                    sort=FlowRunSort.START_TIME_DESC, limit=200)
    artifacts = sorted(artifacts, key=lambda a: a.created)
    review = next((a.data for a in reversed(artifacts) if a.type == "markdown" and (a.key or "").startswith("review-")), None)
    summary = next((_table(a.data)[0] for a in reversed(artifacts) if a.key == SUMMARY_KEY and _table(a.data)), {})
    return {
        "run": run.name, "id": str(run.id), "state": run.state.name if run.state else "", "message": run.state.message if run.state else "",
        "parameters": run.parameters, "review": review, "summary": summary,
        "children": [{"run": r.name, "id": str(r.id), "state": r.state.name if r.state else ""} for r in children],
    }


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
    else:
        error = state.result(raise_on_failure=False)
        raise error if isinstance(error, RunFailed) else RunFailed(f"the rerun of {run.name} failed: {state.message}")
    return out


def _local_flow(run: FlowRun):
    with client() as c:
        flow_name = c.read_flow(run.flow_id).name
    if flow_name == REVIEW_FLOW:
        from flows.review import review_image

        return review_image
    if flow_name == INBOX_FLOW:
        from flows.inbox import review_inbox

        return review_inbox
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
