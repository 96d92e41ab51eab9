"""The benchmark's own tests run in the environment Mosaic's tests do."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testkit.isolation import isolate_session, isolate_test  # noqa: E402

isolate_session()  # before Prefect or LiteLLM is imported anywhere in the session


@pytest.fixture(autouse=True)
def _mosaic_env(tmp_path, monkeypatch):
    isolate_test(tmp_path, monkeypatch)
