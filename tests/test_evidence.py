"""Evidence by witness (mosaic.evidence): a reading is confirmed when a witness independent of the model agrees with
it, not because the model repeated itself."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw, ImageFont

from mosaic.errors import BadOption
from mosaic.evidence import (NO_TEXT, Line, Look, judge, place_of, similarity, witness,
                             witnesses_on)
from mosaic.memo import BlobStore
from mosaic.schema import Plan, Reading, View

BOX = (100, 100, 300, 140)


def reading(text="KARUMEDO", views=("r1c1",), box=BOX, **kw) -> Reading:
    return Reading(text=text, views=list(views), box=box, tiles=["r1c1"], confirmed=len(views) >= 2, **kw)


# --- the rules (pure) ----------------------------------------------------------------------------------------

def test_the_reader_agreeing_confirms_a_reading_seen_once():
    got = judge(reading(), Look([BOX], [Line("KARUMEDO", 0.98, BOX)]))
    assert (got.status, got.confirmed, got.variants) == ("confirmed", True, [])
    assert got.witnesses.reader.agrees and got.witnesses.detector == "text" and got.witnesses.views == ["r1c1"]
    assert "KARUMEDO" in got.reason


def test_a_reading_on_a_blank_patch_is_probably_absent_however_many_views_repeat_it():
    got = judge(reading("BAKERY", views=("r1c1", "r1c1|r1c2", "d1")), Look([], []))
    assert (got.status, got.confirmed, got.reason) == ("probably_absent", False, NO_TEXT)
    assert got.witnesses.views == ["r1c1", "r1c1|r1c2", "d1"] and got.witnesses.detector == "none"


def test_a_reading_the_reader_reads_differently_carries_both_texts_and_who_said_what():
    got = judge(reading("KARUMEDD", views=("r1c1", "d1")), Look([BOX], [Line("KARUMEDO", 0.9, BOX)]))
    assert (got.status, got.confirmed, got.text, got.variants) == ("unconfirmed", False, "KARUMEDD", ["KARUMEDO"])
    assert got.witnesses.reader.text == "KARUMEDO" and not got.witnesses.reader.agrees
    assert got.witnesses.reader.similarity == pytest.approx(0.875)
    # a looser rule (a character apart) lets the reader agree
    assert judge(reading("KARUMEDD"), Look([BOX], [Line("KARUMEDO", 0.9, BOX)]), threshold=0.85).confirmed


def test_the_reader_agreeing_with_a_variant_makes_it_the_text():
    got = judge(reading("KARUMEDD", variants=["KARUMEDO"]), Look([BOX], [Line("KARUMEDO", 0.9, BOX)]))
    assert (got.status, got.text, got.variants) == ("confirmed", "KARUMEDO", ["KARUMEDD"])


def test_text_beside_the_reading_is_not_at_it():
    """A neighbour's sign in the grown margin is neither text at the reading nor its variant."""
    beside = (340, 100, 440, 140)  # in the grown place (a quarter of 200 px), not at the box (an eighth)
    got = judge(reading("BAKERY"), Look([beside], [Line("EXIT", 0.9, beside)]))
    assert got.status == "probably_absent" and got.variants == []


def test_no_place_no_witness_and_views_alone():
    assert judge(reading(box=None), None).status == "unconfirmed"
    assert judge(reading(box=None, views=("r1c1", "r1c2")), None).confirmed is False  # never by count
    assert judge(reading(views=("r1c1", "d1")), Look(None, None)).confirmed  # no witness on: the old rule
    assert judge(reading(), Look(None, None)).status == "unconfirmed"
    assert judge(reading(), Look([BOX], None)).status == "unconfirmed"  # detector only: text, but seen once
    assert judge(reading(views=("r1c1", "d1")), Look([], None)).status == "probably_absent"


def test_a_reading_with_no_box_is_looked_for_in_its_tiles_and_takes_the_readers_place():
    tiles = {"r1c1": (0, 0, 500, 400), "r1c2": (500, 0, 1000, 400)}
    r = reading(box=None)
    assert place_of(r, tiles, 1000, 400) == (0, 0, 500, 400)
    got = judge(r, Look([BOX], [Line("KARUMEDO", 0.9, BOX)]))
    assert got.confirmed and got.box == BOX
    assert place_of(Reading(text="X"), tiles, 1000, 400) is None


def test_similarity_and_witness_names():
    assert similarity("Open 24h", "OPEN24H") == 1.0 and similarity("0312", "0312-5567") == 1.0
    assert similarity("BAKERY", "") == 0.0 and similarity("ABCD", "ABCE") == 0.75
    assert witnesses_on("reader, detector") == ("detector", "reader") and witnesses_on("none") == ()
    with pytest.raises(BadOption):
        witnesses_on("detector,oracle")


# --- the local witnesses on a real image ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def street():
    img = Image.new("RGB", (1200, 800), (70, 90, 110))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=30)
    draw.rectangle((90, 90, 330, 150), fill=(245, 245, 235))
    draw.text((100, 100), "KARUMEDO", fill=(15, 15, 15), font=font)
    draw.rectangle((700, 500, 940, 560), fill=(20, 110, 60))  # a blank board
    views = [View(id="r1c1", kind="tile", cells=[(0, 0)], box=(0, 0, 600, 800), image_sha256="a"),
             View(id="r1c2", kind="tile", cells=[(1, 0)], box=(600, 0, 1200, 800), image_sha256="b")]
    plan = Plan(image_path="street.png", image_sha256="street", width=1200, height=800, cols=2, rows=1,
                density="light", phases=["text"], overview_sha256="o", views=views)
    return img, plan


def test_the_witnesses_tell_a_sign_from_a_blank_board_and_a_rerun_looks_at_nothing(street, tmp_path):
    img, plan = street
    box = ImageDraw.Draw(img).textbbox((100, 100), "KARUMEDO", font=ImageFont.load_default(size=30))
    readings = [Reading(text="BAKERY", views=["r1c2", "r1c1|r1c2", "d1"], box=(710, 510, 930, 550), tiles=["r1c2"],
                        confirmed=True),
                Reading(text="KARUMEDD", views=["r1c1"], box=box, tiles=["r1c1"], confirmed=False),
                Reading(text="KARUMEDO", views=["d2"], box=box, tiles=["r1c1"], confirmed=False)]
    blobs = BlobStore(tmp_path / "blobs")
    got = {r.text: r for r in witness(readings, lambda: img, plan, blobs)}
    assert got["KARUMEDO"].status == "confirmed" and got["KARUMEDO"].witnesses.reader.text == "KARUMEDO"
    assert got["KARUMEDD"].status == "unconfirmed" and "KARUMEDO" in got["KARUMEDD"].variants
    assert (got["BAKERY"].status, got["BAKERY"].reason) == ("probably_absent", NO_TEXT)

    def gone():
        raise AssertionError("the image was decoded again")

    again = witness(readings, gone, plan, blobs)
    assert [r.model_dump() for r in again] == [got[r.text].model_dump() for r in again]
    assert [r.status for r in again] == ["confirmed", "unconfirmed", "probably_absent"]  # in that order
    # the reader off: the detector alone cannot confirm a reading seen once
    alone = {r.text: r for r in witness(readings, gone, plan, blobs, on=("detector",))}
    assert alone["KARUMEDO"].status == "unconfirmed" and alone["BAKERY"].status == "probably_absent"


@pytest.fixture
def looked(monkeypatch) -> list[tuple[list[str], list]]:
    """(witnesses, place) of every local look, as they are made."""
    from mosaic import evidence

    asked = []
    real = evidence.look_locally

    def spy(image, place, which):
        asked.append((list(which), place))
        return real(image, place, which)

    monkeypatch.setattr(evidence, "look_locally", spy)
    return asked


def test_a_place_asked_twice_in_one_look_is_looked_at_once_so_a_rerun_reads_back_the_same(street, tmp_path, looked):
    from mosaic import evidence

    img, _ = street
    blobs = BlobStore(tmp_path / "blobs")
    place, other = ((60, 60, 380, 190), 1.0), ((650, 450, 990, 610), 1.0)
    found = {}
    first = evidence.looks(lambda: img, "street", [place, other, place], ("reader",), blobs, found)
    assert looked == [(["reader"], place), (["reader"], other)]
    assert first[0] == first[2]
    again = evidence.looks(lambda: img, "street", [other, place], ("reader",), blobs)  # the same look: from the store
    assert again == [first[1], first[0]] and len(looked) == 2
    given = evidence.looks(lambda: img, "street", [place], ("reader",), BlobStore(tmp_path / "new"), dict(found))
    assert given == [first[0]] and len(looked) == 2  # an earlier step's finding, on a machine that never saw it


def test_what_a_place_holds_depends_on_the_place_alone_not_on_what_else_a_step_asks(street, tmp_path, looked):
    """A step that takes a place from this machine's store, looked at by another step, finds what the same step
    finds on another worker: each place is looked at on a canvas of its own, at its own size."""
    from mosaic import evidence

    img, _ = street
    place, other = ((60, 60, 380, 190), 1.0), ((650, 450, 990, 610), 1.0)
    used = BlobStore(tmp_path / "used")
    evidence.looks(lambda: img, "street", [place], ("detector", "reader"), used)  # another step, alone
    here = evidence.looks(lambda: img, "street", [place, other], ("detector", "reader"), used)
    elsewhere = evidence.looks(lambda: img, "street", [other, place], ("detector", "reader"), BlobStore(tmp_path / "new"))
    assert here == elsewhere[::-1] and len(looked) == 4 and here[0].lines[0].text == "KARUMEDO"


def test_a_whole_tile_is_looked_at_once_for_every_step_that_needs_it(street, tmp_path, looked):
    from mosaic import evidence

    img, _ = street
    tile, sign = ((0, 0, 600, 800), 1.0), ((60, 60, 380, 190), 1.0)
    blobs = BlobStore(tmp_path / "blobs")
    first = evidence.looks(lambda: img, "street", [tile], ("reader",), blobs)
    second = evidence.looks(lambda: img, "street", [sign, tile], ("reader",), blobs)  # another step, nothing given
    assert [place for _, place in looked] == [tile, sign] and second[1] == first[0]


@pytest.mark.parametrize("place, canvas", [
    (((60, 60, 380, 190), 1.5), (320, 576)),  # enlarged: 195 + 2 * 48 by 480 + 2 * 48, up to multiples of 32
    (((95, 95, 335, 140), 1.0), (160, 352)),  # tight round the text, as it is
    (((0, 40, 1200, 200), 2.0), (352, 1984)),  # too wide at 2x: shrunk to fit 1984 px
    (((0, 80, 1200, 160), 2.0), (224, 1984)),  # wider than 8:1, which RapidOCR letterboxes
])
def test_a_place_is_read_on_a_canvas_of_its_own_size_and_found_where_its_text_is(street, tmp_path, monkeypatch,
                                                                                   place, canvas):
    from mosaic import evidence
    from mosaic.offline import reader

    img, _ = street
    shown = []
    real = reader._ocr

    def spied(at_own_size=False):
        engine = real(at_own_size)
        return lambda picture, **options: shown.append((at_own_size, picture.shape[:2])) or engine(picture, **options)

    monkeypatch.setattr(reader, "_ocr", spied)
    look = evidence.looks(lambda: img, "street", [place], ("detector", "reader"), BlobStore(tmp_path / "blobs"))[0]
    assert shown == [(True, canvas)]
    engine = real(True)
    assert getattr(engine, "engine", engine).text_det.limit_type == "max"  # a small canvas is not enlarged
    (line,) = look.lines
    x0, y0, x1, y1 = line.box  # in the image's pixels: the text was drawn at (100, 100), about 170 x 30
    assert line.text == "KARUMEDO" and 95 <= x0 <= 106 and 100 <= y0 <= 112 and 260 <= x1 <= 280 and 126 <= y1 <= 140
    assert look.regions == [line.box]


def test_one_detection_serves_both_witnesses_and_each_finds_what_it_finds_alone(street, tmp_path, monkeypatch):
    from mosaic import evidence
    from mosaic.offline import reader

    img, _ = street
    passes = []
    real = reader._ocr

    def counted(at_own_size=False):
        engine = real(at_own_size)
        return lambda *args, **kwargs: passes.append((at_own_size, kwargs.get("use_rec"))) or engine(*args, **kwargs)

    monkeypatch.setattr(reader, "_ocr", counted)
    places = [((60, 60, 380, 190), 1.0), ((650, 450, 990, 610), 1.0), ((400, 300, 560, 360), 2.0)]
    both = evidence.looks(lambda: img, "street", places, ("detector", "reader"), BlobStore(tmp_path / "both"))
    assert passes == [(True, True)] * 3  # one look per place, not a detector pass and a reader pass each
    alone = {w: evidence.looks(lambda: img, "street", places, (w,), BlobStore(tmp_path / w)) for w in ("detector", "reader")}
    assert [look.regions for look in both] == [look.regions for look in alone["detector"]]
    assert [look.lines for look in both] == [look.lines for look in alone["reader"]]
    assert any(look.lines for look in both) and all(line.score >= evidence.READ_SCORE for look in both for line in look.lines)


def test_a_reading_with_no_place_is_looked_for_at_the_detectors_regions_then_in_its_whole_tiles(street, tmp_path,
                                                                                              looked):
    img, plan = street
    readings = [Reading(text="KARUMEDO", views=["r1c1"], tiles=["r1c1"]),
                Reading(text="BAKERY", views=["r1c2"], tiles=["r1c2"])]  # an invention, no text in r1c2 at all
    blobs = BlobStore(tmp_path / "blobs")
    got = {r.text: r for r in witness(readings, lambda: img, plan, blobs)}
    assert got["KARUMEDO"].status == "confirmed" and got["KARUMEDO"].box  # it takes the place the reader read it at
    asked = sorted((place for _, place in looked), key=lambda p: p[1])
    # in r1c1 the sign's region, enlarged a little; r1c2 holds no text-like region: its whole tile, as it is
    assert len(asked) == 2 and asked[0] == ((600, 0, 1200, 800), 1.0)
    (x0, y0, x1, y1), zoom = asked[1]
    assert x0 <= 100 and x1 >= 300 and x1 - x0 < 400 and y1 - y0 < 100 and zoom > 1
    assert got["BAKERY"].status == "probably_absent"


def test_a_reading_with_no_place_not_confirmed_at_the_regions_is_looked_for_in_its_whole_tiles(street, tmp_path,
                                                                                            looked):
    img, plan = street
    got = witness([Reading(text="SIGN-0A1B2C", views=["r1c1"], tiles=["r1c1"])], lambda: img, plan,
                  BlobStore(tmp_path / "blobs"))
    asked = [place for _, place in looked]
    assert len(asked) == 2 and asked[0] != ((0, 0, 600, 800), 1.0) and asked[1] == ((0, 0, 600, 800), 1.0)
    assert got[0].status == "unconfirmed" and "KARUMEDO" in got[0].variants[0]



def test_a_seam_reading_with_no_place_is_looked_for_in_each_of_its_tiles_whole_as_the_tiles_readings_are(
        street, tmp_path, looked):
    img, plan = street
    readings = [Reading(text="SIGN-0A1B2C", views=["r1c1"], tiles=["r1c1"]),
                Reading(text="BAKERY", views=["r1c2"], tiles=["r1c2"]),
                Reading(text="OPEN LATE", views=["r1c1|r1c2"], tiles=["r1c1", "r1c2"])]
    got = witness(readings, lambda: img, plan, BlobStore(tmp_path / "blobs"))
    wholes = [place for _, place in looked if place[1] == 1.0 and place[0][2] - place[0][0] >= 600]
    # each tile once, as it is: not their hull as a third look
    assert sorted(wholes) == [((0, 0, 600, 800), 1.0), ((600, 0, 1200, 800), 1.0)]
    seam = next(r for r in got if r.text == "OPEN LATE")
    assert seam.status == "unconfirmed" and "KARUMEDO" in seam.variants[0]

# --- end to end: a stand-in that repeats an invention on a blank board ---------------------------------------

@pytest.mark.slow
def test_a_model_repeating_an_invention_on_a_blank_board_is_not_confirmed(tmp_path, monkeypatch):
    from testkit.scenes import dump_ground_truth, make_scene
    from testkit.stand_ins import StandIn, board_text
    from mosaic.driver import review
    from mosaic.offline.server import ModelServer
    from mosaic.settings import load_settings

    scene = make_scene(7, 1600, 1000, n_signs=5, min_height_frac=0.025, max_height_frac=0.04, n_blanks=1)
    scene.image.save(tmp_path / "street.png")
    (tmp_path / "truth.json").write_text(dump_ground_truth(scene.ground_truth()))
    stand_in = StandIn.from_spec(f"reader=rapidocr,budget=896,boards={tmp_path / 'truth.json'}")
    monkeypatch.delenv("MOSAIC_WITNESSES", raising=False)
    settings = load_settings(cache_dir=str(tmp_path / "memo"), second_look=True)
    with ModelServer(stand_in.answer_http, listed=["v"]) as server:
        report = review(str(tmp_path / "street.png"), "openai/v", server.openai_base, grid="2x2", phases=["text"],
                        out_dir=str(tmp_path / "out"), settings=settings)
    data = json.loads((tmp_path / "out" / report.report_dir.split("/")[-1] / "report.json").read_text())
    made_up = [r for r in data["readings"] if r["text"] == board_text(scene.blanks[0])]
    assert made_up, "the stand-in read nothing on the blank board"
    board = made_up[0]
    assert len(board["views"]) >= 2  # the model repeated itself: 'confirmed' before witnesses
    assert (board["confirmed"], board["status"], board["reason"]) == (False, "probably_absent", NO_TEXT)
    assert board["witnesses"]["detector"] == "none"
    assert data["settings"]["witnesses"]["on"] == ["detector", "reader"]
    assert all("witnesses" in r and r["status"] for r in data["readings"])
    assert any(r["status"] == "confirmed" and r["text"] in {s.text for s in scene.signs} for r in data["readings"])
    md = (tmp_path / "out" / report.report_dir.split("/")[-1] / "report.md").read_text()
    assert md.index("**Probably not in the image") < md.index(board["text"])
