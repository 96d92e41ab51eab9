"""Mosaic's local Prefect server, with real processes: the first run starts it, later runs reuse it, history and show
read it with no PREFECT_API_URL, `mosaic server stop` stops it; a port in use falls back to a temporary server."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import free_port, make_photo
from mosaic_cli.local_server import LocalServer, _alive, configured_api_url

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


@pytest.fixture
def local(tmp_path):
    """An environment with no Prefect server configured: a fresh PREFECT_HOME, Mosaic's own server on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MOSAIC_PREFECT_SERVER")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), MOSAIC_SERVER_PORT=str(port),
               MOSAIC_CACHE_DIR=str(tmp_path / "memo"), MOSAIC_OUT_DIR=str(tmp_path / "reports"))
    server = LocalServer(port, tmp_path / "prefect-home")
    try:
        yield env, server
    finally:
        server.stop()


def cli(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosaic_cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def start(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mosaic_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_the_first_run_starts_the_server_later_runs_reuse_it_and_history_reads_it(local, tmp_path):
    env, server = local
    photo = make_photo(tmp_path / "photo.png", size=(900, 600))
    args = ("run", str(photo), "--grid", "2x1", "--phases", "text", "--json")

    status = cli(env, "server", "status")
    assert status.returncode == 1 and "not running" in status.stdout

    # two runs at once on a machine with no server: one server is started, both runs use it
    first, second = start(env, *args), start(env, *args)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    starting = [err for _, err in outs if "starting Mosaic's local Prefect server" in err]
    assert len(starting) == 1, [err for _, err in outs]
    assert f"UI at {server.url}" in starting[0] and "waiting up to 120 s" in starting[0]
    assert not any("temporary" in err for _, err in outs)
    assert server.running()
    pid = server.state()["pid"]

    rerun = cli(env, "run", str(photo), "--grid", "2x1", "--phases", "text")
    assert rerun.returncode == 0, rerun.stderr
    assert "starting" not in rerun.stderr and "temporary" not in rerun.stderr
    summary = rerun.stderr.strip().splitlines()[-1]
    found = re.search(r"(\d+) calls \((\d+) from the memo\); review ([\d.]+) s, whole command ([\d.]+) s", summary)
    assert found, summary
    calls, cached, review_s, whole_s = found.groups()
    assert calls == cached and float(whole_s) > float(review_s)
    assert server.state()["pid"] == pid  # the same server

    history = cli(env, "history", "--json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert len(rows) == 3 and {r["state"] for r in rows} == {"Completed"}
    assert {r["image"] for r in rows} == {"photo.png"}
    show = cli(env, "show", rows[0]["run"])
    assert show.returncode == 0 and "report:" in show.stdout, show.stderr

    status = cli(env, "server", "status")
    assert status.returncode == 0 and f"running: {server.url}" in status.stdout and str(pid) in status.stdout

    # Prefect's own CLI, in the same environment (no PREFECT_API_URL), reads this server through the profile 'mosaic'
    assert "active Prefect profile 'mosaic'" in starting[0]
    assert cli(env, "server", "env").stdout.strip() == f"export PREFECT_API_URL={server.api_url}"
    assert (server.home / "server.pid").read_text().strip() == str(pid)  # Prefect's own: `prefect server stop` sees it
    prefect = [os.path.join(os.path.dirname(sys.executable), "prefect")]
    listed = {}
    for listing in ("flow-run", "deployment", "artifact"):
        done = subprocess.run(prefect + [listing, "ls"], capture_output=True, text=True, env={**env, "COLUMNS": "300"},
                              timeout=120)
        assert done.returncode == 0 and "ERROR" not in done.stdout + done.stderr, (listing, done.stdout, done.stderr)
        assert "temporary server" not in done.stdout + done.stderr
        listed[listing] = done.stdout
    assert all(row["run"] in listed["flow-run"] for row in rows), listed["flow-run"]
    assert "review-summary" in listed["artifact"] or "review" in listed["artifact"], listed["artifact"]
    stop = cli(env, "server", "stop")
    assert stop.returncode == 0 and "stopped" in stop.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") and not server.healthy()
    assert cli(env, "server", "status").returncode == 1
    assert not (server.home / "server.pid").exists()


def test_a_port_in_use_falls_back_to_a_temporary_server_with_a_note(local, tmp_path):
    env, server = local
    photo = make_photo(tmp_path / "photo.png", size=(600, 400))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        done = cli(env, "run", str(photo), "--grid", "1x1", "--phases", "text")
    assert done.returncode == 0, done.stderr
    assert f"port {server.port} is in use" in done.stderr and "this command uses a temporary one" in done.stderr
    assert "Traceback" not in done.stderr
    assert not server.running()


def test_a_server_that_does_not_answer_in_time_is_one_line_and_is_not_left_behind(local, tmp_path):
    env, server = local
    photo = make_photo(tmp_path / "photo.png", size=(600, 400))
    done = cli({**env, "MOSAIC_SERVER_WAIT_S": "0.5"}, "run", str(photo), "--grid", "1x1", "--phases", "text")
    assert done.returncode == 3 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mosaic: Mosaic's local Prefect server did not answer within 0.5 s"), last
    assert server.state() is None


def test_a_configured_server_is_found_in_the_prefect_profile_too(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert configured_api_url() is None
    (tmp_path / "profiles.toml").write_text('active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://box:4200/api"\n'
                                            '[profiles.other]\n')
    assert configured_api_url() == "http://box:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert configured_api_url() is None
    monkeypatch.setenv("PREFECT_API_URL", "http://here:4200/api")
    assert configured_api_url() == "http://here:4200/api"


def test_ctrl_c_is_one_true_line_with_and_without_the_memo(local, tmp_path):
    """No claim that calls are kept when --no-cache kept none, and no Prefect noise ("Error logging to API") after."""
    import signal

    from mosaic.offline.server import ModelServer
    from testkit.fake_vlm import fake_vlm

    env, server = local
    photo = make_photo(tmp_path / "photo.png")
    assert cli(env, "server", "start").returncode == 0
    with ModelServer(fake_vlm, latency=0.5) as backend:
        for extra, said in [([], "interrupted; finished calls are kept in the memo, run the same command to go on"),
                            (["--no-cache"], "interrupted; nothing was kept (--no-cache): the same command starts over")]:
            asked = len(backend.chat_requests())
            run = subprocess.Popen(
                [sys.executable, "-m", "mosaic_cli", "run", str(photo), "--model", "openai/fake", "--api-base",
                 backend.openai_base, "--grid", "3x3", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(backend.chat_requests()) < asked + 4:
                time.sleep(0.1)
            run.send_signal(signal.SIGINT)
            _, err = run.communicate(timeout=60)
            assert run.returncode == 130, err
            lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
            assert lines[-1] == f"mosaic: {said}", lines
            assert "Traceback" not in err and "Error logging" not in err and "error" not in err.lower()


def test_a_new_port_replaces_the_old_server_instead_of_leaving_two_on_one_database(local):
    env, first = local
    said: list[str] = []
    first.ensure(120, said.append)
    old_pid = first.state()["pid"]
    moved = LocalServer(free_port(), first.home)
    try:
        moved.ensure(120, said.append)
        assert moved.running() and any("stopping Mosaic's local Prefect server on port" in s for s in said)
        # the profile Prefect's CLI reads is the server's own PREFECT_HOME's; this process's is left alone
        assert moved.api_url in (first.home / "profiles.toml").read_text() and configured_api_url() is None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(old_pid):  # this test's own child: a zombie counts as gone
            time.sleep(0.2)
        assert _alive(old_pid) is False and not first.healthy()
    finally:
        moved.stop()


def test_the_ui_of_a_local_server_on_another_port_asks_its_own_api(local):
    """The UI reads its API's address from /ui-settings: on a port other than 4200 it must be this server's."""
    import urllib.request

    env, server = local
    server.ensure(120, lambda line: None)
    with urllib.request.urlopen(f"{server.url}/ui-settings", timeout=30) as response:
        assert json.loads(response.read())["api_url"] == server.api_url
