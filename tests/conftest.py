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

remember_ocr_answers()


@pytest.fixture(autouse=True)
def _mosaic_env(tmp_path, monkeypatch):
    isolate_test(tmp_path, monkeypatch)


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
