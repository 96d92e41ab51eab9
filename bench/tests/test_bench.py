"""The benchmark's scoring and peer geometry are right (no model calls, no timing)."""

from __future__ import annotations

import os

import pytest

from bench import baselines
from testkit import score
from bench.report import blog_comparison, targets
from testkit.scenes import Sign, make_scene
from mosaic.backend import Backend

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


def sign(text, box=(10, 10, 50, 20), script="latin", straddles=(), dim=False):
    return Sign(text=text, script=script, box=box, straddles=tuple(straddles), dim=dim)


def test_norm_removes_whitespace_and_casefolds():
    assert score.norm(" Ab  c\nD\t") == "abcd"
    assert score.norm("ÄB") == "äb"
    assert score.norm("山 川") == "山川"


def test_recalled_finds_texts_inside_longer_text_whatever_the_spacing():
    signs = [sign("BRAKT"), sign("0312-5567"), sign("山川"), sign("ZZZZZ")]
    text = 'Text read: "b r a k t" in r1c1\n- 0312-5567\n- 山 川 (unclear)'
    assert score.recalled(signs, text) == [True, True, True, False]


def test_recalled_needs_the_whole_text():
    assert score.recalled([sign("0312-5567")], "0312-556") == [False]
    assert score.recalled([sign("")], "anything") == [False]


def test_invented_keeps_only_readings_matching_no_sign():
    truths = ["BRAKTUN", "0312-5567", "山川中"]
    readings = ["BRAK", "tun", "braktun", "Braktun.", "0312-5567", "山川", "KONBEE", "5567 99", ""]
    assert score.invented(readings, truths) == ["KONBEE", "5567 99"]


def test_straddles_uses_the_methods_own_grid():
    W, H = 900, 600
    s = sign("X", box=(290, 100, 320, 110), straddles=("3x3",))  # 3x3 line at x=300
    assert score.straddles(s, W, H, "3x3")
    assert not score.straddles(s, W, H, "2x2")  # 2x2 line at x=450
    assert score.straddles(s, W, H, None)  # one-shot: any checked grid
    assert not score.straddles(sign("Y", straddles=()), W, H, None)


def test_small_cut_is_the_smallest_third():
    cut = score.small_cut([0.01, 0.002, 0.005, 0.02, 0.003, 0.004])
    assert cut == 0.003
    assert sum(h <= cut for h in [0.01, 0.002, 0.005, 0.02, 0.003, 0.004]) == 2
    assert score.small_cut([]) == 0.0


def test_score_method_breaks_recall_down():
    rows = [
        {"review": True, "report": True, "straddles": True, "rel_h": 0.004, "script": "cjk", "dim": False},
        {"review": False, "report": True, "straddles": False, "rel_h": 0.02, "script": "latin", "dim": True},
        {"review": False, "report": False, "straddles": True, "rel_h": 0.003, "script": "digits", "dim": True},
    ]
    out = score.score_method(rows, cut=0.004)
    assert out["signs"] == 3
    assert out["recall_report"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["recall_review"] == pytest.approx(1 / 3, abs=1e-4)
    assert (out["recall_straddling"], out["straddling_n"]) == (0.5, 2)
    assert (out["recall_smallest_third"], out["smallest_third_n"]) == (0.5, 2)
    assert (out["recall_cjk"], out["cjk_n"]) == (1.0, 1)
    assert (out["recall_dim"], out["dim_n"]) == (0.5, 2)


@pytest.mark.parametrize("size,grid", [((4000, 3000), (3, 3)), ((8000, 2000), (5, 5)), ((1733, 1155), (2, 3))])
def test_sahi_slices_keep_full_size_overlap_and_cover_the_image(size, grid):
    W, H = size
    cols, rows = grid
    boxes = baselines.sahi_boxes(W, H, cols, rows, 0.2)
    assert len(boxes) == cols * rows
    sizes = {(b[2] - b[0], b[3] - b[1]) for b in boxes}
    assert len(sizes) == 1  # every slice the same size
    sw, sh = sizes.pop()
    assert all(0 <= b[0] and 0 <= b[1] and b[2] <= W and b[3] <= H for b in boxes)
    for lo, hi, axis in ((0, 2, W), (1, 3, H)):  # the slices' spans cover each axis without a gap
        spans = sorted({(b[lo], b[hi]) for b in boxes})
        assert spans[0][0] == 0 and spans[-1][1] == axis
        assert all(a[1] >= b[0] for a, b in zip(spans, spans[1:]))
    xs = sorted({b[0] for b in boxes})
    if len(xs) > 1:  # neighbours overlap by about 20% of a slice
        assert (xs[0] + sw - xs[1]) / sw == pytest.approx(0.2, abs=0.02)


def test_method_views_count_calls_as_each_design_makes_them():
    assert baselines.method_views("one-shot", 4000, 3000).calls == 1
    assert baselines.method_views("grid", 4000, 3000, 3, 3).calls == 9
    assert baselines.method_views("sahi", 4000, 3000, 3, 3).calls == 10  # slices + the whole image
    blog = baselines.method_views("blog", 4000, 2000, 4, 2)
    assert blog.calls == 38  # the blog's 4x2 run: 1 + 8 + 20 + 8 + 1
    assert len(blog.boxes) == 8 + 10  # each pair's pixels read once
    pair = blog.boxes[8]
    assert (pair[2] - pair[0], pair[3] - pair[1]) in {(2000, 1000), (1000, 2000)}


def test_generator_is_deterministic_and_its_straddling_signs_are_cut():
    a, b = make_scene(5, 900, 600, n_signs=9), make_scene(5, 900, 600, n_signs=9)
    assert a.image.tobytes() == b.image.tobytes()
    assert [s.to_dict() for s in a.signs] == [s.to_dict() for s in b.signs]
    for s in a.signs:
        assert bool(s.straddles) == any(score.straddles(s, 900, 600, g) for g in ("2x2", "3x3", "4x4", "5x5"))
    assert len({s.text for s in a.signs}) == 9


def _m(name, family, recall, calls, review=None):
    return {"method": name, "family": family, "recall_report": recall, "recall_review": review or recall,
            "calls": calls, "recall_straddling": recall, "calls_per_scene": calls}


def test_blog_comparison_picks_the_cheapest_mosaic_run_reading_as_much():
    run = {"label": "x", "budget": 896, "methods": [
        _m("blog light", "blog", 0.90, 152), _m("mosaic quick", "mosaic", 0.85, 40),
        _m("mosaic light", "mosaic", 0.95, 120), _m("mosaic light inspect", "mosaic-inspect", 0.92, 80)]}
    (c,) = blog_comparison(run)
    assert (c["mosaic"], c["ratio"]) == ("mosaic light inspect", round(80 / 152, 3))


def test_targets_report_met_and_unmet():
    run = {"label": "offline 896", "budget": 896, "methods": [
        _m("mosaic light", "mosaic", 0.96, 100), _m("mosaic max", "mosaic", 0.97, 300),
        _m("mosaic auto", "mosaic-auto", 0.96, 100, review=0.5)]}
    by_name = {t["target"]: t for t in targets([run], {})}
    assert by_name["offline 896: Mosaic light, recall overall"]["met"] is True
    assert by_name["offline 896: --density auto vs best density"]["met"] is True
    assert by_name["offline 896: final review keeps the report's readings (worst method)"]["met"] is False


def test_auto_density_knows_the_offline_readers_input_size_also_over_http():
    from mosaic.tiles import auto_density, input_px_for

    assert input_px_for("openai/ocr-896") == 896
    assert input_px_for("mosaic_offline/ocr-448") == 448
    assert input_px_for("openai/ocr-whatever") is None
    # size unknown, encoder known: the coarsest grid whose tiles the encoder sees at no less than 1/1.5 scale,
    # and never finer than dense
    assert auto_density(4000, 3000, "mosaic_offline/ocr-896", 896) == "light"
    assert auto_density(4000, 3000, "mosaic_offline/ocr-448", 448) == "dense"
    assert auto_density(1732, 1155, "mosaic_offline/ocr-896", 896) == "quick"
    assert auto_density(4000, 3000, "openai/unknown-model", None) == "light"


def test_separate_readings_never_join_into_a_sign():
    assert score.recalled([sign("0312-5567")], ["0312-", "5567"]) == [False]
    assert score.recalled([sign("0312-5567")], ["x", "tel 0312 - 5567"]) == [True]


def test_blank_views_are_asked_nothing_when_skipping_is_on(tmp_path):
    from PIL import Image, ImageDraw

    from mosaic.memo import BlobStore
    from mosaic.pipeline import is_blank, prepare

    img = Image.new("RGB", (1200, 800), (90, 120, 150))
    ImageDraw.Draw(img).text((100, 100), "BRAKTUN 0312-5567", fill=(250, 250, 250))
    img.save(tmp_path / "p.png")
    assert is_blank(img.crop((600, 400, 1200, 800))) and not is_blank(img.crop((0, 0, 600, 400)))
    phases = ["text", "subjects", "characteristics"]
    plain = prepare(str(tmp_path / "p.png"), "quick", "2x2", phases, Backend(model="openai/x"), BlobStore(tmp_path / "b"))
    skipping = prepare(str(tmp_path / "p.png"), "quick", "2x2", phases, Backend(model="openai/x"), BlobStore(tmp_path / "b"), skip_blank=True)
    assert plain.total_calls == 1 + 12 + 4 * 2 + 4 + 1 == 26
    asked = {v.id for v in skipping.views if v.phases}
    assert asked == {"r1c1"}  # the text is far from every seam window (centred on x=600 or y=400)
    assert skipping.total_calls == 1 + 3 + 1 + 1  # orientation, r1c1's phases, its synthesis, the review


def test_the_stand_in_backend_process_holds_its_slots_and_reports_what_it_answered():
    import threading

    import httpx

    from bench.backend import BackendProcess

    body = {"model": "fake-vl", "messages": [{"role": "user", "content": "Mosaic task: text"}]}
    with BackendProcess(latency=0.3, slots=1) as backend:
        threads = [threading.Thread(target=httpx.post, args=(backend.openai_base + "/chat/completions",),
                                    kwargs={"json": body, "timeout": 30}) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    first, second = sorted(backend.requests, key=lambda r: r.started)
    assert first.status == second.status == 200 and first.text.startswith("Mosaic task: text")
    assert second.started >= first.finished  # one slot: the second request waited for the first
    assert first.finished - first.started >= 0.3


def test_process_cpu_counts_this_process_and_a_prefect_server_process():
    import subprocess
    import sys
    import time

    from bench.run import process_cpu_s

    before = process_cpu_s()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"
    # a child whose command line names the Prefect server's app, as the temporary server's does
    server = subprocess.Popen([sys.executable, "-c", spin, "prefect.server.api.server:create_app"])
    try:
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
        time.sleep(1.0)
        after = process_cpu_s()
    finally:
        server.kill()
        server.wait()
    assert after["mosaic"] - before["mosaic"] >= 0.15
    assert 0.25 <= after["prefect_server"] - before.get("prefect_server", 0.0) < 1.5


def test_the_page_links_its_plots_from_wherever_it_is_written(tmp_path):
    import shutil
    from pathlib import Path

    from bench.report import load, page

    results = tmp_path / "bench-results"
    results.mkdir()
    shutil.copy(Path(__file__).parents[2] / "docs" / "bench" / "run-896.json", results)
    runs, system = load(results)
    beside = page(runs, system, results, results / "benchmark.md")
    above = page(runs, system, results, tmp_path / "benchmark.md")
    assert "](./recall-vs-calls-896.png)" in beside and "](./misses.png)" in beside
    assert "](bench-results/recall-vs-calls-896.png)" in above


@pytest.mark.parametrize("read", ["process_cpu", "machine_busy_cpu"])
def test_the_cpu_samplers_count_a_busy_loop_and_nothing_outside_the_window(read):
    import time

    from bench import throughput

    with throughput.Sampler(0.02, getattr(throughput, read)) as sampler:
        time.sleep(0.2)
        start, used = time.monotonic(), throughput.process_cpu()
        while throughput.process_cpu() - used < 0.4:  # 0.4 s of this process's CPU, however busy the machine
            pass
        end = time.monotonic()
        time.sleep(0.2)
    # the loop's CPU is in the window, less a sample's worth at each end (the machine's includes this process's)
    assert 0.3 <= sampler.cpu_between(start, end) <= (end - start) * (os.cpu_count() or 1) + 0.1
    if read == "process_cpu":  # other processes may keep the machine busy after the loop
        assert sampler.cpu_between(end + 0.05, end + 0.15) < 0.05


def test_the_span_is_measured_against_the_cores_when_they_are_the_bound():
    from bench.span import cpu_view

    cpu_bound = cpu_view({"span_s": 10.0, "bound_s": 2.0}, busy_s=16.0, cpus=2)  # 8 s on each core
    assert cpu_bound == {"cpus": 2, "cpu_busy_in_span_s": 16.0, "cpu_busy_share": 0.8, "span_over_cpu_bound": 1.25}
    calls_bound = cpu_view({"span_s": 10.0, "bound_s": 5.0}, busy_s=2.0, cpus=2)
    assert calls_bound["span_over_cpu_bound"] == 2.0 and calls_bound["cpu_busy_share"] == 0.1
