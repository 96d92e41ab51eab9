"""Helpers for the tests that run a real Prefect server: waiting on it, and deploying deployments/prefect.yaml."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def api_healthy(api: str, server: subprocess.Popen, log: Path) -> bool:
    """Does the Prefect server at `api` answer its health check? Fails at once, with its log, if it exited."""
    import httpx

    assert server.poll() is None, f"prefect server exited: {log.read_text()[-2000:]}"
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Terminate processes in reverse start order; kill those still running after 15 s."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def pooled_deployment(env: dict, base: Path, backend) -> subprocess.CompletedProcess:
    """deployments/prefect.yaml as its header says: a process work pool, `prefect deploy` from the checkout. Then, as
    a user would in the UI, its parameters point at a test inbox and backend, and its schedule is every 30 s."""
    from prefect.client.schemas.actions import DeploymentUpdate

    from mosaic_flows.server import client

    run = lambda *argv: subprocess.run([sys.executable, "-m", "prefect", *argv], env=env, cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True, timeout=180)
    assert run("work-pool", "create", "mosaic", "--type", "process").returncode == 0
    deployed = run("--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all")
    with client() as c:
        dep = c.read_deployment_by_name("review-inbox/inbox-worker")
        c.update_deployment(dep.id, DeploymentUpdate(parameters={
            "inbox": str(base / "inbox-pooled"), "outbox": str(base / "outbox-pooled"), "model": "openai/fake-vl",
            "api_base": backend.openai_base, "grid": "1x1", "phases": ["text"]}))
    scheduled = run("deployment", "schedule", "create", "review-inbox/inbox-worker", "--interval", "30", "--replace", "-y")
    assert scheduled.returncode == 0, scheduled.stdout + scheduled.stderr
    return deployed


def completed_scheduled_runs(deployment_id) -> list:
    """The runs of a deployment that its schedule made (not started by hand) and that completed, newest first."""
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from mosaic_flows.server import client

    with client() as c:
        # filtered on the server: the scheduler keeps ~100 future runs, which sort first
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                                    type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))),
                                sort=FlowRunSort.START_TIME_DESC, limit=50)
    return [r for r in runs if r.auto_scheduled]
