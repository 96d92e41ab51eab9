"""The overview picture of a report folder: a translucent grid that hides no text, and the readings' boxes."""

import io

import numpy as np
import pytest
from PIL import Image

from mosaic.backend import Backend
from mosaic.memo import BlobStore
from mosaic.pipeline import prepare
from mosaic.report import overview_jpeg, write_report
from mosaic.schema import CallStats, FinalReport, Reading

GRID_RGB = np.array([255, 230, 0])
STRIPES = (slice(100, 300), slice(560, 640))  # rows, columns of the text-like pattern across the line x = 600


@pytest.fixture
def photo(tmp_path):
    """1200×800 mid grey (the overview is the same size: no shrinking, no enlarging, one photo pixel per pixel), with
    black and white stripes (3 px each, like lines of print) across the vertical tile line of a 2×2 grid."""
    pixels = np.full((800, 1200, 3), 128, dtype=np.uint8)
    rows, cols = STRIPES
    stripes = np.where((np.arange(rows.start, rows.stop) // 3) % 2 == 0, 0, 255).astype(np.uint8)
    pixels[rows, cols] = stripes[:, None, None]
    Image.fromarray(pixels, "RGB").save(tmp_path / "p.png")
    blobs = BlobStore(tmp_path / "blobs")
    plan = prepare(str(tmp_path / "p.png"), "light", "2x2", ["text"], Backend(model="openai/x"), blobs)
    original = np.asarray(Image.open(io.BytesIO(blobs.get(plan.overview_sha256))).convert("RGB")).astype(int)
    assert original.shape == (800, 1200, 3)
    return plan, blobs, original


def drawn(plan, blobs, readings=()) -> np.ndarray:
    image = Image.open(io.BytesIO(overview_jpeg(plan, blobs, readings)))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB")).astype(int)


def greenish(p) -> bool:
    r, g, b = (int(v) for v in p)
    return g > 150 and g > r + 60 and g > b + 60


def orangeish(p) -> bool:
    r, g, b = (int(v) for v in p)
    return r > 200 and 80 < g < 200 and b < 90 and r > g + 50


def test_grid_line_is_thin_and_lets_the_text_it_crosses_show_through(photo):
    plan, blobs, original = photo
    out = drawn(plan, blobs)
    # Where the line is: columns near x = 600 whose grey (below the stripes, above the horizontal line) turned yellow.
    grey_rows = slice(320, 390)
    tint = (out[grey_rows, :, 0] - out[grey_rows, :, 2]).mean(axis=0)
    line_cols = [x for x in range(585, 616) if tint[x] > 30]
    assert 1 <= len(line_cols) <= 2, line_cols  # thin: not the old 3 px
    assert all(tint[x] < 10 for x in (570, 630))  # and nowhere else near it
    rows, _ = STRIPES
    inner = slice(rows.start + 6, rows.stop - 6)
    black = original[inner, 600, 0] < 60
    for x in line_cols:
        line, under = out[inner, x], original[inner, x]
        # the stripes still alternate through the line: most of their contrast is left (an opaque line leaves none)
        contrast = line[~black].mean(axis=0).sum() - line[black].mean(axis=0).sum()
        assert contrast > 0.4 * (under[~black].mean(axis=0).sum() - under[black].mean(axis=0).sum())
        # each pixel is a blend: nearer what was there than an opaque line of the grid's colour would be
        assert np.abs(line - under).sum(axis=1).mean() < 0.7 * np.abs(GRID_RGB - under).sum(axis=1).mean()
        assert not all(np.abs(p - GRID_RGB).sum() < 60 for p in line)


def test_grid_lines_crossing_are_no_darker_than_either_line(photo):
    """Checked before the JPEG (its ringing lifts a crossing's peak on its own): the crossing pixel is blended once."""
    from mosaic.report import _draw_grid

    plan, blobs, original = photo
    assert np.abs(original[390:411, 590:611] - 128).max() == 0  # grey round the crossing at (600, 400)
    base = Image.open(io.BytesIO(blobs.get(plan.overview_sha256))).convert("RGB")
    _draw_grid(base, plan, 1.0, 1.0)
    out = np.asarray(base).astype(int)
    tint = out[..., 0] - out[..., 2]
    on_line, across, crossing = tint[350, 598:603].max(), tint[398:403, 550].max(), tint[398:403, 598:603].max()
    assert on_line > 30 and across > 30
    assert crossing == max(on_line, across)  # blended twice it would be ~190, not ~110


def test_tile_labels_are_drawn_on_a_translucent_background(photo):
    plan, blobs, original = photo
    out = drawn(plan, blobs)
    label = out[0:50, 0:90].reshape(-1, 3)  # r1c1's label, top left
    yellow = [p for p in label if p[0] > 200 and p[1] > 190 and p[2] < 80]
    assert len(yellow) > 30  # the label's letters, in the grid's colour at full strength
    dark = [p for p in label if p.sum() < 3 * 100]
    assert dark  # a darker background behind them ...
    assert min(int(p.sum()) for p in dark) > 3 * 25  # ... through which the grey still shows (not black)


def test_readings_are_boxed_green_when_confirmed_and_orange_when_not(photo):
    plan, blobs, original = photo
    confirmed = Reading(text="EXIT", box=(100, 500, 300, 560), tiles=["r2c1"], confirmed=True)
    once = Reading(text="OPEN", box=(700, 150, 900, 220), tiles=["r1c2"], confirmed=False)
    unjudged = Reading(text="24h", box=(700, 600, 900, 650), tiles=["r2c2"], confirmed=None)
    out = drawn(plan, blobs, [confirmed, once, unjudged])

    def edges(box, reach=6):  # the pixels on and just outside each edge of the box, at its middle
        x0, y0, x1, y1 = box
        xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
        return {"top": out[y0 - reach:y0 + 1, xm], "bottom": out[y1 - 1:y1 + reach, xm],
                "left": out[ym, x0 - reach:x0 + 1], "right": out[ym, x1 - 1:x1 + reach]}

    for reading, colour, other in ((confirmed, greenish, orangeish), (once, orangeish, greenish),
                                   (unjudged, orangeish, greenish)):
        for side, pixels in edges(reading.box).items():
            assert any(colour(p) for p in pixels), (reading.text, side, pixels)
            assert not any(other(p) for p in pixels), (reading.text, side)
        x0, y0, x1, y1 = reading.box
        # the outline lies outside the box: what was read is not covered
        inside = out[y0 + 1:y1 - 1, x0 + 1:x1 - 1]
        assert np.abs(inside - original[y0 + 1:y1 - 1, x0 + 1:x1 - 1]).max() < 24
    # the number label sits just above the box, in the box's colour, with a dark digit on it
    above = out[470:498, 95:130].reshape(-1, 3)
    assert sum(greenish(p) for p in above) > 40
    assert any(p.sum() < 3 * 70 for p in above)
    assert not any(greenish(p) for p in out[470:498, 160:240].reshape(-1, 3))  # only at the box's left


def test_a_reading_at_the_top_edge_is_numbered_inside_the_picture(photo):
    plan, blobs, _ = photo
    top = Reading(text="TOP", box=(300, 0, 450, 40), confirmed=True)
    out = drawn(plan, blobs, [top])
    below = out[42:75, 296:330].reshape(-1, 3)  # no room above: the number goes just below the box
    assert sum(greenish(p) for p in below) > 40


def test_readings_without_a_box_or_outside_the_image_draw_nothing(photo):
    plan, blobs, _ = photo
    plain = overview_jpeg(plan, blobs)
    assert overview_jpeg(plan, blobs, ()) == plain
    nowhere = [Reading(text="A", tiles=["r1c1"], confirmed=True), Reading(text="B", confirmed=False),
               Reading(text="C", box=(1300, 900, 1400, 950), confirmed=True)]
    assert overview_jpeg(plan, blobs, nowhere) == plain
    assert overview_jpeg(plan, blobs, [Reading(text="D", box=(10, 500, 60, 530), confirmed=True)]) != plain


def test_a_box_given_backwards_or_past_the_edge_is_drawn_inside_the_picture(photo):
    plan, blobs, _ = photo
    out = drawn(plan, blobs, [Reading(text="E", box=(1150, 780, 1100, 700), confirmed=False),
                              Reading(text="F", box=(1000, 500, 1500, 560), confirmed=True)])
    assert any(orangeish(p) for p in out[690:702, 1125])  # the top edge of (1100, 700, 1150, 780)
    assert any(greenish(p) for p in out[490:502, 1100])  # F's top edge, its box cut at the image's right edge
    assert any(greenish(p) for p in out[530, 1188:1200])  # and its right edge drawn at the picture's edge


def test_small_photo_is_enlarged_and_boxes_scale_with_it(tmp_path):
    Image.new("RGB", (400, 200), (128, 128, 128)).save(tmp_path / "s.png")
    blobs = BlobStore(tmp_path / "blobs")
    plan = prepare(str(tmp_path / "s.png"), "light", "1x1", ["text"], Backend(model="openai/x"), blobs)
    out = drawn(plan, blobs, [Reading(text="G", box=(100, 100, 200, 150), confirmed=True)])
    assert out.shape[:2] == (400, 800)  # 800 px on the long side, as before
    assert any(greenish(p) for p in out[190:201, 300])  # the box's top edge at y = 200 of the enlarged photo
    assert not any(greenish(p) for p in out[94:101, 150])  # not where it would be unscaled


def test_write_report_draws_the_reports_readings(photo, tmp_path):
    plan, blobs, _ = photo
    readings = [Reading(text="EXIT", box=(100, 500, 300, 560), tiles=["r2c1"], confirmed=True, views=["r2c1"])]
    report = FinalReport(image="p.png", image_sha256=plan.image_sha256, size=(1200, 800), model="openai/x",
                         api_base=None, density="light", grid="2x2", cols=2, rows=2, phases=["text"],
                         orientation="", review="", readings=readings, tiles=[], calls=CallStats(planned=0),
                         elapsed_s=0.0)
    folder = write_report(report, plan, blobs, tmp_path / "report")
    assert (folder / "overview.jpg").read_bytes() == overview_jpeg(plan, blobs, readings)
    assert (folder / "overview.jpg").read_bytes() != overview_jpeg(plan, blobs)


def test_a_report_folder_keeps_the_image_name_and_report_md_says_which_settings_made_it(tmp_path):
    import json

    import mosaic
    from conftest import make_photo

    photo = make_photo(tmp_path / "看板 1.png", size=(600, 400))
    report = mosaic.review(str(photo), "offline", grid="2x1", phases=["text"], out_dir=str(tmp_path / "out"),
                           second_look=False)
    folder = tmp_path / "out" / report.report_dir.rsplit("/", 1)[-1]
    assert folder.name.startswith("看板-1-"), folder.name
    markdown = (folder / "report.md").read_text()
    assert f"- Made by: `mosaic run '{photo.resolve()}' --model mosaic_offline/ocr-448 --grid 2x1 --phases text " \
           "--no-second-look`" in markdown  # the whole path: the command runs again from any folder
    assert "- Settings: no second look; structured output asked; temperature 0.0" in markdown
    settings = json.loads((folder / "report.json").read_text())["settings"]
    assert settings["grid"] == "2x1" and settings["phases"] == ["text"] and settings["second_look"] is None
    assert settings["memo"] is True and settings["model"] == "mosaic_offline/ocr-448"


def test_the_made_by_command_names_the_server_without_its_secrets():
    from mosaic.report import address_without_secrets

    assert address_without_secrets("http://user:sk-123@10.0.0.5:8080/v1?key=sk-9") == "http://10.0.0.5:8080/v1"
    assert address_without_secrets("http://a:1/v1, https://b/v1") == "http://a:1/v1,https://b/v1"
    assert address_without_secrets("http://127.0.0.1:11434") == "http://127.0.0.1:11434"


def test_reading_numbers_past_nine_render_as_the_picture_numbers_them():
    """Not an ordered list: Markdown renumbers one from its first item (and the UI showed 10+ as 0., 1.)."""
    from markdown_it import MarkdownIt

    from types import SimpleNamespace

    from mosaic.report import readings_section
    from mosaic.schema import Reading

    readings = [Reading(text=f"SIGN{n}", views=["r1c1"], tiles=["r1c1"], confirmed=n % 3 == 0) for n in range(1, 13)]
    report = SimpleNamespace(readings=readings, second_look=False, settings={})
    html = MarkdownIt().render("\n".join(readings_section(report)))
    assert "<ol" not in html
    for n in range(1, 13):
        assert f"<strong>{n}.</strong> &quot;SIGN{n}&quot;" in html, n
