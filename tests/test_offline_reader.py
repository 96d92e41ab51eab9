"""The built-in offline backend: what it reads, that seam crops catch text cut by a tile line, and a full run."""

import json

from PIL import Image, ImageDraw, ImageFont

from mosaic.offline.reader import OfflineReader, characteristics, read_text
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

