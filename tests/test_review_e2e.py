"""The whole `mosaic run` through LiteLLM to real HTTP servers on loopback, in both API styles."""

import json
import os
import re
from pathlib import Path

import pytest

from mosaic.offline.server import Fault
from mosaic.schema import count_calls

from conftest import make_photo, run_cli

PHASES = ["text", "subjects", "characteristics"]


def review(image, server, style="openai", *extra):
    model, base = ("openai/fake-vl", server.openai_base) if style == "openai" else ("ollama_chat/fake-vl", server.url)
    return run_cli("run", str(image), "--model", model, "--api-base", base, "--json", *extra)


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_review_through_both_api_styles(photo, vlm_server, style):
    code, out = review(photo, vlm_server, style, "--grid", "3x2")
    assert code == 0
    report = json.loads(out)
    planned = count_calls(3, 2, PHASES)
    assert report["calls"] == {"planned": planned, "total": planned, "made": planned, "cached": 0, "failed": 0,
                               "second_look": 0, "retried": 0, "shortened": 0}
    assert len(vlm_server.chat_requests()) == planned
    assert report["grid"] == "3x2" and len(report["tiles"]) == 6
    assert report["tiles"][0]["position"] == {"row": 1, "col": 1} and report["tiles"][0]["box"] == [0, 0, 400, 400]
    assert report["orientation"].startswith("A test scene")
    # every reading from a tile or seam reaches the review, even those the model's review left out
    seen = {r for req in vlm_server.chat_requests() for r in re.findall(r"SIGN-[0-9A-F]{6}", req.text)}
    readings = {r["text"] for r in report["readings"]}
    assert readings and readings <= seen
    assert all(r in report["review"] for r in readings)
    # a plain-text answer where JSON was asked is kept, not a crash
    assert report["tiles"][0]["characteristics"] == "bright"
    assert all(req.n_images == (0 if "tile-synthesis" in req.text else 1) for req in vlm_server.chat_requests())


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_rerun_of_a_finished_run_makes_no_call(photo, vlm_server):
    code, out = review(photo, vlm_server, "openai", "--density", "quick")
    assert code == 0
    made = len(vlm_server.chat_requests())
    code, out = review(photo, vlm_server, "openai", "--density", "quick")
    assert code == 0
    assert len(vlm_server.chat_requests()) == made
    calls = json.loads(out)["calls"]
    assert calls["made"] == 0 and calls["cached"] == calls["planned"] == made


def test_failed_tile_keeps_other_work_and_rerun_makes_only_missing_calls(photo, vlm_server, capsys):
    vlm_server.add_fault(Fault(status=500, times=-1, match="This crop is tile r2c2 "))
    code, out = review(photo, vlm_server, "openai", "--grid", "3x2")
    assert code == 1 and out == ""
    error = capsys.readouterr().err
    assert "r2c2" in error and "1 of 6 tiles failed" in error and "Traceback" not in error
    first = vlm_server.chat_requests()
    planned = count_calls(3, 2, PHASES)
    # the 3 phases of r2c2 failed; its synthesis and the final review never ran
    assert len(first) == planned - 3 - 1 - 1
    partial = list(Path(os.environ["MOSAIC_OUT_DIR"]).glob("*/report.json"))
    assert len(partial) == 1 and json.loads(partial[0].read_text())["failed_tiles"] == ["r2c2"]

    vlm_server.clear_faults()
    code, out = review(photo, vlm_server, "openai", "--grid", "3x2")
    assert code == 0
    second = vlm_server.chat_requests()[len(first):]
    assert len(second) == 5
    assert sum("This crop is tile r2c2 " in r.text for r in second) == 3
    assert sum("tile-synthesis" in r.text for r in second) == 1 and "final-review" in second[-1].text
    assert json.loads(out)["calls"]["cached"] == planned - 5


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_a_failed_phase_keeps_the_other_phases_of_its_view(photo, vlm_server, capsys):
    # one phase of one tile fails for good; the view's other phases are still asked (they run in the same task)
    vlm_server.add_fault(Fault(status=500, times=-1, match="tile r2c2 of a 3×2 grid, pixels [400, 400, 800, 800] "
                                                            "of a 1200×800 image.\nList the objects"))
    code, _ = review(photo, vlm_server, "openai", "--grid", "3x2")
    assert code == 1 and "r2c2" in capsys.readouterr().err
    first = vlm_server.chat_requests()
    planned = count_calls(3, 2, PHASES)
    assert len(first) == planned - 1 - 1 - 1  # the subjects call, r2c2's synthesis and the final review
    assert sum("This crop is tile r2c2 " in r.text for r in first) == 2
    report = json.loads(next(Path(os.environ["MOSAIC_OUT_DIR"]).glob("*/report.json")).read_text())
    assert report["calls"]["failed"] == 1 and report["calls"]["made"] == planned - 3

    vlm_server.clear_faults()
    code, out = review(photo, vlm_server, "openai", "--grid", "3x2")
    second = vlm_server.chat_requests()[len(first):]
    assert code == 0 and len(second) == 3 and "List the objects" in second[0].text
    assert json.loads(out)["calls"]["made"] == 3


@pytest.mark.slow
def test_no_cache_skips_the_memo(photo, vlm_server):
    review(photo, vlm_server, "openai", "--density", "quick")
    made = len(vlm_server.chat_requests())
    code, out = review(photo, vlm_server, "openai", "--density", "quick", "--no-cache")
    assert code == 0 and len(vlm_server.chat_requests()) == 2 * made


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_without_the_memo_a_retried_view_does_not_ask_again_what_was_answered(photo, vlm_server):
    # r1c1's subjects call fails once; its task is retried, its other two phases were answered on the first try
    vlm_server.add_fault(Fault(status=500, times=1, match="tile r1c1 of a 2×2 grid, pixels [0, 0, 600, 400] "
                                                           "of a 1200×800 image.\nList the objects"))
    code, out = review(photo, vlm_server, "openai", "--grid", "2x2", "--no-cache")
    planned = count_calls(2, 2, PHASES)
    assert code == 0 and json.loads(out)["calls"] == {"planned": planned, "total": planned, "made": planned,
                                                        "cached": 0, "failed": 0, "second_look": 0, "retried": 1, "shortened": 0}
    assert len(vlm_server.chat_requests()) == planned
    assert len(vlm_server.chat_requests(answered_only=False)) == planned + 1


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_report_folder_has_json_markdown_and_overview(photo, vlm_server):
    from PIL import Image

    code, out = review(photo, vlm_server, "openai", "--grid", "2x2")
    folder = Path(json.loads(out)["report_dir"])
    assert json.loads((folder / "report.json").read_text())["grid"] == "2x2"
    markdown = (folder / "report.md").read_text()
    assert "## Review" in markdown and "### r2c2" in markdown
    overview = Image.open(folder / "overview.jpg")
    assert max(overview.size) >= 800
    # grid lines are drawn in translucent yellow along the tile borders: the line's column is tinted yellow (red up,
    # blue down) against a column beside it, and the photo still shows through it (it is not one flat colour)
    x_mid = overview.width // 2

    def column(x):
        return [overview.getpixel((x, y)) for y in range(overview.height)]

    def yellowness(x):
        return sum(p[0] - p[2] for p in column(x)) / overview.height

    line = max(range(x_mid - 1, x_mid + 2), key=yellowness)
    assert yellowness(line) > yellowness(x_mid - 12) + 60
    assert len({p[2] // 8 for p in column(line)}) > 5


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_transient_faults_are_retried_by_the_task(photo, vlm_server):
    vlm_server.add_fault(Fault(status=503, times=2, match="This crop is tile r1c1 "))
    vlm_server.add_fault(Fault(status=0, times=1, match="Mosaic task: tile-synthesis"))
    code, out = review(photo, vlm_server, "ollama", "--grid", "2x2")
    assert code == 0
    planned = count_calls(2, 2, PHASES)
    assert json.loads(out)["calls"]["made"] == planned
    assert len(vlm_server.chat_requests()) == planned
    assert len(vlm_server.chat_requests(answered_only=False)) == planned + 3


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_blank_views_can_be_skipped(tmp_path, vlm_server, monkeypatch):
    from PIL import Image

    img = Image.open(make_photo(tmp_path / "half.png"))
    img.paste((200, 200, 200), (0, 400, 1200, 800))  # the bottom row is a bare wall
    img.save(tmp_path / "half.png")
    monkeypatch.setenv("MOSAIC_SKIP_BLANK", "true")
    code, out = review(tmp_path / "half.png", vlm_server, "openai", "--grid", "3x2")
    assert code == 0
    calls = json.loads(out)["calls"]
    # the bottom tiles (3 × 3 phases) are not asked; the seams across the middle line, and those between the
    # bottom tiles (they reach a sixth of a tile up, past the corners), still see the textured half, so the bottom
    # tiles keep their syntheses
    assert calls["planned"] == calls["made"] == len(vlm_server.chat_requests()) == count_calls(3, 2, PHASES) - 9


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_density_auto_uses_the_stated_encoder_size_of_an_unknown_model(photo, vlm_server, monkeypatch):
    # openai/fake-vl names no size and is not in the table: auto falls back to light (4×2 on this 3:2 photo)
    code, out = review(photo, vlm_server, "openai", "--density", "auto", "--phases", "inspect")
    assert code == 0 and (json.loads(out)["density"], json.loads(out)["grid"]) == ("auto:light", "4x2")
    # an encoder that takes 1200 px sees a 2×2 tile whole: finer tiles would add calls and no detail
    code, out = review(photo, vlm_server, "openai", "--density", "auto", "--phases", "inspect", "--input-px", "1200")
    assert code == 0 and (json.loads(out)["density"], json.loads(out)["grid"]) == ("auto:quick", "2x2")
    monkeypatch.setenv("MOSAIC_INPUT_PX", "1200")
    code, out = review(photo, vlm_server, "openai", "--density", "auto", "--phases", "inspect")
    assert code == 0 and json.loads(out)["grid"] == "2x2"


@pytest.mark.slow  # an end-to-end run of ~10 s: CI runs it, the fast lane keeps three
def test_density_auto_asks_an_ollama_server_for_the_encoder_size(photo):
    from mosaic.offline.server import ModelServer
    from testkit.fake_vlm import fake_vlm

    with ModelServer(fake_vlm, models=["fake-vl"], encoder_px=lambda model: 1200) as server:
        # the Ollama API says the encoder takes 1200 px: a 2×2 grid already gives it every pixel
        code, out = review(photo, server, "ollama", "--density", "auto", "--phases", "inspect")
        assert code == 0 and (json.loads(out)["density"], json.loads(out)["grid"]) == ("auto:quick", "2x2")
        # the OpenAI API has no such question: the name alone, unknown here, leaves auto at light
        code, out = review(photo, server, "openai", "--density", "auto", "--phases", "inspect")
        assert code == 0 and json.loads(out)["grid"] == "4x2"



def test_an_inbox_run_creates_a_missing_inbox(tmp_path):
    from mosaic_flows.inbox import review_inbox

    state = review_inbox(inbox=str(tmp_path / "new-inbox"), outbox=str(tmp_path / "outbox"), return_state=True)
    assert state.is_completed(), state.message
    assert (tmp_path / "new-inbox").is_dir() and state.result()["reviewed"] == []
    assert state.name == "Completed"
