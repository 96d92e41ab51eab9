"""report.html and comparison.html, rendered in a real headless browser (Debian's chromium) with no network."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from browser import OFFLINE_FLAGS, chromium

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


def escape(text: str) -> str:
    """Text as the browser's DOM dump writes it."""
    import html

    return html.escape(text, quote=False)

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A real run: a drawn street scene, read by a stand-in VLM over HTTP that gives boxes for some readings and
    places in words for others, with the second look on."""
    from testkit.scenes import make_scene
    from testkit.stand_ins import StandIn
    from mosaic.driver import review
    from mosaic.offline.server import ModelServer

    folder = tmp_path_factory.mktemp("html")
    scene = make_scene(5, 1800, 1200, n_signs=7, min_height_frac=0.02, max_height_frac=0.035)
    scene.image.save(folder / "street.png")
    stand_in = StandIn.from_spec("reader=rapidocr,budget=896,invent=0.3,style=mixed,positions=box")
    with ModelServer(stand_in.answer_http, listed=["v"]) as server:
        os.environ["MOSAIC_SECOND_LOOK"] = "true"
        try:
            report = review(str(folder / "street.png"), "openai/v", server.openai_base, grid="3x2",
                            phases=["text", "characteristics"], out_dir=str(folder / "reports"))
        finally:
            os.environ["MOSAIC_SECOND_LOOK"] = "false"
    return Path(report.report_dir)


def dom_of(path: Path, fragment: str = "") -> str:
    return chromium(path.resolve().as_uri() + fragment, *OFFLINE_FLAGS, "--dump-dom")


def test_report_html_holds_every_reading_on_the_picture_offline(reviewed):
    report = json.loads((reviewed / "report.json").read_text())
    page = (reviewed / "report.html").read_text()
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    dom = dom_of(reviewed / "report.html")
    assert re.search(r'data-overview-px="(\d+)"', dom) and int(re.search(r'data-overview-px="(\d+)"', dom)[1]) >= 800
    readings = report["readings"]
    assert readings
    for n, r in enumerate(readings, 1):
        row = re.search(rf'<tr class="(\w+)" data-reading="{n}"[^>]*>.*?</tr>', dom, re.S)
        assert row and f'<td class="text">{escape(r["text"])}</td>' in row[0], r["text"]
        assert row[1] == r["status"]  # confirmed, unconfirmed or probably_absent (issue 26: by witness)
        mark = re.search(rf'<a class="(box|pin) [a-z_]+" href="#reading-{n}"[^>]*>', dom)
        assert mark, f"reading {n} {r['text']!r} has no mark on the picture"
        assert (mark[1] == "box") == bool(r["box"])
    assert [int(m) for m in re.findall(r'<tr class="\w+" data-reading="(\d+)"', dom)] == list(
        range(1, len(readings) + 1))
    confirmed = [r["confirmed"] for r in readings]
    assert confirmed == sorted(confirmed, reverse=True)  # confirmed first
    for tile in report["tiles"]:
        assert f'href="#tile-{tile["tile"]}"' in dom
    assert escape(report["review"].splitlines()[0]) in dom
    assert f"<b>{report['calls']['total']}</b> calls" in dom


def test_a_reading_shows_its_crop_and_views_and_a_tile_its_report(reviewed, tmp_path):
    report = json.loads((reviewed / "report.json").read_text())
    first = report["readings"][0]
    dom = dom_of(reviewed / "report.html", "#reading-1")
    panel = re.search(r'<section class="panel shown" id="reading-1"[^>]*>.*?</section>', dom, re.S)
    assert panel, "the reading's panel is not shown"
    assert 'src="data:image/jpeg;base64,' in panel[0] and escape(", ".join(first["views"])) in panel[0]
    tile = report["tiles"][0]
    dom = dom_of(reviewed / "report.html", f"?show=tile-{tile['tile']}")
    assert re.search(rf'<section class="panel shown" id="tile-{tile["tile"]}">', dom)
    screenshot(reviewed / "report.html", "?show=reading-1", tmp_path / "report-html.png")


def test_a_crop_is_cut_from_the_smallest_view_holding_the_reading():
    from mosaic.html_report import _smallest_view_holding
    from mosaic.schema import View

    views = [View(id="r1c1", kind="tile", cells=[[0, 0]], box=(0, 0, 100, 100), image_sha256="a"),
             View(id="r1c2", kind="tile", cells=[[1, 0]], box=(100, 0, 200, 100), image_sha256="b"),
             View(id="d1", kind="detail", cells=[[0, 0]], box=(10, 10, 40, 40), image_sha256="c"),
             View(id="r1c1|r1c2", kind="seam", cells=[[0, 0], [1, 0]], box=(50, 0, 150, 100), image_sha256="d")]
    assert _smallest_view_holding(views, (12, 12, 30, 20)).id == "d1"
    assert _smallest_view_holding(views, (60, 12, 120, 20)).id == "r1c1|r1c2"
    assert _smallest_view_holding(views, (40, 0, 170, 10)).id == "r1c2"  # held by none: the tile of its centre


def test_comparison_html_puts_the_models_side_by_side_disagreements_first(reviewed, tmp_path):
    from testkit.stand_ins import StandIn
    from mosaic.compare import compare_image
    from mosaic.offline.server import ModelServer

    image = reviewed.parent.parent / "street.png"
    reads_well = StandIn.from_spec("reader=rapidocr,budget=896")
    misreads = StandIn.from_spec("reader=tesseract,budget=896,misread=0.3,invent=0.3,style=fenced")
    with ModelServer(reads_well.answer_http, listed=["a"]) as a, ModelServer(misreads.answer_http, listed=["b"]) as b:
        result = compare_image(str(image), [("openai/reader-a", a.openai_base), ("ollama_chat/reader-b", b.url)],
                               grid="3x2", phases=["text"], out_dir=str(tmp_path))
    page = Path(result.comparison_dir) / "comparison.html"
    assert not EXTERNAL.search(page.read_text())
    dom = dom_of(page)
    assert "<th>openai/reader-a</th>" in dom and "<th>ollama_chat/reader-b</th>" in dom
    marks = re.findall(r'<tr class="\w+" data-agreement="(\w+)">', dom)
    assert marks == [r.agreement for r in result.readings] and marks
    assert marks == sorted(marks, key=["different", "near", "single", "exact"].index)
    hard = sum(r.hard for r in result.readings)
    assert dom.count('alt="hard spot ') == hard
    for r in result.readings:
        for text in filter(None, r.by_model.values()):
            assert f"<td>{escape(text)}</td>" in dom
    screenshot(page, "", tmp_path / "comparison-html.png")


def screenshot(page: Path, query: str, shot: Path) -> None:
    chromium(page.resolve().as_uri() + query, *OFFLINE_FLAGS, f"--screenshot={shot}")
    assert shot.stat().st_size > 50_000, f"{page.name} looks blank"
    if os.environ.get("UPDATE_SCREENSHOTS"):
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with Image.open(shot) as picture:  # 256 colours: a third of the bytes, the same to the eye
            picture.convert("RGB").quantize(256).save(SCREENSHOTS / shot.name, optimize=True)


def test_mosaic_open_finds_the_page_of_a_folder_or_a_run(reviewed, photo, capsys):
    from conftest import run_cli

    code, out = run_cli("open", str(reviewed), "--print")
    assert code == 0 and out.strip() == str((reviewed / "report.html").resolve())
    code, _ = run_cli("open", str(photo.parent), "--print")
    err = capsys.readouterr().err
    assert code == 2 and "holds no report.html" in err and len(err.strip().splitlines()) == 1
    code, out = run_cli("run", str(photo), "--grid", "2x2", "--phases", "text", "--json")
    assert code == 0
    folder = Path(json.loads(out)["report_dir"])
    code, listed = run_cli("history", "--json", "--limit", "1")
    run_id = json.loads(listed)[0]["id"]
    code, out = run_cli("open", run_id, "--print")
    assert code == 0 and out.strip() == str((folder / "report.html").resolve())
    code, _ = run_cli("open", "no-such-run", "--print")
    assert code == 2 and "no-such-run" in capsys.readouterr().err
