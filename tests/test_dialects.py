"""Answers in each small VLM family's dialect read to the right place: think blocks, box conventions and keys, loops
and cut-offs, server limits (mosaic.dialects, mosaic.profiles, their use in pipeline and llm)."""

import json

import pytest
from PIL import Image

from mosaic import dialects, pipeline
from mosaic.backend import Backend
from mosaic.dialects import crop_fractions, smart_resize, strip_thinking
from mosaic.errors import BackendError
from mosaic.llm import call_model
from mosaic.memo import BlobStore, Memo
from testkit.dialects import DIALECTS, INVENTED, OVERFLOW_BODY, model_for, speak
from mosaic.offline.server import Fault, ModelServer
from mosaic.profiles import BOX_CONVENTIONS, DEFAULT, Profile, profile_for, table_profile, unknown_model_line
from mosaic.schema import ModelCall, ModelReply, View

# --- thinking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, answer, thought", [
    ('<think>maybe "EXIT"</think>\n{"readings": []}', '{"readings": []}', '<think>maybe "EXIT"</think>'),
    ('maybe "EXIT"\n</think>\n\n{"readings": []}', '{"readings": []}', 'maybe "EXIT"\n</think>'),
    ('{"readings": []} <think>and then', '{"readings": []}', '<think>and then'),
    ('<THINKING>a</THINKING>b<think>c</think>d', 'bd', '<THINKING>a</THINKING><think>c</think>'),
    ('<|begin_of_box|>{"a": 1}<|end_of_box|>', '{"a": 1}', ''),
    ('plain answer', 'plain answer', ''),
])
def test_strip_thinking(text, answer, thought):
    assert strip_thinking(text) == (answer, thought)


# --- boxes ---------------------------------------------------------------------------------------------------

def test_smart_resize_follows_qwen():
    assert smart_resize(1000, 700) == (1008, 700)
    assert smart_resize(1280, 853) == (1288, 840)
    assert smart_resize(1600, 1000, max_pixels=1280 * 28 * 28) == (1260, 784)
    assert smart_resize(20, 20) == (56, 56)  # raised to min_pixels


def P(box):  # noqa: N802
    return Profile(family="t", box=box)


@pytest.mark.parametrize("value, profile, expected", [
    ([504, 350, 1008, 700], P("qwen-pixels"), (0.5, 0.5, 1.0, 1.0)),  # 1000×700 sent: Qwen saw 1008×700
    ([500, 350, 1100, 800], P("qwen-pixels"), (500 / 1008, 0.5, 1.0, 1.0)),  # past the edge: clamped
    ([500, 350, 1000, 700], P("pixels"), (0.5, 0.5, 1.0, 1.0)),
    ([100, 200, 300, 400], P("thousandths"), (0.1, 0.2, 0.3, 0.4)),
    ([200, 100, 400, 300], P("thousandths-yx"), (0.1, 0.2, 0.3, 0.4)),
    ([0.1, 0.2, 0.3, 0.4], P("fractions"), (0.1, 0.2, 0.3, 0.4)),
    ("<loc0256><loc0512><loc0768><loc1023>", P("auto"), (0.5, 0.25, 1023 / 1024, 0.75)),
    ([[100, 200, 300, 400]], P("thousandths"), (0.1, 0.2, 0.3, 0.4)),  # a list of one box
    ("[100, 200, 300, 400]", P("thousandths"), (0.1, 0.2, 0.3, 0.4)),  # GLM's box, tokens removed
    ([300, 400, 100, 200], P("thousandths"), (0.1, 0.2, 0.3, 0.4)),  # corners swapped
    ([0.1, 0.2, 0.3, 0.4], P("auto"), (0.1, 0.2, 0.3, 0.4)),  # unknown model: all ≤ 1 are fractions
    ([100, 200, 300, 400], P("auto"), (0.1, 0.2, 0.3, 0.4)),
    ([250, 350, 1000, 1400], P("auto"), (0.25, 0.25, 1.0, 1.0)),  # past 1000: pixels of the 1000×1400 crop
    ([100, 200, 300, 400], P("words"), (0.1, 0.2, 0.3, 0.4)),  # a box after all: guessed
])
def test_crop_fractions_per_convention(value, profile, expected):
    size = (1000, 1400) if expected == (0.25, 0.25, 1.0, 1.0) else (1000, 700)
    assert crop_fractions(value, profile, size) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, [1, 2, 3], "no box", [1, 2, "x", 4], [5, 5, 5, 9], [1200, 0, 1500, 10]])
def test_no_box_from_what_is_not_one(value):
    assert crop_fractions(value, P("thousandths"), (1000, 700)) is None


def test_pixel_boxes_need_the_sent_size():
    assert crop_fractions([10, 10, 20, 20], P("pixels"), None) is None


def test_box_keys_of_each_family():
    for key in ("box", "bbox_2d", "bbox", "box_2d"):
        assert dialects.box_of({"text": "A", key: [1, 2, 3, 4]}) == [1, 2, 3, 4]
    assert dialects.box_of({"text": "A"}) is None


def test_paligemma_tokens_are_readings():
    answer = "<loc0102><loc0204><loc0307><loc0409> EXIT ; <loc0512><loc0512><loc0716><loc0614> 出口"
    assert dialects.loc_readings(answer) == [
        {"text": "EXIT", "box": "<loc0102><loc0204><loc0307><loc0409>"},
        {"text": "出口", "box": "<loc0512><loc0512><loc0716><loc0614>"}]


# --- loops and cut-offs --------------------------------------------------------------------------------------

ITEM = '{"text": "EXIT", "box": [1, 2, 3, 4]}'


def test_a_loop_is_found_and_its_whole_items_kept():
    looped = '{"readings": [{"text": "OPEN", "box": [5, 6, 7, 8]}, ' + ", ".join([ITEM] * 60)
    looped = looped[:1500]
    assert dialects.looped(looped) and dialects.cut_off(looped) and dialects.broken(looped)
    assert dialects.salvaged(looped) == {"readings": [{"text": "OPEN", "box": [5, 6, 7, 8]},
                                                      {"text": "EXIT", "box": [1, 2, 3, 4]}]}


def test_a_cut_off_answer_keeps_its_complete_items_also_when_the_server_said_stop():
    cut = '```json\n{"readings": [' + ITEM + ', {"text": "OPE'
    assert dialects.cut_off(cut) and not dialects.looped(cut)
    assert dialects.salvaged(cut) == {"readings": [json.loads(ITEM)]}


@pytest.mark.parametrize("text", ['{"readings": [' + ITEM + ', ' + ITEM + ']}', "Prose with no JSON at all.",
                                  '```json\n{"notes": "a } in a string"}\n```', "- EXIT\n" * 3])
def test_a_whole_answer_is_not_broken(text):
    assert not dialects.broken(text)


# --- profiles ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, family, box", [
    ("ollama_chat/qwen2.5vl:7b", "qwen2.5-vl", "qwen-pixels"), ("openai/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", "qwen-pixels"),
    ("ollama_chat/qwen3-vl:8b", "qwen3-vl", "thousandths"), ("openai/InternVL3-8B", "internvl", "thousandths"),
    ("ollama_chat/minicpm-v:8b", "minicpm-v", "thousandths"), ("ollama_chat/gemma3:4b", "gemma3", "words"),
    ("openai/glm-4.1v-9b-thinking", "glm-4v", "thousandths"), ("openai/GLM-4.5V", "glm-4v", "thousandths"),
    ("ollama_chat/llava:7b", "llava", "words"), ("ollama_chat/moondream", "moondream", "words"),
    ("openai/SmolVLM-500M", "smolvlm", "words"), ("openai/paligemma2-3b", "paligemma", "loc-yx"),
    ("openai/Kimi-VL-A3B-Thinking", "kimi-vl", "fractions"), ("gemini/gemini-2.0-flash", "gemini", "thousandths-yx"),
    ("openai/my-own-vlm", "unknown", "auto"),
])
def test_families_from_the_model_string(model, family, box):
    profile = table_profile(model)
    assert (profile.family, profile.box) == (family, box)
    assert profile.box in BOX_CONVENTIONS


def test_profile_details_and_overrides(tmp_path):
    assert table_profile("ollama_chat/qwen2.5vl:7b").resize_max_pixels == 1280 * 28 * 28
    assert table_profile("openai/qwen2.5-vl-7b").resize_max_pixels == 16384 * 28 * 28
    assert table_profile("openai/Kimi-VL-A3B-Thinking").thinking and not table_profile("openai/kimi-vl-a3b").thinking
    assert not table_profile("ollama_chat/gemma3:4b").grounds
    assert profile_for("openai/x", family="gemini").box == "thousandths-yx"
    assert profile_for("openai/qwen2.5-vl", box="fractions").box == "fractions"
    with pytest.raises(ValueError, match="unknown model profile 'nope'"):
        profile_for("openai/x", family="nope")
    with pytest.raises(ValueError, match="unknown box convention"):
        profile_for("openai/x", box="inches")
    assert unknown_model_line("openai/my-vlm", DEFAULT).count("mosaic probe --model openai/my-vlm") == 1
    assert unknown_model_line("openai/qwen3-vl", table_profile("openai/qwen3-vl")) is None


# --- a dialect's answer, read into the image -----------------------------------------------------------------

VIEW_BOX = (2000, 1000, 3000, 1700)  # a 1000×700 crop of the image, sent at 500×350
TILES = {"r1c1": (0, 0, 2500, 2000), "r1c2": (2500, 0, 5000, 2000)}
OBEDIENT = json.dumps({"readings": [{"text": "EXIT", "unclear": False, "box": [100, 200, 300, 400]},
                                    {"text": "出口", "unclear": False, "box": [600, 500, 900, 800]}], "notes": "two signs"})
EXPECTED = {"EXIT": (2100, 1140, 2300, 1280), "出口": (2600, 1350, 2900, 1560)}


def observed(answer: str, dialect: str) -> dict:
    view = View(id="r1c1", kind="tile", cells=[(0, 0)], box=VIEW_BOX, image_sha256="0" * 64, sent_px=(500, 350))
    reply = ModelReply(content=strip_thinking(answer)[0], profile=table_profile("openai/" + model_for(dialect)))
    return {r.text: r for r in pipeline.parse_observation(view, "text", reply, TILES).readings}


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d != "words"])
def test_each_dialect_reads_to_the_right_place(dialect):
    readings = observed(speak(OBEDIENT, dialect, (500, 350)), dialect)
    assert set(readings) == set(EXPECTED) and INVENTED not in readings
    tolerance = 0 if dialect in ("json", "thousandths", "thousandths-yx", "fractions", "glm", "think") else 3
    for text, box in EXPECTED.items():
        assert readings[text].box == pytest.approx(box, abs=tolerance), dialect
    assert readings["EXIT"].tiles == ["r1c1"] and readings["出口"].tiles == ["r1c2"]


def test_places_in_words_still_place_a_reading():
    readings = observed(speak(OBEDIENT, "words", (500, 350)), "words")
    assert readings["EXIT"].box == (2000, 1000, 2333, 1233)  # the top-left third of the crop
    assert readings["出口"].box == (2667, 1233, 3000, 1467)  # the middle right


def test_qwen_pixels_of_an_ollama_server_resized_input():
    # a 1600×1000 crop: Ollama's qwen2.5vl saw it at 1260×784
    view = View(id="r1c1", kind="tile", cells=[(0, 0)], box=(0, 0, 1600, 1000), image_sha256="0" * 64,
                sent_px=(1600, 1000))
    reply = ModelReply(content=json.dumps({"readings": [{"text": "EXIT", "bbox_2d": [630, 392, 1260, 784]}]}),
                       profile=table_profile("ollama_chat/qwen2.5vl:7b"))
    reading = pipeline.parse_observation(view, "text", reply, {"r1c1": (0, 0, 1600, 1000)}).readings[0]
    assert reading.box == (800, 500, 1600, 1000)


def test_a_readings_frame_marks_are_not_its_text():
    """A sign's frame read as a bar or a backslash at the ends of a line ('\\SUJA |', as Tesseract reads a board)."""
    answer = json.dumps({"readings": [{"text": "\\SUJA |"}, {"text": "A | B"}, {"text": " _|_ "}, "林友 |"]})
    assert list(observed(answer, "json")) == ["SUJA", "A | B", "林友"]


# --- through the call: thinking aside, loops retried once, the context overflow named --------------------------

def one_call(server: ModelServer, tmp_path, model: str, style: str = "openai") -> tuple[ModelCall, BlobStore]:
    blobs = BlobStore(tmp_path / "blobs")
    from mosaic.images import encode_view

    sha = blobs.put(encode_view(Image.new("RGB", (500, 350), "white")))
    name, base = ("openai/" + model, server.openai_base) if style == "openai" else ("ollama_chat/" + model, server.url)
    backend = Backend.create(name, base, num_ctx=4096)
    return pipeline.model_call(backend, "Mosaic task: text\nRead.", [sha], "text"), blobs


def test_a_think_block_is_kept_aside(tmp_path):
    with ModelServer(lambda m, model: speak(OBEDIENT, "think-unopened", (500, 350))) as server:
        call, blobs = one_call(server, tmp_path, "qwen3-vl-thinking")
        memo = Memo(tmp_path / "memo")
        reply = call_model(call, blobs, memo)
        assert json.loads(reply.content) == json.loads(OBEDIENT) and INVENTED in reply.thinking
        assert call_model(call, blobs, memo).thinking == reply.thinking  # also from the memo


def test_a_looped_answer_is_retried_once_with_a_lower_limit_then_salvaged(tmp_path):
    with ModelServer(lambda m, model: speak(OBEDIENT, "loop", (500, 350))) as server:
        call, blobs = one_call(server, tmp_path, "internvl3-8b")
        reply = call_model(call, blobs, None)
        assert reply.retried and len(server.chat_requests()) == 2
        view = View(id="r1c1", kind="tile", cells=[(0, 0)], box=VIEW_BOX, image_sha256="0" * 64, sent_px=(500, 350))
        readings = pipeline.parse_observation(view, "text", reply, TILES).readings
        assert [r.text for r in readings] == ["EXIT", "出口"]


def test_a_whole_answer_is_asked_once(tmp_path):
    with ModelServer(lambda m, model: OBEDIENT) as server:
        call, blobs = one_call(server, tmp_path, "internvl3-8b")
        assert not call_model(call, blobs, None).retried and len(server.chat_requests()) == 1


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_ollamas_context_overflow_is_one_line_naming_what_to_change(tmp_path, style):
    with ModelServer(lambda m, model: OBEDIENT) as server:
        server.add_fault(Fault(status=400, times=-1, body=OVERFLOW_BODY))
        call, blobs = one_call(server, tmp_path, "qwen2.5vl", style)
        with pytest.raises(BackendError) as caught:
            call_model(call, blobs, None, timeout_s=10)
    message = str(caught.value)
    assert "\n" not in message and "num_ctx" in message and "--budget" in message and not caught.value.retryable
    assert ("now 4096" in message) == (style == "ollama")


# --- what is sent: no crop under the model's minimum, no image over its maximum --------------------------------

def test_crops_grow_to_the_minimum_and_shrink_to_the_maximum_pixels(tmp_path):
    image = Image.new("RGB", (2000, 1000), "white")
    blobs = BlobStore(tmp_path / "blobs")
    thin = pipeline._view(blobs, image, "r1c1", "tile", [(0, 0)], (1000, 0, 1010, 1000), ["text"], 640,
                          limits=(32, None))
    assert thin.box == (980, 0, 1030, 1000) and thin.sent_px == (32, 640)  # 50 px wide, shrunk by 0.64: 32 px
    big = pipeline._view(blobs, image, "r1c1", "tile", [(0, 0)], (0, 0, 2000, 1000), ["text"], 2000,
                         limits=(32, 1_000_000))
    assert big.sent_px[0] * big.sent_px[1] <= 1_000_000 and big.sent_px == (1414, 707)
    assert pipeline.grown_to_side((0, 0, 10, 10), 32, 1.0, (20, 500)) == (0, 0, 20, 32)  # no larger than the image
