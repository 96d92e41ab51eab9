import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.isolation import isolate_session, isolate_test  # noqa: E402

isolate_session()  # before Prefect or LiteLLM is imported anywhere in the session

from testkit.fake_vlm import fake_vlm  # noqa: E402
from testkit.ocr_memo import remember_ocr_answers  # noqa: E402
from testkit.scenes import make_photo  # noqa: E402,F401 - the tests import it from here

remember_ocr_answers()


@pytest.fixture(autouse=True)
def _mosaic_env(tmp_path, monkeypatch):
    isolate_test(tmp_path, monkeypatch)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
