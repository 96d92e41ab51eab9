"""The environment a test session starts from: Prefect and LiteLLM kept to a temporary folder, no MOSAIC_ setting
of the developer's own, and per test a memo and report folder of its own."""

from __future__ import annotations

import os
import tempfile
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
    return session_dir


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
