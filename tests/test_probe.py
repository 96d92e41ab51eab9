"""`mosaic probe` against loopback stand-ins answering in several families' dialects: it names each convention, and
a later run of the model uses the profile it saved."""

import json
import os
from pathlib import Path

import pytest

from testkit.dialects import CONVENTION, in_dialect, model_for
from mosaic.offline.reader import OfflineReader
from mosaic.offline.server import ModelServer
from mosaic.profiles import profile_for

from conftest import run_cli

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI

READER = OfflineReader(1024)


def reader(messages, model):
    return READER.answer(messages)


@pytest.mark.parametrize("dialect", ["qwen-pixels", "thousandths-yx", "fractions", "think-unopened"])
def test_probe_names_each_convention_and_saves_the_profile(dialect, capsys):
    model = "openai/" + model_for(dialect)
    with ModelServer(in_dialect(reader, dialect), slots=2, latency=1.0) as server:
        code, out = run_cli("probe", "--model", model, "--api-base", server.openai_base)
    assert code == 0, capsys.readouterr().err
    assert f"boxes:            {CONVENTION[dialect]} " in out
    assert "served at once:   2 " in out
    assert ("thinks out loud:  yes" in out) == dialect.startswith("think")
    saved = profile_for(model, cache_dir=Path(os.environ["MOSAIC_CACHE_DIR"]))
    assert saved.source == "probe" and saved.box == CONVENTION[dialect]
    assert json.loads(Path(out.split("profile saved:    ")[1].split(" (")[0]).read_text())["measured"]["read"]


def test_a_model_that_reads_nothing_cannot_serve(capsys):
    with ModelServer(lambda messages, model: "I am a text-only model.") as server:
        code, out = run_cli("probe", "--model", "openai/text-only", "--api-base", server.openai_base)
    err = capsys.readouterr().err
    assert code != 0 and out == "" and "cannot serve Mosaic: it read none of the calibration card" in err
    assert err.count("\n") <= 2 and "Traceback" not in err
