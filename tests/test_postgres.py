"""Past one machine: a Prefect server on PostgreSQL, a process worker and the recurring deployment.

Debian's PostgreSQL is started on loopback in a temporary folder; a `prefect server start` uses it through
PREFECT_API_DATABASE_CONNECTION_URL; deployments/prefect.yaml is deployed to a process work pool with a 30-s schedule
and `prefect worker start` runs it. The test waits for a run the schedule made to complete, reads it with
`mosaic history`, and asks PostgreSQL itself that the run is stored there (not in a SQLite file)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mosaic.offline.server import ModelServer

from conftest import ROOT, fake_vlm, free_port, make_photo
from prefect_helpers import api_healthy, completed_scheduled_runs, pooled_deployment, stop_all, wait_for

pytestmark = pytest.mark.slow


def postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))  # Debian keeps initdb and pg_ctl off PATH
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 with an empty `prefect` database; yields its connection URL."""
    initdb, pg_ctl, psql = postgres_bin("initdb"), postgres_bin("pg_ctl"), postgres_bin("psql")
    if not (initdb and pg_ctl and psql):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    folder = Path(tempfile.mkdtemp(prefix="mosaic-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the cluster belongs to Debian's postgres user
        shutil.chown(folder, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    folder.chmod(0o755)
    data, port = folder / "data", free_port()
    run = lambda *argv: subprocess.run([*as_owner, *argv], capture_output=True, text=True, timeout=120)  # noqa: E731
    done = run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    assert done.returncode == 0, done.stderr[-2000:]
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    done = run(pg_ctl, "-D", str(data), "-l", str(folder / "postgres.log"), "-o", options, "-w", "start")
    assert done.returncode == 0, done.stderr[-2000:] + (folder / "postgres.log").read_text()[-2000:]
    try:
        done = run(psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE prefect")
        assert done.returncode == 0, done.stderr
        yield {"url": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect",
               "psql": lambda sql: run(psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "prefect",
                                       "-tAc", sql)}
    finally:
        run(pg_ctl, "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_a_scheduled_run_on_a_postgres_backed_server_completes_and_history_reads_it(postgres, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOSAIC_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api,
               PREFECT_API_DATABASE_CONNECTION_URL=postgres["url"], PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOCAL_STORAGE_PATH=str(tmp_path / "storage"), PREFECT_RUNNER_POLL_FREQUENCY="1",
               PREFECT_LOGGING_LEVEL="WARNING", PYTHONPATH=str(ROOT), MOSAIC_CACHE_DIR=str(tmp_path / "memo"), MOSAIC_SECOND_LOOK="false")
    (tmp_path / "inbox-pooled").mkdir()
    make_photo(tmp_path / "inbox-pooled" / "pooled.png", size=(800, 600))
    procs = []

    def start(name, argv):
        log = open(tmp_path / f"{name}.log", "w")
        procs.append(subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    vlm = ModelServer(fake_vlm, models=["fake-vl"]).start()
    try:
        server = start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                  "--port", str(port)])
        wait_for(lambda: api_healthy(api, server, tmp_path / "server.log"), 120, "the Prefect server on PostgreSQL")
        with temporary_settings({PREFECT_API_URL: api}):
            from mosaic_flows.server import client

            deployed = pooled_deployment(env, tmp_path, vlm)
            assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
            start("worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "mosaic"])
            with client() as c:
                deployment = c.read_deployment_by_name("review-inbox/inbox-worker")
            try:
                runs = wait_for(lambda: completed_scheduled_runs(deployment.id), 180, "a scheduled run to complete")
            except AssertionError:
                raise AssertionError((tmp_path / "worker.log").read_text()[-3000:]) from None
        assert json.loads(next((tmp_path / "outbox-pooled").glob("pooled-*/report.json")).read_text())["complete"]

        history = subprocess.run([sys.executable, "-m", "mosaic_cli", "history", "--json"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert history.returncode == 0, history.stderr[-2000:]
        rows = json.loads(history.stdout)
        assert ("pooled.png", "Completed") in {(r["image"], r["state"]) for r in rows}

        stored = postgres["psql"](f"SELECT count(*) FROM flow_run WHERE id = '{runs[-1].id}' AND state_type = 'COMPLETED'")
        assert stored.stdout.strip() == "1", stored.stdout + stored.stderr
        assert not list((tmp_path / "prefect-home").glob("*.db")), "the server wrote a SQLite database"
    finally:
        vlm.stop()
        stop_all(procs)
