"""The environment a test session starts from: Prefect and LiteLLM kept to a temporary folder, no MOSAIC_ setting
of the developer's own, and per test a memo and report folder of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


_session_dir: Path | None = None


def isolate_session() -> Path:
    """Call before Prefect or LiteLLM is imported anywhere in the session (again: a no-op). Returns its folder."""
    global _session_dir
    if _session_dir:
        return _session_dir
    session_dir = _session_dir = Path(tempfile.mkdtemp(prefix="mosaic-tests-"))
    os.environ["PREFECT_HOME"] = str(session_dir / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(session_dir / "prefect-storage")
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.pop("PREFECT_API_URL", None)
    for key in [k for k in os.environ if k.startswith("MOSAIC_")]:
        del os.environ[key]
    # the commands, workers and servers a test starts import the stand-ins from the checkout, as the test does
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start_from_a_migrated_prefect_database(session_dir / "prefect")
    return session_dir


def start_from_a_migrated_prefect_database(prefect_home: Path) -> None:
    """Prefect's temporary server spends 10 s or more migrating a new database before its first run. An empty,
    migrated one is kept per Prefect version in the user's cache folder and copied into the session's PREFECT_HOME;
    where there is none yet, one is made in the background for the next session."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mosaic-tests"
    template = cache / f"prefect-{version('prefect')}.db"
    prefect_home.mkdir(parents=True, exist_ok=True)
    if template.is_file():
        shutil.copyfile(template, prefect_home / "prefect.db")
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        making = Path(tempfile.mkdtemp(prefix=".making-", dir=cache))  # on the template's file system, to be renamed
    except OSError:
        return  # no cache folder: every session migrates its own
    database = making / "prefect.db"
    migrate = (f"import os, shutil, subprocess, sys; done = subprocess.run(sys.argv[1:]).returncode == 0; "
               f"done and os.replace({str(database)!r}, {str(template)!r}); shutil.rmtree({str(making)!r})")
    prefect = Path(sys.executable).with_name("prefect")
    env = os.environ | {"PREFECT_HOME": str(making),
                        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}"}
    subprocess.Popen([sys.executable, "-c", migrate, str(prefect), "server", "database", "upgrade", "-y"], env=env,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def isolate_test(tmp_path: Path, monkeypatch) -> None:
    """One test's settings (pytest's tmp_path and monkeypatch)."""
    monkeypatch.setenv("MOSAIC_CACHE_DIR", str(tmp_path / "memo"))
    monkeypatch.setenv("MOSAIC_OUT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MOSAIC_RETRIES", "1")
    monkeypatch.setenv("MOSAIC_RETRY_DELAY_S", "0")
    # Tests of the first wave count its calls exactly; the second look's own tests turn it on.
    monkeypatch.setenv("MOSAIC_SECOND_LOOK", "false")
    # Prefect's temporary server, once per session; tests/test_local_server.py starts Mosaic's lasting one itself.
    monkeypatch.setenv("MOSAIC_PREFECT_SERVER", "temporary")
