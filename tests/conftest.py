import io
import os
import sys
import tempfile
from pathlib import Path

import pytest

# Isolate Prefect and LiteLLM before either is imported anywhere in the session.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mosaic-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_SESSION_DIR / "prefect-storage")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.pop("PREFECT_API_URL", None)
for key in [k for k in os.environ if k.startswith("MOSAIC_")]:
    del os.environ[key]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mosaic.offline.stand_in import fake_vlm  # noqa: E402  (after the environment is set)


@pytest.fixture(autouse=True)
def _mosaic_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE_DIR", str(tmp_path / "memo"))
    monkeypatch.setenv("MOSAIC_OUT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MOSAIC_RETRIES", "1")
    monkeypatch.setenv("MOSAIC_RETRY_DELAY_S", "0")
    # Tests of the first wave count its calls exactly; the second look's own tests turn it on.
    monkeypatch.setenv("MOSAIC_SECOND_LOOK", "false")
    # Prefect's temporary server, once per session; tests/test_local_server.py starts Mosaic's lasting one itself.
    monkeypatch.setenv("MOSAIC_PREFECT_SERVER", "temporary")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_photo(path: Path, size=(1200, 800), mode="RGB", fmt=None, **save) -> Path:
    """A photo with texture everywhere, so no tile or seam is blank (blank views are not asked anything)."""
    import numpy as np
    from PIL import Image, ImageDraw

    noise = np.random.default_rng(size[0] * 7 + size[1]).integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(noise + np.array([60, 90, 120], dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for i in range(0, size[0], 97):
        draw.rectangle((i, size[1] // 3, i + 60, size[1] // 3 + 80), fill=(200, 180 - i % 50, 40))
    img = img.convert(mode) if mode != "RGB" else img
    img.save(path, format=fmt, **save)
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    return make_photo(tmp_path / "photo.png")


@pytest.fixture
def vlm_server():
    from mosaic.offline.server import ModelServer

    with ModelServer(fake_vlm, models=["fake-vl"]) as server:
        yield server


def run_cli(*argv: str) -> tuple[int, str]:
    """Run `mosaic` in this process (the Prefect ephemeral server is started once per session)."""
    from mosaic_cli.main import main

    out = io.StringIO()
    saved = sys.stdout
    sys.stdout = out
    try:
        code = main(list(argv))
    finally:
        sys.stdout = saved
    return code, out.getvalue()
