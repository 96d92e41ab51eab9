"""The second look and the evidence of every reading: where a view says a reading is, what a prose answer still
gives, grouping near-identical readings, which tiles a reading lies in, the crops of the second look, and whole runs
against stand-ins that invent readings or answer in prose, through the call seam and through real HTTP servers."""

import hashlib
import json
import random
import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from mosaic import driver
from mosaic.offline.reader import OfflineReader
from mosaic.offline.server import ModelServer
from mosaic.readings import box_in_image, group_readings, one_apart, place_box, readings_in_prose, tiles_of
from mosaic.schema import Reading, View, count_calls
from mosaic.second_look import crop_around, halves, verification_boxes, zoom_boxes
from mosaic.settings import load_settings

from conftest import run_cli

TILES = {"r1c1": (0, 0, 100, 100), "r1c2": (100, 0, 200, 100)}


# --- where a reading lies --------------------------------------------------------------------------------------

def test_a_box_in_thousandths_of_the_crop_becomes_image_pixels():
    assert box_in_image([0, 0, 500, 1000], (100, 50, 300, 150)) == (100, 50, 200, 150)
    assert box_in_image([0.5, 0, 1.0, 0.5], (0, 0, 200, 100)) == (100, 0, 200, 50)  # fractions too


@pytest.mark.parametrize("value", [None, [1, 2, 3], [500, 0, 100, 10], [0, 0, 1200, 10], ["a", 0, 1, 1], "0,0,1,1"])
def test_a_box_that_is_not_one_is_ignored(value):
    assert box_in_image(value, (0, 0, 100, 100)) is None


def test_a_place_in_words_is_a_third_of_the_crop():
    assert place_box("top left", (0, 0, 300, 300)) == (0, 0, 100, 100)
    assert place_box("bottom right corner", (0, 0, 300, 300)) == (200, 200, 300, 300)
    assert place_box("middle", (0, 0, 300, 300)) == (100, 100, 200, 200)
    assert place_box("somewhere", (0, 0, 300, 300)) is None


def test_a_reading_lies_in_the_tiles_its_box_covers():
    assert tiles_of((10, 10, 50, 30), TILES) == (["r1c1"], False)
    assert tiles_of((80, 10, 120, 30), TILES) == (["r1c1", "r1c2"], True)
    assert tiles_of((95, 10, 140, 30), TILES) == (["r1c2"], False)  # 5 of 45 px in r1c1: under the share


# --- prose answers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected", [
    ('Visible text: "CAFE MOKA" (top left), "0312-5567" (bottom right).',
     [("CAFE MOKA", "top left"), ("0312-5567", "bottom right")]),
    ("I can see the following text in this image:\n- 天肉 (middle)\n- OPEN 24H\n", [("天肉", "middle"), ("OPEN 24H", None)]),
    ("The sign reads “BAKERY” and a label says 「出口」.", [("BAKERY", None), ("出口", None)]),
    ("No text is visible in this crop.", []),
    ("- None", []),
])
def test_prose_answers_still_give_their_readings(answer, expected):
    assert readings_in_prose(answer) == expected


@pytest.mark.parametrize("answer, lists, expected", [
    ('{"readings": [{"text": "OPEN", "unclear": false, "box": [1, 2, 3, 4]}, {"text": "CAF', True, ["OPEN"]),
    ('```json\n{"readings": [{"text": "天肉", "unclear": False}]}\n```', True, ["天肉"]),
    ("- a red car\n- two people walking\n- warm evening light", False, []),  # inspect: items are not text
    ("Text: I cannot read it", True, []),
    ("- No legible text\n- The sign is blurred", True, []),
], ids=["cut-off-json", "python-json", "inspect-items", "cannot-read", "blurred"])
def test_what_is_not_a_reading_in_an_answer_is_not_taken_for_one(answer, lists, expected):
    assert [t for t, _ in readings_in_prose(answer, lists)] == expected


# --- grouping --------------------------------------------------------------------------------------------------

def reading(text, view, box=None, tiles=None, unclear=False):
    return Reading(text=text, views=[view], box=box, tiles=tiles or ([] if box else [view]), unclear=unclear)


def test_one_apart():
    assert one_apart("KONBEE", "KONBFE") and one_apart("0312", "03123") and one_apart("abc", "ab")
    assert not one_apart("KONBEE", "KONB") and not one_apart("ab", "ba")


def test_a_reading_two_views_agree_on_is_confirmed_and_a_misread_is_its_variant():
    got = group_readings([reading("KONBEE", "r1c1", (10, 10, 60, 20)), reading("KONBFE", "r1c1|r1c2", (12, 9, 61, 21)),
                          reading("KONBEE", "d1", (11, 10, 59, 20))], TILES)
    assert len(got) == 1
    assert (got[0].text, got[0].variants, got[0].confirmed, got[0].tiles) == ("KONBEE", ["KONBFE"], True, ["r1c1"])
    assert got[0].views == ["r1c1", "r1c1|r1c2", "d1"]


def test_punctuation_does_not_split_a_reading_and_two_short_signs_a_character_apart_stay_two():
    got = group_readings([reading("OPEN", "r1c1", (10, 10, 40, 20)), reading("OPEN.", "r1c1|r1c2", (10, 10, 42, 20))],
                         TILES)
    assert [(r.text, r.confirmed) for r in got] == [("OPEN", True)]
    got = group_readings([reading("出口", "r1c1", (10, 10, 30, 20)), reading("入口", "r1c1", (32, 10, 52, 20))], TILES)
    assert sorted(r.text for r in got) == ["入口", "出口"]


def test_readings_at_different_places_stay_apart_and_a_single_one_is_not_confirmed():
    got = group_readings([reading("EXIT", "r1c1", (10, 10, 30, 20)), reading("EXIT", "r1c2", (150, 60, 170, 70))],
                         TILES)
    assert [(r.text, r.tiles, r.confirmed) for r in got] == [("EXIT", ["r1c1"], False), ("EXIT", ["r1c2"], False)]


def test_parts_of_a_sign_cut_by_a_tile_line_group_under_the_whole_sign():
    got = group_readings([reading("CAFE", "r1c1", (70, 10, 99, 20)), reading("MOKA", "r1c2", (100, 10, 130, 20)),
                          reading("CAFE MOKA", "r1c1|r1c2", (70, 10, 130, 20))], TILES)
    assert len(got) == 1
    assert (got[0].text, sorted(got[0].variants), got[0].on_tile_line) == ("CAFE MOKA", ["CAFE", "MOKA"], True)
    assert got[0].tiles == ["r1c1", "r1c2"] and got[0].confirmed is False


def test_without_a_position_the_tile_views_that_read_it_name_its_tile():
    """天肉 of the sample lies in r2c3: its tile and two seam crops read it; r2c4's tile view did not."""
    tiles = {"r2c3": (0, 0, 100, 100), "r2c4": (100, 0, 200, 100), "r1c3": (0, -100, 100, 0)}
    got = group_readings([reading("天肉", "r2c3"), reading("天肉", "r1c3|r2c3", tiles=["r1c3", "r2c3"]),
                          reading("天肉", "r2c3|r2c4", tiles=["r2c3", "r2c4"])], tiles)
    assert [(r.tiles, r.on_tile_line, r.confirmed) for r in got] == [(["r2c3"], False, True)]


def test_read_only_in_a_seam_crop_it_lies_on_that_tile_line():
    got = group_readings([reading("ABC", "r1c1|r1c2", tiles=["r1c1", "r1c2"])], TILES)
    assert (got[0].tiles, got[0].on_tile_line) == (["r1c1", "r1c2"], True)


# --- the second look's crops -----------------------------------------------------------------------------------

def test_a_crop_around_a_reading_holds_it_enlarged_and_stays_inside_the_image():
    box = (10, 10, 60, 30)
    crop = crop_around(box, 1000, 800, max_side=400)
    assert crop[0] <= box[0] and crop[1] <= box[1] and crop[2] >= box[2] and crop[3] >= box[3]
    assert crop[0] >= 0 and crop[1] >= 0 and crop[2] <= 1000 and crop[3] <= 800
    assert crop[2] - crop[0] <= 400
    wide = crop_around((100, 100, 700, 140), 1000, 800, max_side=400)
    assert wide[0] <= 100 and wide[2] >= 700  # a reading wider than the limit keeps its width


def test_a_crop_around_a_vertical_sign_is_closer_than_its_tile():
    crop = crop_around((500, 100, 540, 500), 3000, 2000, max_side=750)  # 40 × 400 px, text written downwards
    assert crop[0] <= 500 and crop[2] >= 540 and crop[1] <= 100 and crop[3] >= 500
    assert crop[2] - crop[0] <= 750 and crop[3] - crop[1] <= 750


def test_halves_overlap_and_cover_the_view():
    left, right = halves((0, 0, 1000, 500))
    assert left[0] == 0 and right[2] == 1000 and left[2] > right[0]


def test_verification_boxes_skip_confirmed_readings_share_close_ones_and_keep_to_the_limit():
    views = {"r1c1": View(id="r1c1", kind="tile", cells=[(0, 0)], box=(0, 0, 1000, 1000), image_sha256="0" * 64)}
    readings = [Reading(text="A", views=["r1c1", "d1"], box=(100, 100, 150, 120), confirmed=True),
                Reading(text="B", views=["r1c1"], box=(500, 500, 550, 520), confirmed=False),
                Reading(text="C", views=["r1c1"], box=(530, 540, 580, 560), confirmed=False),
                Reading(text="D", views=["r1c1"], box=(900, 100, 950, 120), confirmed=False),
                Reading(text="E", views=["r1c1"], confirmed=False)]
    boxes = verification_boxes(readings, views, 1000, 1000, tile_side=1000, limit=10)
    assert len(boxes) == 4  # B and C share one; D its own; E unplaced: its view's two halves
    assert not any(b[0] <= 100 and b[2] >= 150 and b[1] <= 100 and b[3] >= 120 for b in boxes[:2])
    assert len(verification_boxes(readings, views, 1000, 1000, tile_side=1000, limit=1)) == 1


def test_zoom_boxes_go_where_text_like_detail_was_not_read_and_keep_to_the_limit():
    regions = [(100, 100, 160, 120), (700, 700, 760, 720), (720, 730, 780, 745), (400, 100, 460, 120)]
    read = [Reading(text="A", views=["r1c1"], box=(95, 95, 165, 125))]
    taken = [(380, 60, 500, 160)]
    boxes = zoom_boxes(regions, read, 1000, 1000, tile_side=1000, limit=5, taken=taken)
    assert len(boxes) == 1  # the read region and the one inside a crop already taken are skipped; two close ones share
    assert boxes[0][0] <= 700 and boxes[0][2] >= 780 and boxes[0][1] <= 700 and boxes[0][3] >= 745
    assert zoom_boxes(regions, [], 1000, 1000, tile_side=1000, limit=0, taken=[]) == []


def test_a_small_budget_zooms_where_most_unread_text_is():
    lone = [(100, 100, 160, 120)]
    cluster = [(700, 700, 760, 720), (700, 730, 760, 750), (700, 760, 760, 780)]  # one crop holds all three
    boxes = zoom_boxes(lone + cluster, [], 1000, 1000, tile_side=1000, limit=1, taken=[])
    assert len(boxes) == 1 and boxes[0][0] <= 700 and boxes[0][3] >= 780  # not the first region found (top left)
    both = zoom_boxes(lone + cluster, [], 1000, 1000, tile_side=1000, limit=2, taken=[])
    assert both[0][0] <= 100 and both[1][0] <= 700  # kept in the order found


# --- whole runs against stand-ins ------------------------------------------------------------------------------

SIGNS = {"KARUMEDO": (120, 140), "0312-5567": (980, 620), "VOSTENIK": (560, 380)}


@pytest.fixture
def street(tmp_path):
    img = Image.new("RGB", (1500, 1000), (70, 90, 110))
    draw = ImageDraw.Draw(img)
    rng = random.Random(3)
    for _ in range(400):  # texture, so no view is blank
        x, y = rng.randrange(1500), rng.randrange(1000)
        draw.rectangle((x, y, x + 12, y + 12), fill=(rng.randrange(40, 120),) * 3)
    font = ImageFont.load_default(size=34)
    for text, (x, y) in SIGNS.items():
        x1, y1 = draw.textbbox((x, y), text, font=font)[2:]
        draw.rectangle((x - 12, y - 10, x1 + 12, y1 + 10), fill=(245, 245, 235))
        draw.text((x, y), text, fill=(15, 15, 15), font=font)
    path = tmp_path / "street.png"
    img.save(path)
    return str(path)


_READER = OfflineReader(896)


def inventing(backend):
    """A small VLM that reads what is there (the offline reader at 896 px) and, in every image call of the text
    phase, adds a reading that is not in the image (seeded by the call: the same call invents the same)."""
    from mosaic.llm import Completion

    def complete(call, messages, api_key=None, timeout_s=0.0):
        answer = _READER.answer(messages)
        if "Mosaic task: text" in call.prompt:
            data = json.loads(answer)
            fake = "INV" + hashlib.sha256(call.key().encode()).hexdigest()[:5].upper()
            data["readings"].append({"text": fake, "unclear": False, "box": [100, 100, 300, 160]})
            answer = json.dumps(data)
        return Completion(answer, "stop", {})

    return complete


def prose(backend):
    """A small VLM that ignores "Answer with JSON only" and names what it reads in prose, with a place in words."""
    from mosaic.llm import Completion

    def place(box):
        cy, cx = (box[1] + box[3]) / 2000, (box[0] + box[2]) / 2000
        return (("top", "middle", "bottom")[min(2, int(cy * 3))] + " " + ("left", "centre", "right")[min(2, int(cx * 3))])

    def complete(call, messages, api_key=None, timeout_s=0.0):
        answer = _READER.answer(messages)
        if "Mosaic task: text" in call.prompt:
            read = json.loads(answer)["readings"]
            answer = ("Visible text: " + ", ".join(f'"{r["text"]}" ({place(r["box"])})' for r in read) + "."
                      if read else "No text is visible.")
        return Completion(answer, "stop", {})

    return complete


def run(street, tmp_path, completion, **kw):
    settings = load_settings(completion=f"test_second_look:{completion}", cache_dir=str(tmp_path / "memo"),
                             second_look=True)
    return driver.review(street, "openai/stand-in", "http://127.0.0.1:9/v1", grid="3x2", phases=["text"],
                         out_dir=str(tmp_path / "out"), settings=settings, **kw)


def test_the_second_look_confirms_what_is_there_and_not_what_was_invented(street, tmp_path):
    report = run(street, tmp_path, "inventing")
    by_text = {r.text: r for r in report.readings}
    for sign in SIGNS:
        assert by_text[sign].confirmed, (sign, by_text.get(sign))
    invented = [r for r in report.readings if r.text.startswith("INV")]
    assert invented and not any(r.confirmed for r in invented)
    first_wave = count_calls(3, 2, ["text"])
    assert 0 < report.calls.second_look <= int(0.3 * first_wave)
    assert report.calls.planned == first_wave + report.calls.second_look == report.calls.made
    # every reading names its tile from its box; every view's raw answer is kept
    assert by_text["KARUMEDO"].tiles == ["r1c1"] and by_text["0312-5567"].tiles == ["r2c3"]
    assert {a.view for a in report.answers} == {v for r in report.readings for v in r.views} | {
        a.view for a in report.answers}
    assert any(a.kind == "detail" for a in report.answers)
    # confirmed first, apart from the rest, in report.md and in the review text; an invention on textured sky is
    # not confirmed by the reader (what the detector sees there decides whether it is probably absent)
    assert [r.confirmed for r in report.readings] == sorted((r.confirmed for r in report.readings), reverse=True)
    assert all(r.status in ("unconfirmed", "probably_absent") and r.reason for r in invented)
    md = (tmp_path / "out").glob("*/report.md").__next__().read_text()
    assert md.index("**Readings confirmed") < md.index("KARUMEDO") < md.index("**Readings not confirmed") < md.index(
        "**Probably not in the image")
    assert md.index("**Readings not confirmed") < md.index(invented[0].text)
    assert report.review.index("Readings confirmed") < report.review.index(f'"{invented[0].text}" in', report.review.index(
        "Readings confirmed"))


def test_the_second_look_zooms_into_text_no_view_could_read(tmp_path):
    """A small sign that a 224-px reader cannot read in a 2×1 grid's tiles is read in a zoomed crop of the region
    the text detector found."""
    img = Image.new("RGB", (2400, 1200), (70, 90, 110))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=16)
    x1, y1 = draw.textbbox((1496, 703), "TOLMERAK", font=font)[2:]
    draw.rectangle((1490, 697, x1 + 6, y1 + 6), fill=(245, 245, 235))
    draw.text((1496, 703), "TOLMERAK", fill=(15, 15, 15), font=font)
    path = tmp_path / "small.png"
    img.save(path)
    settings = load_settings(cache_dir=str(tmp_path / "memo"), second_look=True, second_look_share=1.0)
    without = driver.review(str(path), "offline:224", grid="2x1", phases=["text"], out_dir=str(tmp_path / "a"),
                            settings=settings, second_look=False)
    assert "TOLMERAK" not in {r.text for r in without.readings}
    report = driver.review(str(path), "offline:224", grid="2x1", phases=["text"], out_dir=str(tmp_path / "b"),
                           settings=settings)
    found = [r for r in report.readings if r.text == "TOLMERAK"]
    assert found and found[0].tiles == ["r1c2"] and found[0].views[0].startswith("d")
    # read once, in the zoom; confirmed since issue 26 by the independent reader at full resolution, not by count
    assert found[0].confirmed is True and found[0].witnesses.reader.agrees and found[0].views == ["d1"]


def failing_closer_looks(backend):
    """The inventing stand-in, but every closer look of the second look fails (HTTP 500 after its retries)."""
    from mosaic.errors import BackendError

    complete = inventing(backend)

    def fail_detail(call, messages, api_key=None, timeout_s=0.0):
        if "closer look" in call.prompt:
            raise BackendError("stand-in: HTTP 500", retryable=False)
        return complete(call, messages, api_key, timeout_s)

    return fail_detail


def test_a_failed_closer_look_leaves_its_readings_unconfirmed_and_the_run_complete(street, tmp_path):
    report = run(street, tmp_path, "failing_closer_looks")
    assert report.complete and not report.failed_tiles
    assert report.calls.failed == report.calls.second_look > 0
    assert any("closer look d1" in n for n in report.notes)
    assert {r.text for r in report.readings} >= set(SIGNS)


def test_an_image_changed_during_the_run_gets_no_second_look_and_a_note(street, tmp_path, monkeypatch):
    from mosaic import pipeline

    real, reads = pipeline.read_image_file, []

    def read_then_changed(path):  # the plan is cut from the image; the second look finds other bytes
        reads.append(path)
        return real(path) if len(reads) == 1 else real(path) + b"changed"

    monkeypatch.setattr(pipeline, "read_image_file", read_then_changed)
    report = run(street, tmp_path, "inventing")
    assert report.complete and report.calls.second_look == 0
    assert any("no second look" in n and "changed" in n for n in report.notes)


def test_a_text_question_does_not_see_what_the_first_look_quoted():
    from mosaic.prompts import view_prompt

    prompt = view_prompt("text", "A street. A sign says 'SHIBUYA STATION' near r1c2.", "This crop is tile r1c2.")
    assert "SHIBUYA" not in prompt and "near r1c2" in prompt
    assert "SHIBUYA" in view_prompt("subjects", "A sign says 'SHIBUYA STATION'.", "")


def test_a_rerun_of_a_second_look_makes_no_call_and_gives_the_same_report(street, tmp_path):
    first = run(street, tmp_path, "inventing")
    again = run(street, tmp_path, "inventing")
    assert again.calls.made == 0 and again.calls.cached == first.calls.total
    assert again.model_dump(exclude={"elapsed_s", "calls"}) == first.model_dump(exclude={"elapsed_s", "calls"})


def test_without_the_second_look_the_first_wave_is_all(street, tmp_path):
    report = run(street, tmp_path, "inventing", second_look=False)
    assert report.calls.second_look == 0 and report.calls.made == count_calls(3, 2, ["text"])
    assert not any(a.kind == "detail" for a in report.answers)


def test_readings_given_in_prose_are_kept_with_their_place(street, tmp_path):
    report = run(street, tmp_path, "prose")
    by_text = {r.text: r for r in report.readings}
    assert set(SIGNS) <= set(by_text)
    assert all(by_text[s].source == "prose" for s in SIGNS)
    assert by_text["KARUMEDO"].tiles == ["r1c1"]
    assert all(not a.structured for a in report.answers if a.phase == "text")


# --- structured output through real HTTP servers ----------------------------------------------------------------

def reader_answer(messages, model):
    return _READER.answer(messages)


@pytest.mark.parametrize("refuse, style", [  # the fast lane keeps one of each style and each answer
    pytest.param(False, "openai", id="accepts-openai"), pytest.param(True, "ollama", id="refuses-ollama"),
    pytest.param(False, "ollama", id="accepts-ollama", marks=pytest.mark.slow),
    pytest.param(True, "openai", id="refuses-openai", marks=pytest.mark.slow)])
def test_the_answers_schema_is_asked_of_a_server_and_dropped_when_it_refuses(street, style, refuse):
    with ModelServer(reader_answer, models=["reader"], refuse_schema=refuse) as server:
        model, base = ("openai/reader", server.openai_base) if style == "openai" else ("ollama_chat/reader", server.url)
        code, out = run_cli("run", street, "--model", model, "--api-base", base, "--grid", "2x2", "--phases", "text",
                            "--json", "--no-second-look")
        assert code == 0, out
        report = json.loads(out)
        requests = server.chat_requests(answered_only=False)
    text_requests = [r for r in requests if "Mosaic task: text" in r.text]
    if refuse:
        refused = [r.status for r in requests if r.schema is not None]
        assert refused and set(refused) == {400} and len(refused) <= 2  # once per call in flight, then never again
        assert all(r.schema is None for r in requests if r.status == 200)
        assert len(requests) == report["calls"]["made"] + len(refused)
    else:
        assert all(r.schema is not None and r.status == 200 for r in text_requests)
        schema = text_requests[0].schema
        assert "readings" in schema["properties"]
    assert set(SIGNS) <= {r["text"] for r in report["readings"]}


def test_a_refusal_that_was_not_about_the_schema_is_not_remembered(monkeypatch):
    from mosaic import llm
    from mosaic.schema import ModelCall

    class Refused(Exception):
        status_code = 400

    asked = []

    def refuse(request):
        asked.append("response_format" in request)
        raise Refused("invalid image data")

    monkeypatch.setattr(llm, "_complete", refuse)
    call = ModelCall(model="openai/x", api_base="http://127.0.0.1:9/v1", system="s", prompt="p",
                     response_schema={"type": "object"})
    with pytest.raises(Refused):
        llm.litellm_completion(call, [], None, 1.0)
    assert asked == [True, False] and ("openai/x", "http://127.0.0.1:9/v1") not in llm.REFUSED_SCHEMA


@pytest.mark.slow
def test_the_cli_says_what_the_second_look_may_cost_before_the_first_call(street, monkeypatch, capsys):
    monkeypatch.setenv("MOSAIC_SECOND_LOOK", "true")
    code, _ = run_cli("run", street, "--model", "offline:896", "--grid", "3x2", "--phases", "text", "--json")
    assert code == 0
    first = count_calls(3, 2, ["text"])
    assert re.search(rf"{first} calls planned \(about [\d.]+ laptop minutes\), at most {int(0.3 * first)} more for a second look", capsys.readouterr().err)


# --- files a user can share ------------------------------------------------------------------------------------

def test_report_files_follow_the_users_umask(street, tmp_path):
    """mkstemp makes 0600 files; a report folder is shared like the user's other files (0644 with umask 022)."""
    import stat
    from pathlib import Path

    from mosaic.memo import UMASK

    report = run(street, tmp_path, "inventing", second_look=False)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in Path(report.report_dir).iterdir()}
    assert modes == {name: 0o666 & ~UMASK for name in ("report.html", "report.json", "report.md", "overview.jpg")}


def test_mosaic_says_its_version(capsys):
    from mosaic_cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"mosaic \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_progress_in_a_log_file_comes_from_the_start_not_only_when_tiles_finish():
    import io

    from mosaic.progress import Progress

    log = io.StringIO()  # not a terminal
    bar = Progress(total_calls=40, total_tiles=4, stream=log)
    bar.announce("mosaic: 40 calls planned")
    for _ in range(8):
        bar.call_done()
    assert log.getvalue().count("\n") == 3 and "calls 4/40" in log.getvalue() and "calls 8/40" in log.getvalue()


def test_the_bar_starts_after_the_plan_line_and_its_total_never_goes_down():
    """A memoized rerun settles calls while the review is set up, before the second look's total is known: they
    are not drawn against the first wave's total (today's `calls 63/54`); the total is never lowered, not at the end
    either (the second look's cap is an upper bound)."""
    import io

    from mosaic.progress import Progress

    log = io.StringIO()
    bar = Progress(total_calls=54, total_tiles=8, stream=log)
    for _ in range(60):
        bar.call_done(cached=True)
    assert log.getvalue() == ""
    bar.announce("mosaic: 54 calls planned, and at most 16 more for a second look")
    bar.total_calls = 70
    for _ in range(4):
        bar.call_done(cached=True)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("mosaic: 54 calls planned")
    totals = [int(d) for _, d in re.findall(r"calls (\d+)/(\d+)", log.getvalue())]
    assert all(int(n) <= int(d) for n, d in re.findall(r"calls (\d+)/(\d+)", log.getvalue()))
    assert totals == sorted(totals)  # the total never goes down, not even at the end
    bar.total_calls = 60  # a caller's lower figure does not lower it either
    assert bar.total_calls == 70
    assert "calls 64/70, 64 from memo" in lines[-1]
