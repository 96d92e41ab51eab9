"""`mosaic run` against a loopback server answering as Qwen2.5-VL does (pixel boxes of its resized input): with no
setting, the readings land in the right tiles at the right place; a wrong --box-convention misplaces them."""

import json

from PIL import Image, ImageDraw, ImageFont

from testkit.dialects import in_dialect
from mosaic.offline.reader import OfflineReader
from mosaic.offline.server import ModelServer

from conftest import run_cli

import pytest  # noqa: E402

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
SIGNS = {"HOTEL": (120, 140), "BAKERY": (1020, 700)}  # text: its top-left corner in the 1600×1000 image


def signs_photo(path):
    image = Image.new("RGB", (1600, 1000), (200, 205, 210))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 90)
    boxes = {}
    for text, (x, y) in SIGNS.items():
        boxes[text] = draw.textbbox((x, y), text, font=font)
        draw.rectangle((boxes[text][0] - 20, boxes[text][1] - 20, boxes[text][2] + 20, boxes[text][3] + 20),
                       fill="white")
        draw.text((x, y), text, fill="black", font=font)
    image.save(path)
    return boxes


def test_a_qwen_pixel_run_needs_no_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_BOX_CONVENTION", "")  # a run hands --box-convention to its flow so: undone after
    boxes = signs_photo(tmp_path / "signs.png")
    reader = OfflineReader(896)
    with ModelServer(in_dialect(lambda messages, model: reader.answer(messages), "qwen-pixels")) as server:
        args = ["run", str(tmp_path / "signs.png"), "--model", "openai/qwen2.5-vl-7b", "--api-base",
                server.openai_base, "--grid", "2x2", "--phases", "text", "--json"]
        code, out = run_cli(*args)
        assert code == 0
        readings = {r["text"]: r for r in json.loads(out)["readings"]}
        assert readings["HOTEL"]["tiles"] == ["r1c1"] and readings["BAKERY"]["tiles"] == ["r2c2"]
        for text, box in boxes.items():
            assert all(abs(a - b) <= 30 for a, b in zip(readings[text]["box"], box)), (text, readings[text]["box"])

        def views_asked():
            return sum("Mosaic task: text" in r.text for r in server.chat_requests())

        asked = views_asked()
        code, out = run_cli(*args, "--box-convention", "thousandths")  # the memo's answers, read the wrong way
        assert code == 0 and views_asked() == asked
        misread = {r["text"]: r for r in json.loads(out)["readings"]}
        assert misread["BAKERY"]["box"] != readings["BAKERY"]["box"]
