"""Bad input: one line on stderr, a non-zero exit, no traceback — checked on the real command."""

import os
import subprocess
import sys

import pytest

from conftest import free_port, make_photo

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


def mosaic(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosaic_cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def images(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    make_photo(tmp_path / "ok.png", size=(900, 600))
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:2000])
    make_photo(tmp_path / "tiny.png", size=(40, 40))
    return tmp_path


@pytest.mark.parametrize("args,expected", [
    (["run", "{d}/missing.jpg"], "no such file"),
    (["run", "{d}/folder"], "is a folder"),
    (["run", "{d}/empty.jpg"], "is empty"),
    (["run", "{d}/notes.jpg"], "not an image"),
    (["run", "{d}/cut.png"], "truncated or damaged"),
    (["run", "{d}/tiny.png"], "too small: Mosaic needs at least 64 px on each side"),
    (["run", "{d}/ok.png", "--density", "huge"], "invalid density"),
    (["run", "{d}/ok.png", "--grid", "3by3"], "invalid grid"),
    (["run", "{d}/ok.png", "--phases", "text,colour"], "invalid phases"),
    (["run", "{d}/ok.png", "--witnesses", "detector,oracle"], "unknown witness oracle"),
    (["run", "{d}/ok.png", "--model", "offline:abc"], "invalid offline budget"),
    (["run", "{d}/ok.png", "--concurrency", "0"], "invalid setting concurrency"),
    (["run", "{d}/ok.png", "--input-px", "5"], "invalid setting input_px"),
    (["run", "{d}/ok.png", "--model", "qwen2.5vl"], "names no provider: use ollama_chat/qwen2.5vl"),
    (["run", "{d}/ok.png", "--out", "{d}/ok.png"], "is a file, not a folder"),
    (["run", "{d}/ok.png", "--model", "openai/x", "--api-base", "http://127.0.0.1:{port}/v1"], "cannot reach the backend at http://127.0.0.1:"),
    (["run", "{d}/ok.png", "--model", "ollama_chat/x", "--api-base", "http://127.0.0.1:{port}"], "connection refused"),
])
def test_bad_input_gets_one_line_and_nonzero_exit(images, args, expected):
    port = free_port()
    result = mosaic(*[a.format(d=images, port=port) for a in args])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mosaic: ") and expected in lines[0], result.stderr
    assert result.stdout == ""


def test_a_plan_of_more_calls_than_the_limit_is_refused_before_any_call_unless_confirmed(images):
    refused = mosaic("run", str(images / "ok.png"), "--grid", "4x4", env={"MOSAIC_MAX_CALLS": "50"})
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the 4×4 grid plans 114 calls, more than 50: pass --yes" in refused.stderr
    assert "calls planned" not in refused.stderr  # refused before the run started
    done = mosaic("run", str(images / "ok.png"), "--grid", "4x4", "--phases", "text", "--yes", "--no-second-look",
                  env={"MOSAIC_MAX_CALLS": "20"})
    assert done.returncode == 0, done.stderr


def test_decompression_bomb_limit_can_be_raised(images):
    big = make_photo(images / "big.png", size=(3000, 2000))
    result = mosaic("run", str(big), "--grid", "1x1", env={"MOSAIC_MAX_IMAGE_MP": "2"})
    assert result.returncode == 2 and "MOSAIC_MAX_IMAGE_MP=7" in result.stderr


def test_help_shows_examples():
    for args in (["--help"], ["run", "--help"]):
        result = mosaic(*args)
        assert result.returncode == 0 and "examples:" in result.stdout and "mosaic run photo.jpg" in result.stdout


def test_a_temporary_server_that_does_not_start_in_time_is_one_line(images):
    """The wait is stated before it starts; a real time-out is one line, exit 3, no traceback (the default wait is
    120 s: this machine's start takes 6-17 s, Prefect's own default gives up after 20)."""
    done = mosaic("run", str(images / "ok.png"), "--grid", "1x1", "--phases", "text",
                  env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"})
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "mosaic: starting Prefect's temporary server (waiting up to 1 s;" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mosaic: Prefect's temporary server did not start within 1 s"), last
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in last


def test_the_temporary_server_is_waited_for_long_enough():
    from mosaic_cli.common import TEMPORARY_SERVER_WAIT_S, quiet_prefect as _quiet_prefect

    saved = os.environ.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    try:
        _quiet_prefect(True)
        assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == TEMPORARY_SERVER_WAIT_S == "120"
    finally:
        os.environ.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
        if saved is not None:
            os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = saved


def test_ctrl_c_ends_the_command_even_when_something_holds_the_exit(tmp_path):
    """A command whose work swallows KeyboardInterrupt (a thread pool joining, an engine catching it) still leaves with
    exit 130 and the one line, within the grace period; without the watchdog this process would sleep for 120 s."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "stuck.py"
    script.write_text(
        "import time\n"
        "import mosaic_cli.main as m\n"
        "def stuck(args):\n"
        "    print('started', flush=True)\n"
        "    try:\n"
        "        time.sleep(120)\n"
        "    except KeyboardInterrupt:\n"
        "        time.sleep(120)\n"
        "m.cmd_cache = stuck\n"
        "m.INTERRUPT_GRACE_S = 1\n"
        "raise SystemExit(m.main(['cache', 'stats']))\n")
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline().strip() == "started"
    sent = time.monotonic()
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=30)
    assert run.returncode == 130 and time.monotonic() - sent < 10, err
    assert err.strip().splitlines()[-1] == "mosaic: interrupted"
