"""Comparing models on one image: alignment of readings (pure), and `mosaic compare` against two loopback servers."""

from __future__ import annotations

import pytest

from mosaic.compare import align, counts_of, labels_for, model_family, near, server_groups
from mosaic.schema import Reading


def r(text, box=None, tiles=("r1c1",), confirmed=None) -> Reading:
    return Reading(text=text, box=box, tiles=list(tiles), confirmed=confirmed, views=list(tiles))


def row_with(rows, label, text):
    return next(row for row in rows if row.by_model.get(label) == text)


def test_one_sign_read_alike_by_two_models_is_exact_and_confirmed_by_them():
    rows = align({"a": [r("HOTEL", (100, 100, 200, 130))], "b": [r("Hotel", (104, 98, 205, 128))]})
    assert len(rows) == 1
    row = rows[0]
    assert row.agreement == "exact" and row.by_model == {"a": "HOTEL", "b": "Hotel"}
    assert row.confirmed and row.agreed == ["a", "b"] and row.confirmed_in_views == []
    assert not row.hard


def test_a_character_apart_at_one_place_is_near_a_hard_spot_and_not_confirmed_on_a_tie():
    rows = align({"a": [r("橋本", (10, 10, 60, 40), confirmed=True)], "b": [r("桶本", (12, 11, 61, 41))]})
    assert [row.agreement for row in rows] == ["near"]
    assert rows[0].hard and not rows[0].confirmed  # one against one: the models disagree
    assert rows[0].variants == ["桶本"] and rows[0].text == "橋本"  # the model whose own views confirmed it leads


def test_different_texts_at_one_place_are_one_row_marked_different():
    rows = align({"a": [r("橋本", (10, 10, 60, 40))], "b": [r("桶本", (10, 10, 60, 40))],
                  "c": [r("楠木", (11, 9, 62, 40))]})
    assert len(rows) == 1 and rows[0].agreement == "different"
    assert rows[0].by_model == {"a": "橋本", "b": "桶本", "c": "楠木"}


def test_two_of_three_agreeing_confirm_even_where_the_third_differs():
    rows = align({"a": [r("OPEN", (10, 10, 60, 40))], "b": [r("OPEN", (10, 10, 60, 40))],
                  "c": [r("SALE", (10, 10, 60, 40))]})
    assert rows[0].agreement == "different" and rows[0].confirmed and rows[0].agreed == ["a", "b"]


def test_readings_elsewhere_stay_apart_and_one_model_alone_is_single():
    rows = align({"a": [r("BAKERY", (10, 10, 100, 40)), r("PHARMACY", (500, 500, 700, 540))],
                  "b": [r("BAKERY", (12, 10, 100, 40))]})
    assert len(rows) == 2
    single = row_with(rows, "a", "PHARMACY")
    assert single.agreement == "single" and single.by_model["b"] is None and not single.confirmed
    assert rows[0].agreement == "single"  # hard spots first, then singles, then agreement
    assert counts_of(rows) | {} == {"readings": 2, "hard_spots": 0, "exact": 1, "near": 0, "different": 0,
                                    "single": 1, "confirmed": 1, "confirmed_by_models_only": 1,
                                    "agreed_within_one_family": 0}


def test_a_single_reading_confirmed_in_its_own_views_stays_confirmed():
    rows = align({"a": [r("EXIT", (10, 10, 60, 40), confirmed=True)], "b": []})
    assert rows[0].agreement == "single" and rows[0].confirmed and rows[0].confirmed_in_views == ["a"]


def test_a_sign_one_model_read_in_two_fragments_is_joined_left_to_right():
    rows = align({"a": [r("24H", (120, 10, 160, 40)), r("OPEN", (10, 10, 100, 40))],
                  "b": [r("OPEN 24H", (8, 8, 162, 42))]})
    assert len(rows) == 1 and rows[0].by_model["a"] == "OPEN 24H" and rows[0].agreement == "exact"


def test_without_boxes_texts_align_by_tile_and_only_when_near():
    rows = align({"a": [r("CAFE", tiles=["r1c2"]), r("BOOKS", tiles=["r1c2"])],
                  "b": [r("CAFE", tiles=["r1c2"]), r("TAXI", tiles=["r1c2"])]})
    agreements = sorted(row.agreement for row in rows)
    assert agreements == ["exact", "single", "single"]  # BOOKS and TAXI share a tile, not a sign
    assert row_with(rows, "a", "CAFE").by_model == {"a": "CAFE", "b": "CAFE"}


def test_same_family_agreement_is_flagged_weaker():
    qwen_a, qwen_b, gemma = "ollama_chat/qwen2.5vl:3b", "openai/Qwen/Qwen2.5-VL-7B-Instruct", "ollama_chat/gemma3:4b"
    families = {m: model_family(m) for m in (qwen_a, qwen_b, gemma)}
    assert families == {qwen_a: "qwen", qwen_b: "qwen", gemma: "gemma"}
    same = align({qwen_a: [r("TAXI", (1, 1, 50, 20))], qwen_b: [r("TAXI", (1, 1, 50, 20))]}, families)
    apart = align({qwen_a: [r("TAXI", (1, 1, 50, 20))], gemma: [r("TAXI", (1, 1, 50, 20))]}, families)
    assert same[0].same_family and same[0].confirmed
    assert not apart[0].same_family


@pytest.mark.parametrize("model, family", [
    ("ollama_chat/llava:7b", "llava"), ("ollama_chat/llama3.2-vision:11b", "llama"), ("openai/minicpm-v", "minicpm"),
    ("ollama/paligemma2", "gemma"), ("openai/stand-in-tesseract", "stand-in-tesseract"),
    ("openai/my-reader:2", "my-reader"),
])
def test_model_family(model, family):
    assert model_family(model) == family


def test_near():
    assert near("橋本", "桶本") and near("open", "open24h") and near("hotel", "hotei")
    assert not near("橋本", "楠木") and not near("a", "b") and not near("bakery", "pharmacy")


def test_labels_name_one_model_on_two_servers_apart():
    assert labels_for([("m", "http://a"), ("n", None)]) == ["m", "n"]
    assert labels_for([("m", "http://a"), ("m", "http://b")]) == ["m@http://a", "m@http://b"]


def test_models_on_one_server_are_one_group():
    from mosaic.backend import Backend

    backends = [Backend.create("openai/a", "http://127.0.0.1:1/v1"), Backend.create("openai/b", "http://127.0.0.1:2/v1"),
                Backend.create("openai/c", "http://127.0.0.1:1/v1")]
    assert server_groups(backends) == [[0, 2], [1]]


def test_a_vague_box_round_several_signs_aligns_only_what_reads_alike():
    third = (0, 0, 900, 300)  # "top left" of a crop: a box in words
    rows = align({"a": [r("BAKERY", (10, 10, 100, 40)), r("TAXI", (300, 100, 380, 130))],
                  "b": [r("BAKERV", third)]})
    assert row_with(rows, "a", "BAKERY").by_model["b"] == "BAKERV"
    assert row_with(rows, "a", "TAXI").agreement == "single"


def test_the_terminal_table_pads_wide_characters():
    from mosaic_cli.common import text_table

    lines = text_table([{"a": "看板", "b": "x"}, {"a": "ab", "b": "y"}], ["a", "b"]).splitlines()
    assert lines[1].index("x") + 2 == lines[2].index("y")  # 看板 is two characters in four columns, ab two in two
