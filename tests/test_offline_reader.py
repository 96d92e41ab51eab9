"""The built-in offline backend: what it reads, that seam crops catch text cut by a tile line, and a full run."""

import json
import pytest

from PIL import Image, ImageDraw, ImageFont

from mosaic.offline.reader import OfflineReader, blank_runs, characteristics, read_text, with_word_spaces, word_gaps
from mosaic.tiles import seam_box, tile_boxes

from conftest import run_cli

WORD = "QUIXBLORP"


def straddling_sign(path):
    img = Image.new("RGB", (1200, 800), (70, 90, 110))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=44)
    left, top, right, bottom = draw.textbbox((0, 0), WORD, font=font)
    x, y = 600 - (right - left) // 2, 380
    draw.rectangle((x - 16, y - 12, x + right - left + 16, y + bottom + 12), fill="white")
    draw.text((x - left, y), WORD, fill="black", font=font)
    img.save(path)
    return img


def squash(text):
    return "".join(text.split()).upper()


def test_text_cut_by_a_tile_line_reads_whole_only_in_the_seam_crop(tmp_path):
    img = straddling_sign(tmp_path / "sign.png")
    boxes = tile_boxes(1200, 800, 2, 1)
    tiles = [squash(" ".join(t for t, _, _ in read_text(img.crop(b), 448))) for b in boxes.values()]
    seam = squash(" ".join(t for t, _, _ in read_text(img.crop(seam_box(boxes[(0, 0)], boxes[(1, 0)])), 448)))
    assert all(WORD not in t for t in tiles)
    assert WORD in seam


@pytest.mark.slow  # a whole review on the offline reader (16 s): CI's lane
def test_full_run_on_the_offline_backend_keeps_the_seam_reading(tmp_path):
    straddling_sign(tmp_path / "sign.png")
    code, out = run_cli("run", str(tmp_path / "sign.png"), "--grid", "2x1", "--phases", "text", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["model"] == "mosaic_offline/ocr-448"
    assert WORD in squash(report["review"])
    assert any(r["text"] == WORD and any("|" in v for v in r["views"]) for r in report["readings"])


def test_answers_in_the_shapes_asked(tmp_path):
    import base64, io

    img = straddling_sign(tmp_path / "sign.png").crop((300, 0, 900, 800))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def ask(task, budget=448):
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": [
            {"type": "text", "text": f"Mosaic task: {task}\nquestion"}, {"type": "image_url", "image_url": {"url": url}}]}]
        return OfflineReader(budget).answer(msgs)

    assert WORD in squash(json.loads(ask("text"))["readings"][0]["text"])
    assert json.loads(ask("text", budget=48))["readings"] == []  # a harsher encoder reads nothing here
    assert "does not recognise objects" in json.loads(ask("subjects"))["notes"]
    assert "brightness" in json.loads(ask("characteristics"))["notes"]


def test_characteristics_are_measured():
    dark = characteristics(Image.new("RGB", (200, 200), (20, 20, 20)))
    bright = characteristics(Image.new("RGB", (200, 200), (230, 230, 230)))
    reddish = characteristics(Image.new("RGB", (200, 200), (200, 90, 80)))
    assert "dark" in dark and "bright" in bright and "red cast" in reddish and "soft or blurred" in dark



def test_blank_runs_are_the_gaps_between_inked_columns_not_the_margins():
    import numpy as np

    line = np.full((10, 20), 255, dtype=np.int16)
    for x in (2, 3, 6, 12, 13, 17):  # ink columns; margins 0-1 and 18-19 are not gaps
        line[4, x] = 0
    assert blank_runs(line, min_width=2) == [(4, 6), (7, 12), (14, 17)]
    assert blank_runs(line, min_width=4) == [(7, 12)]
    assert blank_runs(255 - line, min_width=4) == [(7, 12)]  # light text on a dark board
    assert blank_runs(np.full((5, 5), 9, dtype=np.int16), min_width=1) == []


def test_a_space_goes_back_only_where_a_gap_lies_between_two_letters_or_digits():
    centres = [1, 3, 5, 7, 12, 14]
    assert with_word_spaces("MainSt", centres, [(8, 11)]) == "Main St"
    assert with_word_spaces("MainSt", centres, []) == "MainSt"
    assert with_word_spaces("Main", centres, [(8, 11)]) == "Main"  # positions that do not match the text
    assert with_word_spaces("東京出口", [1, 3, 9, 11], [(5, 8)]) == "東京出口"  # CJK is not split
    assert with_word_spaces("AB-C", [1, 3, 9, 11], [(5, 8)]) == "AB-C"  # only between letters or digits


def test_the_offline_reader_keeps_the_spaces_between_words():
    """RapidOCR's recognizer drops the spaces of small Latin text; 'OPEN 24 HOURS' was reported as 'OPEN24HOURS'."""
    for text, size in (("OPEN 24 HOURS", 14), ("Main St 42", 18), ("Platform 3 Exit", 13), ("Willkommen", 16)):
        img = Image.new("RGB", (600, 120), "white")
        ImageDraw.Draw(img).text((20, 30), text, font=ImageFont.load_default(size=size), fill="black")
        assert [t for t, _, _ in read_text(img, 600)] == [text]


def test_a_word_gap_is_wide_for_its_line_and_its_font_and_tiny_lines_are_left_as_read():
    letters = [(0, 2), (4, 5), (7, 9), (11, 12)]
    assert word_gaps([*letters, (14, 20)], height=14) == [(14, 20)]
    assert word_gaps([*letters, (14, 17)], height=14) == []  # under 0.3 of the line's height
    spaced_font = [(0, 3), (5, 8), (10, 13), (15, 18), (20, 24)]  # letters set 3 px apart: 4 px is no space
    assert word_gaps(spaced_font, height=14) == []
    # the bundled sample's AMEBLYHU, 10 px tall at the reader's size: a 4-px gap after its L is not a space
    sample = [(6, 8), (9, 10), (11, 12), (13, 15), (16, 17), (18, 20), (21, 22), (24, 25), (26, 30), (33, 35)]
    assert word_gaps(sample, height=10) == []
