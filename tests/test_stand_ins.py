"""The small-VLM stand-ins (bench/stand_ins.py), through Mosaic's call seam, on a drawn scene with three signs."""

from __future__ import annotations

import json
import urllib.request

import pytest
from PIL import Image, ImageDraw, ImageFont

from testkit.stand_ins import StandIn, ceiling, completion, join_cjk, parse_tsv, stand_in_for
from mosaic import prompts
from mosaic.images import encode_view
from mosaic.llm import build_messages
from mosaic.memo import BlobStore
from mosaic.offline.server import ModelServer
from mosaic.pipeline import parse_json_object
from mosaic.schema import ModelCall

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
SIGNS = {"BRAVENTU": (80, 90), "KOLDERAM": (450, 370), "0312-5567": (780, 640)}  # text: top-left corner


def draw_scene() -> tuple[Image.Image, dict[str, tuple[int, int, int, int]]]:
    image = Image.new("RGB", (1200, 800), (120, 128, 136))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 500, 1200, 800), fill=(90, 90, 95))  # a street under the buildings
    try:
        font = ImageFont.truetype(FONT, 56)
    except OSError:
        font = ImageFont.load_default(size=56)
    boxes = {}
    for text, (x, y) in SIGNS.items():
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        draw.rectangle((x0 - 20, y0 - 16, x1 + 20, y1 + 16), fill=(245, 240, 225))
        draw.text((x, y), text, font=font, fill=(20, 20, 30))
        boxes[text] = (x0, y0, x1, y1)
    return image, boxes


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    image, boxes = draw_scene()
    blobs = BlobStore(tmp_path_factory.mktemp("blobs"))
    return image, boxes, blobs, blobs.put(encode_view(image))


def view(scene, phase: str = "text", where: str = "This crop is tile r1c1 of a 1×1 grid."):
    """A call and its messages as Mosaic builds them."""
    _, _, blobs, sha = scene
    call = ModelCall(model="openai/stand-in", system=prompts.SYSTEM, prompt=prompts.view_prompt(phase, "", where),
                     images=[sha])
    return call, build_messages(call, blobs)


def answer(spec: str, call, messages) -> str:
    return stand_in_for(spec)(call, messages).content


def texts_of(content: str) -> list[str]:
    return [r["text"] for r in json.loads(content)["readings"]]


def test_json_style_gives_bare_json_with_every_sign(scene):
    content = answer("reader=rapidocr,style=json", *view(scene))
    assert set(texts_of(content)) >= set(SIGNS)


def test_fenced_style_wraps_the_same_json_in_a_fence_after_a_sentence(scene):
    call, messages = view(scene)
    content = answer("reader=rapidocr,style=fenced", call, messages)
    assert not content.startswith("{") and "```json\n" in content
    assert parse_json_object(content) == json.loads(answer("reader=rapidocr,style=json", call, messages))


def test_prose_style_has_no_json_but_quotes_every_sign(scene):
    for where in ("tile r1c1", "tile r1c2", "tile r2c1"):  # different calls: different phrasings
        content = answer("reader=rapidocr,style=prose,positions=words", *view(scene, where=where))
        assert parse_json_object(content) is None
        assert all(f'"{text}"' in content for text in SIGNS), content


def test_invent_adds_one_reading_that_is_not_in_the_image(scene):
    call, messages = view(scene)
    honest = texts_of(answer("reader=rapidocr", call, messages))
    inventing = texts_of(answer("reader=rapidocr,invent=1.0", call, messages))
    extra = [t for t in inventing if t not in honest]
    assert len(inventing) == len(honest) + 1 and len(extra) == 1
    assert extra[0] not in SIGNS


def test_misread_changes_one_character_of_every_reading(scene):
    call, messages = view(scene)
    honest = texts_of(answer("reader=rapidocr", call, messages))
    misread = texts_of(answer("reader=rapidocr,misread=1.0", call, messages))
    assert len(misread) == len(honest)
    for right, wrong in zip(honest, misread):
        assert len(right) == len(wrong) and sum(a != b for a, b in zip(right, wrong)) == 1, (right, wrong)


def test_the_same_call_gets_the_same_answer_and_the_seed_changes_it(scene):
    spec = "reader=rapidocr,style=mixed,invent=0.5,misread=0.5,seed={}"
    calls = [view(scene, where=f"tile r1c{i}") for i in range(1, 5)]

    def answers(stand_in: StandIn) -> list[str]:
        return [stand_in(call, messages).content for call, messages in calls]

    first = answers(StandIn.from_spec(spec.format(0)))
    again = answers(StandIn.from_spec(spec.format(0)))  # a new stand-in: nothing cached
    other_seed = answers(StandIn.from_spec(spec.format(1)))
    assert first == again
    assert first != other_seed


def test_misread_by_text_misreads_a_sign_alike_in_every_call_and_seed(scene):
    """A family trait: stand-ins of one reader misread the same signs the same way, whatever else they draw."""
    spec = "reader=rapidocr,misread=0.5,misread_by=text,seed={}"
    texts = [sorted(texts_of(answer(spec.format(seed), *view(scene, where=f"tile r1c{i}"))))
             for seed in (0, 1) for i in (1, 2)]
    assert texts[0] == texts[1] == texts[2] == texts[3]
    assert set(texts[0]) != set(SIGNS)  # some misread (half of them by chance; the draws are fixed by the text)
    by_call = {tuple(sorted(texts_of(answer(f"reader=rapidocr,misread=0.5,seed={seed}", *view(scene)))))
               for seed in range(4)}
    assert len(by_call) > 1  # drawn per call, seeds differ


def test_boxes_are_in_thousandths_of_the_crop_around_each_sign(scene):
    image, boxes, _, _ = scene
    readings = json.loads(answer("reader=rapidocr,positions=box", *view(scene)))["readings"]
    for text, (x0, y0, x1, y1) in boxes.items():
        box = next(r["box"] for r in readings if r["text"] == text)
        cx, cy = (x0 + x1) / 2 / image.width * 1000, (y0 + y1) / 2 / image.height * 1000
        assert all(isinstance(v, int) and 0 <= v <= 1000 for v in box)
        assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3], (text, box, cx, cy)


def test_words_positions_say_where_each_sign_is(scene):
    readings = json.loads(answer("reader=rapidocr,positions=words", *view(scene)))["readings"]
    where = {r["text"]: r["where"] for r in readings}
    assert where["BRAVENTU"] == "top left" and where["KOLDERAM"] == "middle" and where["0312-5567"] == "bottom right"
    assert all("box" not in r for r in readings)


def synthesis_call(texts: list[str]) -> tuple[ModelCall, list[dict]]:
    observations = [{"view": "r1c1", "phase": "text", "readings": [{"text": t, "unclear": False} for t in texts]}]
    call = ModelCall(model="openai/stand-in", system=prompts.SYSTEM,
                     prompt=prompts.tile_synthesis_prompt("A street.", "r1c1", (0, 0, 600, 400), observations))
    return call, [{"role": "system", "content": call.system}, {"role": "user", "content": call.prompt}]


def test_drop_leaves_readings_out_of_the_tile_summary():
    call, messages = synthesis_call(list(SIGNS))
    kept = json.loads(answer("reader=rapidocr,drop=0", call, messages))["summary"]
    dropped = json.loads(answer("reader=rapidocr,drop=1.0", call, messages))["summary"]
    assert all(text in kept for text in SIGNS)
    assert not any(text in dropped for text in SIGNS)


def test_drop_leaves_readings_out_of_the_final_review():
    reports = [{"tile": "r1c1", "readings": [{"text": "BRAVENTU"}]},
               {"tile": "r2c2", "readings": [{"text": "0312-5567"}]}]
    call = ModelCall(model="openai/stand-in", system=prompts.SYSTEM,
                     prompt=prompts.final_prompt("A street.", 2, 2, reports))
    messages = [{"role": "system", "content": call.system}, {"role": "user", "content": call.prompt}]
    full = answer("reader=rapidocr", call, messages)
    assert '- "BRAVENTU" in r1c1' in full and '- "0312-5567" in r2c2' in full
    assert "BRAVENTU" not in answer("reader=rapidocr,drop=1.0", call, messages)


def test_orientation_names_at_most_two_readings_in_three_sentences(scene):
    _, _, blobs, sha = scene
    call = ModelCall(model="openai/stand-in", system=prompts.SYSTEM, prompt=prompts.orientation_prompt(2, 2),
                     images=[sha])
    content = answer("reader=rapidocr", call, build_messages(call, blobs))
    assert 1 <= sum(f'"{t}"' in content for t in SIGNS) <= 2
    assert content.count(". ") == 2 and content.endswith(".")


def test_subjects_list_a_sign_board_per_line_and_buildings(scene):
    items = json.loads(answer("reader=rapidocr", *view(scene, phase="subjects")))["items"]
    assert items.count("a sign board (top left)") == 1 and items[-1] == "buildings" and len(items) == len(SIGNS) + 1


def test_tesseract_reads_a_sign(scene):
    texts = texts_of(answer("reader=tesseract", *view(scene)))
    assert set(texts) & set(SIGNS), texts


def test_tesseract_lines_join_cjk_and_drop_texture():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = ["5\t1\t1\t1\t1\t1\t10\t10\t20\t20\t91\t京", "5\t1\t1\t1\t1\t2\t32\t10\t20\t20\t89\t土",
            "5\t1\t2\t1\t1\t1\t100\t50\t40\t20\t95\t88", "5\t1\t3\t1\t1\t1\t100\t80\t40\t20\t30\tHOTEL"]
    lines = parse_tsv("\n".join([header, *rows]), 200, 100)
    assert [(text, round(conf, 2), box) for text, conf, box in lines] == [("京土", 0.9, (0.05, 0.1, 0.26, 0.3))]
    assert join_cjk("CAFE 京 土 日") == "CAFE 京土日"


def test_ceiling_reads_each_sign_cut_out_at_full_resolution(scene):
    image, boxes, _, _ = scene
    found = ceiling(image, list(boxes.values()), "rapidocr")
    assert [text in read for text, read in zip(boxes, found)] == [True] * len(boxes)


def test_a_bad_spec_names_its_key():
    with pytest.raises(ValueError, match="'colour'"):
        StandIn.from_spec("reader=rapidocr,colour=red")
    with pytest.raises(ValueError, match="invent"):
        StandIn.from_spec("invent=2")
    with pytest.raises(ValueError, match="style"):
        StandIn.from_spec("style=poetry")
    assert StandIn.from_spec(StandIn.from_spec("reader=tesseract,drop=0.25,seed=3").spec) == StandIn(
        reader="tesseract", drop=0.25, seed=3)


def test_the_factory_reads_its_spec_from_the_environment(monkeypatch):
    monkeypatch.setenv("MOSAIC_STAND_IN", "reader=rapidocr,style=prose,misread=0.1")
    complete = completion(None)
    assert complete.style == "prose" and complete.misread == 0.1 and completion(None) is complete


def test_served_over_http_it_answers_the_same_request_the_same_way(scene):
    _, messages = view(scene)
    stand_in = StandIn.from_spec("reader=rapidocr,style=mixed,invent=0.5")
    body = json.dumps({"model": "stand-in", "messages": messages}).encode()
    with ModelServer(stand_in.answer_http) as server:
        replies = []
        for _ in range(2):
            request = urllib.request.Request(server.openai_base + "/chat/completions", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                replies.append(json.load(response)["choices"][0]["message"]["content"])
    assert replies[0] == replies[1] and "BRAVENTU" in replies[0]
