"""Comparing models on one image: alignment of readings (pure), and `mosaic compare` against two loopback servers."""

from __future__ import annotations

import pytest

from mosaic.compare import align, counts_of, labels_for, model_family, near, server_groups
from mosaic.schema import Reading

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


def r(text, box=None, tiles=("r1c1",), confirmed=None, status=None) -> Reading:
    return Reading(text=text, box=box, tiles=list(tiles), confirmed=confirmed, views=list(tiles), status=status)


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
                                    "agreed_within_one_family": 0, "probably_absent": 0}


def test_two_models_agreeing_where_their_own_witnesses_found_no_text_confirm_nothing():
    board = (300, 300, 420, 340)
    rows = align({"a": [r("BAKERY", board, status="probably_absent")],
                  "b": [r("BAKERY", (302, 301, 421, 339), status="probably_absent")]})
    assert rows[0].agreement == "exact" and rows[0].agreed == ["a", "b"]
    assert not rows[0].confirmed and rows[0].probably_absent and counts_of(rows)["probably_absent"] == 1
    # one model's witnesses finding text there is enough for the agreement to count
    rows = align({"a": [r("BAKERY", board, status="probably_absent")],
                  "b": [r("BAKERY", (302, 301, 421, 339), status="unconfirmed")]})
    assert rows[0].confirmed and not rows[0].probably_absent


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


# --- `mosaic compare` against two loopback servers, one of each API style ----------------------------------------

@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from testkit.scenes import make_scene

    made = make_scene(11, 1600, 1200, n_signs=6, min_height_frac=0.02, max_height_frac=0.04)
    path = tmp_path_factory.mktemp("scene") / "street.png"
    made.image.save(path)
    return path, made.signs


@pytest.fixture
def two_servers():
    from testkit.stand_ins import StandIn
    from mosaic.offline.server import ModelServer

    reads_well = StandIn.from_spec("reader=rapidocr,budget=896")
    misreads = StandIn.from_spec("reader=rapidocr,budget=896,misread=0.5,invent=0.5,style=prose")
    with ModelServer(reads_well.answer_http, listed=["a"]) as a, ModelServer(misreads.answer_http, listed=["b"]) as b:
        yield a, b


def compare_args(scene_path, a, b, *more):
    return ["compare", str(scene_path), "--model", "openai/reader-a", "--api-base", a.openai_base,
            "--model", "ollama_chat/reader-b", "--api-base", b.url, "--grid", "2x2", "--phases", "text", "--json", *more]


def test_compare_two_servers_both_api_styles(scene, two_servers, capsys):
    import json
    from pathlib import Path

    from testkit.score import norm
    from conftest import run_cli

    (path, signs), (a, b) = scene, two_servers
    code, out = run_cli(*compare_args(path, a, b))
    assert code == 0, capsys.readouterr().err
    result = json.loads(out)
    assert result["grid"] == "2x2"
    assert [(m["label"], m["state"]) for m in result["models"]] == [("openai/reader-a", "completed"),
                                                                    ("ollama_chat/reader-b", "completed")]
    assert {r.path for r in a.chat_requests()} == {"/v1/chat/completions"} and a.chat_requests()
    assert {r.path for r in b.chat_requests()} == {"/api/chat"} and b.chat_requests()
    for m in result["models"]:
        assert m["calls"]["made"] == m["calls"]["total"] == 10  # 1 + 4 tiles + 4 seams + 1, no second look
        report = json.loads((Path(m["report_dir"]) / "report.json").read_text())
        assert report["grid"] == "2x2" and len(report["readings"]) == m["readings"]
        other = ({"openai/reader-a", "ollama_chat/reader-b"} - {m["label"]}).pop()
        # the other model is a witness of every reading; one of another family reading the same text confirms it
        assert all(set(r["witnesses"]["models"]) == {other} for r in report["readings"])
        for r in report["readings"]:
            theirs = r["witnesses"]["models"][other]
            if theirs and norm(theirs) == norm(r["text"]):
                assert r["status"] == "confirmed", r
        assert any(other in (r["reason"] or "") for r in report["readings"])
        assert (Path(m["report_dir"]) / "report.html").read_text().count(other) >= 1
    rows = result["readings"]
    assert rows and all(set(r) >= {"text", "by_model", "agreement", "tiles"} for r in rows)
    truth = {norm(s.text) for s in signs}
    both = [r for r in rows if all(r["by_model"].values())]
    assert any(r["agreement"] == "exact" and norm(r["text"]) in truth for r in rows)
    for r in both:  # the mark follows the texts
        keys = {norm(t) for t in r["by_model"].values()}
        assert (r["agreement"] == "exact") == (len(keys) == 1)
    # no second look: a row is confirmed by two models agreeing, or by a model's reading its own witness confirmed
    assert all(r["confirmed"] == ((len(r["agreed"]) >= 2 or bool(r["confirmed_in_views"])) and r["confirmed"])
               for r in rows)
    assert any(r["confirmed"] for r in rows) and all(r["confirmed"] for r in rows if len(r["agreed"]) >= 2
                                                     and r["agreement"] == "exact")
    order = [r["agreement"] for r in rows]
    assert order == sorted(order, key=["different", "near", "single", "exact"].index)
    assert_subflows_of(result)
    code, shown = run_cli("show", result["flow_run_id"], "--json")
    shown = json.loads(shown)
    assert code == 0 and shown["state"] == "Completed" and "## Hard spots" in shown["review"]
    assert sorted(c["id"] for c in shown["children"]) == sorted(m["flow_run_id"] for m in result["models"])
    code, page = run_cli("open", result["flow_run_id"], "--print")
    assert code == 0 and page.strip() == str((Path(result["comparison_dir"]) / "comparison.html").resolve())
    asked = len(a.chat_requests()) + len(b.chat_requests())
    code, _ = run_cli("rerun", result["flow_run_id"])
    assert code == 0 and "Completed" in capsys.readouterr().err
    assert len(a.chat_requests()) + len(b.chat_requests()) == asked  # a rerun of a comparison: all from the memo
    folder = Path(result["comparison_dir"])
    md = (folder / "comparison.md").read_text()
    assert "openai/reader-a" in md and "## Hard spots" in md
    hard = [r for r in rows if r["agreement"] in ("near", "different")]
    assert len(list((folder / "hard-spots").glob("*.jpg")) if hard else []) == len(hard)


def assert_subflows_of(result: dict) -> None:
    """Every model's review is a child flow run of the comparison's run on the Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        parent = client.read_flow_run(result["flow_run_id"])
        assert parent.state.is_completed()
        for m in result["models"]:
            child = client.read_flow_run(m["flow_run_id"])
            assert child.state.is_completed() and child.parent_task_run_id is not None
            assert client.read_task_run(child.parent_task_run_id).flow_run_id == parent.id
            assert f"model:{m['model']}" in child.tags


def test_a_third_model_that_is_down_loses_nothing_and_the_first_two_ask_nothing_again(scene, two_servers, capsys):
    import json

    from conftest import free_port, run_cli

    (path, _), (a, b) = scene, two_servers
    code, first = run_cli(*compare_args(path, a, b))
    assert code == 0
    asked = len(a.chat_requests()) + len(b.chat_requests())
    down = f"http://127.0.0.1:{free_port()}/v1"
    code, out = run_cli(*compare_args(path, a, b, "--model", "openai/reader-c", "--api-base", down))
    err = capsys.readouterr().err
    assert code == 3
    assert "openai/reader-c is missing from the comparison (unreachable" in err
    result = json.loads(out)
    assert [m["state"] for m in result["models"]] == ["completed", "completed", "unreachable"]
    assert all(m["calls"]["cached"] == m["calls"]["total"] for m in result["models"][:2])
    assert len(a.chat_requests()) + len(b.chat_requests()) == asked  # nothing asked again
    assert result["readings"] == json.loads(first)["readings"]  # the missing model changes no row


def test_a_model_that_fails_is_named_and_the_others_are_kept(scene, two_servers, capsys):
    import json

    from mosaic.offline.server import Fault, ModelServer
    from conftest import run_cli

    (path, _), (a, b) = scene, two_servers
    with ModelServer(lambda messages, model: "never", listed=["c"]) as broken:
        broken.add_fault(Fault(status=400, times=-1, body='{"error": {"message": "model does not support images"}}'))
        code, out = run_cli(*compare_args(path, a, b, "--model", "openai/reader-c", "--api-base", broken.openai_base))
    err = capsys.readouterr().err
    assert code == 3 and "openai/reader-c is missing from the comparison (failed" in err
    result = json.loads(out)
    assert [m["state"] for m in result["models"]] == ["completed", "completed", "failed"]
    assert result["readings"] and all(set(r["by_model"]) == {"openai/reader-a", "ollama_chat/reader-b"}
                                      for r in result["readings"])


@pytest.mark.parametrize("argv, message", [
    (["--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1"], "at least two models"),
    (["--model", "openai/x", "--model", "openai/x"], "is given twice"),
    (["--model", "qwen", "--model", "openai/x"], "names no provider"),
])
def test_compare_bad_options_are_one_line(photo, argv, message, capsys):
    from conftest import run_cli

    code, _ = run_cli("compare", str(photo), *argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_thread_driver_compares_without_prefect(photo):
    from pathlib import Path

    from mosaic.compare import compare_image

    seen = []
    result = compare_image(str(photo), [("offline", None), ("offline:896", None)], grid="2x2", phases=["text"],
                           on_model=seen.append)
    assert [m.state for m in result.models] == ["completed", "completed"] and len(seen) == 2
    assert result.grid == "2x2" and result.flow_run_id is None
    assert (Path(result.comparison_dir) / "comparison.json").exists()
    assert all(set(r.by_model) == {"offline", "offline:896"} for r in result.readings)


def test_a_models_own_variants_stay_in_the_row():
    own = Reading(text="HOTEL", box=(1, 1, 50, 20), tiles=["r1c1"], variants=["HOTE1"])
    rows = align({"a": [own], "b": [r("HOTEL", (1, 1, 50, 20))]})
    assert rows[0].variants == ["HOTE1"]


def test_density_auto_picks_one_grid_for_the_model_that_sees_least(tmp_path):
    from conftest import make_photo
    from mosaic.compare import compare_image
    from mosaic.tiles import choose_grid

    photo = make_photo(tmp_path / "wide.png", size=(1600, 1200))
    small, large = (choose_grid(1600, 1200, "auto", None, "offline", px) for px in (448, 896))
    assert small[:2] != large[:2]  # the two encoders alone would get different grids
    result = compare_image(str(photo), [("offline:896", None), ("offline:448", None)], density="auto",
                           phases=["text"])
    assert result.grid == f"{small[0]}x{small[1]}"
    assert {m.state for m in result.models} == {"completed"}


def test_two_of_one_family_do_not_outvote_another_family():
    """Hidden clones: two qwen models reading 186U4573 against a gemma reading 186-4573 is one voter against one."""
    qa, qb, gemma = "ollama_chat/qwen2.5vl:3b", "ollama_chat/qwen2.5vl:7b", "ollama_chat/gemma3:4b"
    box = (10, 10, 90, 30)
    rows = align({qa: [r("186U4573", box)], qb: [r("186U4573", box)], gemma: [r("186-4573", box)]})
    assert rows[0].agreement == "near" and rows[0].text == "186U4573" and rows[0].same_family
    assert not rows[0].confirmed
    alone = align({qa: [r("186U4573", box)], qb: [r("186U4573", box)], gemma: []})
    assert alone[0].confirmed and alone[0].same_family  # nothing against it: confirmed, flagged weaker


def test_adjacent_signs_a_character_apart_stay_two_rows():
    rows = align({"a": [r("出口", (0, 0, 100, 40)), r("入口", (110, 0, 210, 40))],
                  "b": [r("出口", (2, 0, 100, 40)), r("入口", (112, 0, 210, 40))]})
    assert sorted((row.text, row.agreement) for row in rows) == [("入口", "exact"), ("出口", "exact")]


def test_a_reading_without_a_box_joins_one_sign_of_another_model_not_two():
    rows = align({"a": [r("EXIT", tiles=["r1c1"])],
                  "b": [r("EXIT", (10, 10, 60, 30)), r("EXIT", (400, 300, 450, 320))]})
    assert len(rows) == 2 and sorted(row.agreement for row in rows) == ["exact", "single"]
    assert all(row.by_model["b"] == "EXIT" for row in rows)


def test_the_same_model_at_one_address_is_refused_however_it_is_written():
    from mosaic.backend import Backend
    from mosaic.compare import check_models
    from mosaic.errors import BadOption

    with pytest.raises(BadOption, match="given twice"):
        check_models([Backend.create("ollama_chat/gemma3:4b"),
                      Backend.create("ollama_chat/gemma3:4b", "http://127.0.0.1:11434")])
    check_models([Backend.create("ollama_chat/gemma3:4b"), Backend.create("ollama_chat/gemma3:4b", "http://10.0.0.2:11434")])


def test_labels_with_an_address_keep_the_models_family():
    box = (1, 1, 50, 20)
    rows = align({"ollama_chat/qwen2.5vl:7b@http://a:1": [r("TAXI", box)],
                  "ollama_chat/qwen2.5vl:7b@http://b:2": [r("TAXI", box)]})
    assert rows[0].same_family


def test_an_interrupt_returns_at_once_and_starts_no_further_model():
    import time

    from mosaic.backend import Backend
    from mosaic.compare import each_by_server

    backends = [Backend.create("openai/a", "http://127.0.0.1:1/v1"), Backend.create("openai/b", "http://127.0.0.1:2/v1"),
                Backend.create("openai/c", "http://127.0.0.1:2/v1")]
    ran = []

    def review_one(i: int) -> None:
        ran.append(i)
        if i == 0:
            raise KeyboardInterrupt
        time.sleep(0.5)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        each_by_server(backends, review_one)
    assert time.monotonic() - started < 0.4  # not waiting for model b's review
    time.sleep(0.8)
    assert 0 in ran and 2 not in ran  # c, after b on the same server, is never started (b may have been)
