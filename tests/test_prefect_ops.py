"""Mosaic as Prefect operations, against a real `prefect server start` on loopback and a real `mosaic serve` process.

A scheduled `review-inbox` deployment is triggered with the Prefect CLI; its run, state and artifacts are read back
through the API; a failed run is retried (`prefect flow-run retry`, `mosaic rerun`) and the model server's request
log shows that only the missing calls were made. The UI is rendered in headless chromium.
Set UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mosaic.offline.server import Fault, ModelServer
from mosaic.backend import Backend

from browser import chromium
from conftest import ROOT, fake_vlm, free_port, make_photo, run_cli
from prefect_helpers import api_healthy, completed_scheduled_runs, pooled_deployment, stop_all, wait_for

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI

# Test photos are textured everywhere (no view is blank) and reviewed on a 2x2 grid with three phases: 26 calls
# each. A fault on tile r1c2 costs its 3 phases, its synthesis and the final review.
MISSING_PER_FAILED_TILE = 3 + 1 + 1
SCREENSHOTS = ROOT / "docs" / "screenshots"
DEPLOYMENT = "review-inbox/test"


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    """A Prefect server, a fake VLM server, an inbox with two images and `mosaic serve` running the deployment."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("prefect-ops")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOSAIC_"))}
    env.update(PREFECT_HOME=str(base / "prefect-home"), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOCAL_STORAGE_PATH=str(base / "storage"), PREFECT_RUNNER_POLL_FREQUENCY="1",
               PREFECT_LOGGING_LEVEL="WARNING", PYTHONPATH=str(ROOT), MOSAIC_CACHE_DIR=str(base / "memo"),
               MOSAIC_RETRIES="1", MOSAIC_RETRY_DELAY_S="0", MOSAIC_BACKEND_SLOTS="2",
               MOSAIC_SECOND_LOOK="false")  # these tests count the first wave's calls
    logs = base / "logs"
    logs.mkdir()
    procs = []

    def start(name, argv):
        proc = subprocess.Popen(argv, env=env, cwd=base, stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    started = time.monotonic()
    server = start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)])

    vlm = ModelServer(fake_vlm, models=["fake-vl"]).start()
    auto_vlm = ModelServer(fake_vlm, models=["fake-vl"]).start()
    try:
        wait_for(lambda: api_healthy(api, server, logs / "server.log"), 90, "the Prefect server")
        server_start_s = time.monotonic() - started
        inbox, outbox = base / "inbox", base / "outbox"
        inbox.mkdir()
        make_photo(inbox / "a.png", size=(1200, 800))
        make_photo(inbox / "b.png", size=(1000, 900))
        start("serve", [sys.executable, "-m", "mosaic_cli", "serve", "--name", "test", "--inbox", str(inbox),
                        "--outbox", str(outbox), "--cron", "0 3 * * *", "--model", "openai/fake-vl",
                        "--api-base", vlm.openai_base, "--grid", "2x2"])
        # Deployments that must fire on their own, against their own backend (the tests above count vlm's calls):
        # `mosaic serve --every 1`, and deployments/prefect.yaml on a process work pool with `prefect worker start`.
        for name in ("served", "pooled"):
            (base / f"inbox-{name}").mkdir()
            make_photo(base / f"inbox-{name}" / f"{name}.png", size=(800, 600))
        start("serve-every", [sys.executable, "-m", "mosaic_cli", "serve", "--name", "every-minute", "--every", "1",
                              "--inbox", str(base / "inbox-served"), "--outbox", str(base / "outbox-served"),
                              "--model", "openai/fake-vl", "--api-base", auto_vlm.openai_base, "--grid", "1x1",
                              "--phases", "text"])
        with temporary_settings({PREFECT_API_URL: api}):
            from mosaic_flows.server import client

            def deployment(name=DEPLOYMENT):
                with client() as c:
                    try:
                        return c.read_deployment_by_name(name)
                    except Exception:
                        return None

            deploy = pooled_deployment(env, base, auto_vlm)
            start("worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "mosaic"])
            state = {"api": api, "env": env, "base": base, "vlm": vlm, "inbox": inbox, "outbox": outbox, "logs": logs,
                     "deployment": wait_for(deployment, 60, "mosaic serve to register the deployment"),
                     "server_start_s": server_start_s, "port": port, "deploy": deploy, "auto_vlm": auto_vlm,
                     "every": wait_for(lambda: deployment("review-inbox/every-minute"), 60, "mosaic serve --every 1")}
            yield state
    finally:
        vlm.stop()
        auto_vlm.stop()
        stop_all(procs)


def prefect_cli(ops, *argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "prefect", *argv], env=ops["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def trigger(ops) -> uuid.UUID:
    out = prefect_cli(ops, "deployment", "run", DEPLOYMENT)
    return uuid.UUID(re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1))


def wait_final(ops, run_id: uuid.UUID, after: str | None = None, timeout: float = 240):
    from mosaic_flows.server import client

    def final():
        with client() as c:
            run = c.read_flow_run(run_id)
        done = run.state and run.state.is_final() and (after is None or run.state.id != after)
        return run if done else None

    try:
        return wait_for(final, timeout, f"flow run {run_id}")
    except AssertionError:
        raise AssertionError(f"run {run_id} did not finish; serve log:\n{(ops['logs'] / 'serve.log').read_text()[-3000:]}")


def task_runs(run_id: uuid.UUID) -> dict:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from mosaic_flows.server import client

    with client() as c:
        found = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200)
    return {t.name: t for t in found}


def children(run_id: uuid.UUID) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    from mosaic_flows.server import client

    with client() as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])),
                                sort=FlowRunSort.START_TIME_ASC, limit=100)
    return runs


def artifacts_of(run_id: uuid.UUID) -> dict[str, object]:
    """A run's artifacts by kind: summary, tiles, review, progress (their keys go on with the report folder's name)."""
    from mosaic_flows.server import client, read_artifacts

    with client() as c:
        found = read_artifacts(c, [run_id])
    return {(a.key or a.type).split("-", 1)[0]: a for a in found if a.key or a.type}  # Prefect adds one with neither


def table(artifact) -> list[dict]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def summary(artifact) -> dict:
    from mosaic_tasks.artifacts import summary_from_table

    return summary_from_table(table(artifact))


def test_deployment_is_scheduled_with_described_parameters(ops):
    dep = ops["deployment"]
    assert [s.schedule.cron for s in dep.schedules] == ["0 3 * * *"]
    assert dep.parameters["api_base"] == ops["vlm"].openai_base and dep.parameters["grid"] == "2x2"
    props = dep.parameter_openapi_schema["properties"]
    assert set(props) == {"inbox", "outbox", "model", "api_base", "density", "grid", "phases", "runner", "dask_address"}
    assert all(p.get("description") for p in props.values())
    print(f"prefect server ready in {ops['server_start_s']:.1f} s")


@pytest.fixture(scope="module")
def retried(ops) -> dict:
    """An inbox run that failed on tile r1c2 of both images, then retried: the runs history and show read. Any
    test that needs them asks for this fixture, so each test also runs alone."""
    return fail_then_retry(ops)


def test_failed_tiles_are_named_and_a_retry_makes_only_the_missing_calls(retried):
    assert retried["finished_run"] and set(retried["planned"]) == {"a.png", "b.png"}  # checked in fail_then_retry


def fail_then_retry(ops) -> dict:
    vlm = ops["vlm"]
    vlm.add_fault(Fault(status=500, times=-1, match="This crop is tile r1c2 "))
    t0 = time.monotonic()
    run = wait_final(ops, trigger(ops))
    first = len(vlm.chat_requests())
    print(f"failed run: {first} backend calls in {time.monotonic() - t0:.1f} s")
    assert run.state.is_failed()
    message = run.state.message
    assert "2 of 2 images failed: a.png (tiles r1c2); b.png (tiles r1c2)" in message, message
    assert message.count("r1c2") == 2 and f"prefect flow-run retry {run.id}" in message, message
    planned = {}

    # each image's run: failed state naming the tile, and its artifacts
    image_runs = children(run.id)
    print("inbox run", run.total_run_time, "image runs", [(r.name, r.total_run_time.total_seconds()) for r in image_runs],
          "start lag", (run.start_time - run.expected_start_time).total_seconds())
    assert [r.state.name for r in image_runs] == ["Failed", "Failed"]
    assert "r1c2" in image_runs[0].state.message and f"retry the parent run {run.id}" in image_runs[0].state.message
    assert len({r.name for r in image_runs}) == 2 and all(r.name.startswith("review-") for r in image_runs)
    assert all({"mosaic", "model:openai/fake-vl", f"backend:{vlm.openai_base}"} <= set(r.tags) for r in image_runs)
    assert run.name.startswith("inbox-inbox-")
    for image_run in image_runs:
        facts = summary(artifacts_of(image_run.id)["summary"])
        planned[facts["image"]] = facts["planned"]
        assert facts["made"] == facts["planned"] - MISSING_PER_FAILED_TILE and facts["failed"] == 3
    assert first == sum(planned.values()) - 2 * MISSING_PER_FAILED_TILE
    arts = artifacts_of(image_runs[0].id)
    assert {"summary", "tiles", "review", "progress"} <= set(arts)
    facts = summary(arts["summary"])
    assert facts["failed_tiles"] == "r1c2" and facts["state"] == "partial"
    assert Path(facts["report_dir"]).parent == ops["outbox"]
    assert arts["summary"].key == f"summary-{Path(facts['report_dir']).name.lower()}"  # one key per image and settings
    assert {(a.key or "").split("-", 1)[-1] for a in arts.values()} == {arts["summary"].key.split("-", 1)[1]}, [
        (a.type, a.key, a.description) for a in arts.values()]
    assert [r["status"] for r in table(arts["tiles"]) if r["tile"] == "r1c2"] == ["FAILED"]
    assert arts["progress"].data == 75.0  # 3 of 4 tiles
    assert "r1c2 failed after retries" in arts["review"].data
    tasks = task_runs(image_runs[0].id)
    assert tasks["synthesize-r1c2"].state.is_failed()  # not left NotReady: the graph ends, named after the tile
    assert all(t.state.is_final() for t in tasks.values()), {n: t.state.name for n, t in tasks.items()}
    # a tagged task run first takes a slot of Prefect's tag concurrency limits (seconds, now and then): none carry tags
    assert not [t.name for t in tasks.values() if t.tags]
    assert not list((ops["outbox"]).glob(".mosaic-reviewed/*.json"))

    # the server recovers; `prefect flow-run retry` puts the same run back on the deployment's queue
    vlm.clear_faults()
    t0 = time.monotonic()
    prefect_cli(ops, "flow-run", "retry", str(run.id))
    retried = wait_final(ops, run.id, after=str(run.state.id))
    second = len(vlm.chat_requests()) - first
    print(f"retried run: {second} backend calls in {time.monotonic() - t0:.1f} s")
    assert retried.state.is_completed(), retried.state.message
    assert second == 2 * MISSING_PER_FAILED_TILE
    assert len(list(ops["outbox"].glob(".mosaic-reviewed/*.json"))) == 2
    latest = children(run.id)[-1]
    arts = artifacts_of(latest.id)
    facts = summary(arts["summary"])
    assert (facts["made"], facts["cached"], facts["state"]) == (MISSING_PER_FAILED_TILE, planned["b.png"] - MISSING_PER_FAILED_TILE, "complete")
    assert arts["progress"].data == 100.0 and "## Review" in arts["review"].data
    assert "](data:image/jpeg;base64," in arts["review"].data  # the overview picture, inline
    assert (Path(facts["report_dir"]) / "report.md").exists()

    # the next scheduled or triggered run skips both images: same content, same settings
    again = wait_final(ops, trigger(ops))
    assert again.state.is_completed() and len(vlm.chat_requests()) == first + second and not children(again.id)
    return {"planned": planned, "finished_run": run.id}


def test_history_and_show_read_runs_through_the_api(ops, retried, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", ops["api"])
    with temporary_settings({PREFECT_API_URL: ops["api"]}):
        code, out = run_cli("history", "--json")
        assert code == 0
        rows = [r for r in json.loads(out) if r["image"] in ("a.png", "b.png")]  # not the self-firing deployments'
        planned, missing = retried["planned"], MISSING_PER_FAILED_TILE
        assert [(r["image"], r["state"], r["calls"], r["cached"]) for r in rows[:2]] == [
            ("b.png", "Completed", missing, planned["b.png"] - missing), ("a.png", "Completed", missing, planned["a.png"] - missing)]
        fixed = {(r["image"], r["state"].split(",")[0], r["failed tiles"]) for r in rows[2:4]}
        assert fixed == {("a.png", "Failed", "r1c2"), ("b.png", "Failed", "r1c2")}
        assert {r["state"] for r in rows[2:4]} == {f"Failed, fixed by {r['run']}" for r in rows[:2]}  # the retry's runs
        assert all(r["model"] == "openai/fake-vl" and r["density"] == "custom 2x2" for r in rows)
        assert all(r["backend"] == ops["vlm"].openai_base for r in rows)
        code, out = run_cli("history")
        assert code == 0 and "failed tiles" in out.splitlines()[0] and "a.png" in out

        code, out = run_cli("show", rows[0]["id"])
        assert code == 0
        assert "Completed" in out.splitlines()[0] and "## Review" in out
        assert re.search(r"report: .*outbox/b-", out)
        code, out = run_cli("show", str(retried["finished_run"]))
        assert code == 0 and out.count("image run review-") == 4
        assert out.count("## Review") == 4 and len(re.findall("^report: ", out, re.M)) == 4 and "data:image" not in out

        code, _ = run_cli("show", "no-such-run")
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("mosaic: no flow run named 'no-such-run'") and err.count("\n") == 1


def test_mosaic_rerun_makes_only_the_missing_calls(ops, retried, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    vlm = ops["vlm"]
    make_photo(ops["inbox"] / "c.png", size=(900, 1200))
    vlm.add_fault(Fault(status=500, times=-1, match="This crop is tile r1c1 "))
    run = wait_final(ops, trigger(ops))
    before = len(vlm.chat_requests())
    assert run.state.is_failed() and "c.png" in run.state.message and "r1c1" in run.state.message
    vlm.clear_faults()
    failed_image_run = children(run.id)[0]

    monkeypatch.setenv("PREFECT_API_URL", ops["api"])
    monkeypatch.setenv("MOSAIC_CACHE_DIR", ops["env"]["MOSAIC_CACHE_DIR"])  # the memo `mosaic serve` filled
    # an image run has no deployment: Prefect's retry runs it here, from the checkout, as its failure message says
    retry = f"prefect flow-run retry {failed_image_run.id} --entrypoint flows/review.py:review_image"
    assert retry in failed_image_run.state.message, failed_image_run.state.message
    done = subprocess.run([sys.executable, "-m", *retry.split()], env=ops["env"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert wait_final(ops, failed_image_run.id).state.is_completed()
    assert len(vlm.chat_requests()) - before == MISSING_PER_FAILED_TILE
    with temporary_settings({PREFECT_API_URL: ops["api"]}):
        # `mosaic rerun` of an image run runs it again here with its own parameters: all from the memo now
        code, _ = run_cli("rerun", str(failed_image_run.id))
        err = capsys.readouterr().err
        assert code == 0, err
        assert re.search("reran .*: Completed; 0 calls made, [0-9]+ from the memo", err), err
        assert len(vlm.chat_requests()) - before == MISSING_PER_FAILED_TILE

        # the inbox run has a deployment: it is retried in place, on `mosaic serve`; everything is in the memo now
        code, _ = run_cli("rerun", str(run.id), "--wait", "90")
        err = capsys.readouterr().err
        assert code == 0 and "scheduled for retry" in err and "ended Completed" in err, err
        assert len(vlm.chat_requests()) - before == MISSING_PER_FAILED_TILE


def test_one_concurrency_limit_per_backend(ops, retried):  # retried: runs that called the backend
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mosaic_flows.server import client

    name = Backend.create("openai/fake-vl", ops["vlm"].openai_base).limit_name
    assert name == f"mosaic-backend-127-0-0-1-{ops['vlm'].openai_base.split(':')[-1].split('/')[0]}-v1"
    def released():  # a run that has just ended may still be handing its slot back
        with temporary_settings({PREFECT_API_URL: ops["api"]}), client() as c:
            limit = c.read_global_concurrency_limit_by_name(name)
        return limit if limit.active_slots == 0 else None

    limit = wait_for(released, 30, f"every slot of {name} to be released")
    assert limit.limit == 2 and limit.active and limit.active_slots == 0


def test_ui_shows_run_artifacts_and_deployment_schedule(ops, retried, tmp_path):
    ui = f"http://127.0.0.1:{ops['port']}"
    image_run = children(retried["finished_run"])[-1]
    arts = artifacts_of(image_run.id)
    pages = {  # the UI's artifact pages show the artifact with its flow run; the deployment page its schedule
        "review-artifact.png": (f"{ui}/artifacts/artifact/{arts['review'].id}", ["Mosaic review", "Report folder", "review-b"]),
        "tiles-artifact.png": (f"{ui}/artifacts/artifact/{arts['tiles'].id}", ["Tiles of b.png", "r1c2", "SIGN-"]),
        "deployment-schedule.png": (f"{ui}/deployments/deployment/{ops['deployment'].id}", ["review-inbox", "At 03:00 AM every day"]),
    }
    for name, (url, expected) in pages.items():
        t0 = time.monotonic()
        for _ in range(3):  # on a loaded machine the page's data can come after chromium's virtual-time budget
            dom = chromium(url, "--dump-dom")
            missing = [e for e in expected if e not in dom]
            if not missing:
                break
        assert not missing, f"{url} does not show {missing}"
        shot = tmp_path / name
        chromium(url, f"--screenshot={shot}")
        print(f"{name}: rendered and captured in {time.monotonic() - t0:.1f} s")
        assert shot.stat().st_size > 20_000, f"{name} looks blank"
        if os.environ.get("UPDATE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, SCREENSHOTS / name)


def test_prefect_cli_listings_and_deploy_work(ops):
    assert ops["deploy"].returncode == 0, ops["deploy"].stdout[-2000:] + ops["deploy"].stderr[-2000:]
    assert "review-inbox/inbox-worker" in ops["deploy"].stdout
    for argv in (["flow-run", "ls"], ["deployment", "ls"], ["work-pool", "ls"], ["artifact", "ls"]):
        out = prefect_cli(ops, *argv)
        assert "valid integer" not in out and "Unprocessable" not in out  # what the 422 said (ids may hold "422")
    assert "inbox-worker" in prefect_cli(ops, "deployment", "ls") and "mosaic" in prefect_cli(ops, "work-pool", "ls")


def test_serve_does_not_take_over_a_work_pool_deployment(ops):
    done = subprocess.run([sys.executable, "-m", "mosaic_cli", "serve", "--name", "inbox-worker", "--inbox", str(ops["inbox"]),
                           "--outbox", str(ops["outbox"])], env=ops["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("mosaic: review-inbox/inbox-worker is a deployment of work pool 'mosaic'")
    assert "mosaic: serving" not in done.stderr  # refused before it says it serves


def test_both_deployments_fire_by_themselves(ops):
    """Runs the scheduler created (auto_scheduled), not started by hand, complete and leave a report in the outbox."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from mosaic_flows.server import client

    with client() as c:
        pooled = c.read_deployment_by_name("review-inbox/inbox-worker")
    for name, dep in (("served", ops["every"]), ("pooled", pooled)):
        try:
            runs = wait_for(lambda: completed_scheduled_runs(dep.id), 150, f"a scheduled run of the {name} deployment to complete")
        except AssertionError:
            with client() as c:
                seen = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
            raise AssertionError(f"no scheduled run of the {name} deployment completed in 150 s; its runs: "
                                 f"{sorted((str(r.expected_start_time), r.state_name) for r in seen)[:6]}, now {datetime.now(timezone.utc)}"
                                 f"\nlogs:\n{(ops['logs'] / 'serve-every.log').read_text()[-2000:]}"
                                 f"\n{(ops['logs'] / 'worker.log').read_text()[-2000:]}") from None
        reports = list((ops["base"] / f"outbox-{name}").glob(f"{name}-*/report.json"))
        assert reports, f"no report in outbox-{name} after {runs[0].name}"
        assert json.loads(reports[0].read_text())["complete"]
        print(f"{name}: {len(runs)} scheduled run(s) completed, first {runs[-1].name}")
