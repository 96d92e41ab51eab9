"""Mosaic's local Prefect server: started once, in the background, and reused by every later command.

A temporary Prefect server costs each run ~6 s to start and ~2 s to stop (and more on a loaded machine); one that
stays up costs that once. It is a plain `prefect server start` on loopback with the user's PREFECT_HOME, so its
database is the one the temporary servers wrote: `mosaic history` shows the runs made before it too. Nothing here
imports Prefect: a command that finds the server up pays an HTTP request, not Prefect's server modules.

Prefect's own tools see it: it is recorded in Prefect's PID file (`prefect server stop` stops it, `prefect server
start --background` knows one runs), and a Prefect profile `mosaic` points Prefect's CLI at it. It is not started
with `prefect server start --background` (Prefect 3.8.8): that leaves the server writing to a pipe nobody reads once
the command returns (its log is lost) and in the terminal's session; Mosaic starts the same server in a session of
its own with its log in PREFECT_HOME/mosaic-server.log.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mosaic.errors import BackendError


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def profiles_path() -> Path:
    return Path(os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml").expanduser()


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile, read without importing Prefect."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        profiles = tomllib.loads(profiles_path().read_text())
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    return (profiles.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL") or None


MOSAIC_PROFILE = "mosaic"


def point_prefect_cli(api_url: str, path: Path | None = None) -> bool:
    """Prefect profile `mosaic` with this PREFECT_API_URL, made the active one when the active profile names no
    server: Prefect's CLI in any shell with this PREFECT_HOME then reads Mosaic's server instead of starting a
    temporary one over the same database. path: the profiles file (this process's Prefect's by default). True when
    `mosaic` is the active profile."""
    path = path or profiles_path()
    try:
        profiles = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return False  # not a file to rewrite
    entries = profiles.setdefault("profiles", {})
    entries.setdefault(MOSAIC_PROFILE, {})["PREFECT_API_URL"] = api_url
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    if not (entries.get(active) or {}).get("PREFECT_API_URL"):
        profiles["active"] = active = MOSAIC_PROFILE
    lines = [f"active = {json.dumps(profiles['active'])}"] if profiles.get("active") else []
    for name, values in entries.items():  # Prefect's profiles: tables of plain values, written as TOML
        lines += ["", f"[profiles.{json.dumps(name)}]"] + [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return active == MOSAIC_PROFILE


class NotStarted(Exception):
    """The server could not start here (its port is taken, or it exited): a temporary server can stand in."""


@dataclass
class LocalServer:
    port: int = 4210
    home: Path | None = None

    def __post_init__(self) -> None:
        self.home = Path(self.home) if self.home else prefect_home()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    @property
    def log_path(self) -> Path:
        return self.home / "mosaic-server.log"

    @property
    def _state_path(self) -> Path:
        return self.home / "mosaic-server.json"

    @property
    def _prefect_pid_path(self) -> Path:  # Prefect's own: `prefect server stop` stops the process it names
        return self.home / "server.pid"

    def env_line(self) -> str:
        return f"export PREFECT_API_URL={self.api_url}"

    def state(self) -> dict | None:
        """{pid, port, started} of the server Mosaic started, if its process is still there."""
        try:
            state = json.loads(self._state_path.read_text())
            os.kill(int(state["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state

    def healthy(self, timeout_s: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "/health", timeout=timeout_s) as response:
                return response.status == 200
        except OSError:
            return False

    def running(self) -> bool:
        """Up and ours: the process Mosaic started answers on its port."""
        state = self.state()
        return bool(state and state.get("port") == self.port and self.healthy())

    def ensure(self, wait_s: float, say=print) -> str:
        """The API address of the running server, started first when it is not up (saying so, and for how long it is
        waited for). Raises NotStarted when it cannot start here, BackendError when it did not answer in time."""
        if self.running():  # the common case, without taking the lock
            return self.api_url
        with self._lock():
            state = self.state()
            if state and state.get("port") == self.port:
                if not self._wait(wait_s, pid=int(state["pid"])):  # another command is starting it
                    raise self._too_slow(wait_s)
                return self.api_url
            if state:  # ours on another port (MOSAIC_SERVER_PORT changed): one server per database, not two
                say(f"mosaic: stopping Mosaic's local Prefect server on port {state.get('port')} (MOSAIC_SERVER_PORT "
                    f"is now {self.port})")
                self.stop()
            if not _port_free(self.port):
                raise NotStarted(f"port {self.port} is in use (MOSAIC_SERVER_PORT chooses another)")
            say(f"mosaic: starting Mosaic's local Prefect server, UI at {self.url} (once: later runs reuse it; "
                f"`mosaic server stop` stops it; waiting up to {wait_s:g} s)")
            pid = self._spawn()
            if not self._wait(wait_s, pid):
                self.stop()
                raise self._too_slow(wait_s)
            # the profiles of the server's own PREFECT_HOME, not of this process's when they differ
            profiles = profiles_path() if self.home == prefect_home() else self.home / "profiles.toml"
            if point_prefect_cli(self.api_url, profiles):
                say(f"mosaic: Prefect's CLI reads it too (active Prefect profile '{MOSAIC_PROFILE}'); in another "
                    f"PREFECT_HOME: {self.env_line()}")
            else:
                say(f"mosaic: for Prefect's CLI to read it: {self.env_line()}")
            return self.api_url

    def stop(self, wait_s: float = 15.0) -> bool:
        """Stop the server Mosaic started; False when none was running."""
        state = self.state()
        self._state_path.unlink(missing_ok=True)
        if state and self._prefect_pid_path.exists() and self._prefect_pid_path.read_text().strip() == str(state["pid"]):
            self._prefect_pid_path.unlink()
        if not state:
            return False
        self._kill(int(state["pid"]), wait_s)
        return True

    def _spawn(self) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_UI_API_URL=self.api_url)  # else the UI of a server on another port asks port 4200
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # not stopped by Ctrl-C in, or the closing of, the terminal that started it
            )
        self._state_path.write_text(json.dumps({"pid": process.pid, "port": self.port, "started": time.time()}))
        self._prefect_pid_path.write_text(str(process.pid))
        self._process = process  # reaped in _wait when it exits early
        return process.pid

    def _wait(self, wait_s: float, pid: int) -> bool:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.healthy(timeout_s=1.0):
                return True
            process = getattr(self, "_process", None)
            if (process is not None and process.poll() is not None) or _alive(pid) is False:
                self._state_path.unlink(missing_ok=True)
                raise NotStarted(f"it exited at start ({self._last_log_line()})")
            time.sleep(0.2)
        return False

    def _kill(self, pid: int, wait_s: float = 15.0) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _alive(pid):
            process = getattr(self, "_process", None)
            if process is not None:
                process.poll()
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def _too_slow(self, wait_s: float) -> BackendError:
        return BackendError(f"Mosaic's local Prefect server did not answer within {wait_s:g} s (log: {self.log_path}): "
                            "raise MOSAIC_SERVER_WAIT_S, or set PREFECT_API_URL to a running server", retryable=False)

    def _last_log_line(self) -> str:
        try:
            lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return f"no log at {self.log_path}"
        return lines[-1][:200] if lines else f"nothing in {self.log_path}"

    @contextmanager
    def _lock(self):
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "mosaic-server.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed server's port is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool | None:
    """False once the process is gone (a zombie of ours counts as gone); None when that cannot be told."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True
