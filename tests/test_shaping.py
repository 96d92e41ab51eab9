"""The shaped plan and the budget: pure functions tested exactly, and prepare on an image with text in one place."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

from mosaic import shaping
from mosaic.backend import Backend
from mosaic.memo import BlobStore
from mosaic.pipeline import prepare
from mosaic.schema import Plan, View
from mosaic.text_regions import text_regions

A, B = (0, 0, 100, 100), (100, 0, 200, 100)  # b right of a
C = (0, 100, 100, 200)  # below a


def test_a_region_crosses_a_line_only_with_a_readable_part_on_each_side():
    assert shaping.crossing(A, B, [(80, 40, 120, 60)]) == 1
    assert shaping.crossing(A, B, [(96, 40, 140, 60)]) == 0  # 4 px left of the line: less than a quarter of its 20 px
    assert shaping.crossing(A, B, [(80, 140, 120, 160)]) == 0  # beside the line, below both tiles
    assert shaping.crossing(A, C, [(40, 90, 60, 110)]) == 1
    assert shaping.crossing(A, C, [(40, 70, 60, 99)]) == 0


def test_phases_per_design():
    phases = ["text", "subjects", "characteristics"]
    assert shaping.tile_phases("shaped", phases, True, True) == ["text"]
    assert shaping.tile_phases("shaped", phases, False, True) == []
    assert shaping.tile_phases("shaped", phases, False, False) == ["subjects", "characteristics"]
    assert shaping.tile_phases("full", phases, False, True) == phases
    assert shaping.tile_phases("blog", phases, False, True) == ["inspect"]
    assert shaping.seam_phases("shaped", phases, ["text", "subjects"], 0) == []
    assert shaping.seam_phases("shaped", phases, ["text", "subjects"], 2) == ["text"]
    assert shaping.seam_phases("full", phases, ["text", "subjects"], 0) == ["text", "subjects"]
    assert shaping.whole_phases("shaped", phases, True) == ["subjects", "characteristics"]
    assert shaping.whole_phases("full", phases, True) == []
    assert [shaping.design_for("auto", d) for d in ("light", "auto:light", "quick", "dense", "custom")] == \
        ["shaped", "shaped", "full", "full", "full"]
    assert shaping.design_for("blog", "dense") == "blog"


def test_image_tokens_count_28_pixel_patches_of_the_image_as_sent():
    assert shaping.image_tokens(1280, 960, 1280) == math.ceil(1280 / 28) * math.ceil(960 / 28)
    assert shaping.image_tokens(2000, 1500, 1000) == math.ceil(1000 / 28) * math.ceil(750 / 28)
    assert shaping.CallCost().seconds(500, 20) == 0.5 + 1 + 1


def toy_plan() -> tuple[Plan, list]:
    """2×1 tiles, one seam, the whole image; text in the left tile (twice) and in the right one (once), none on the
    line."""
    tiles = [View(id="r1c1", kind="tile", cells=[(0, 0)], box=A, image_sha256="a", phases=["text"]),
             View(id="r1c2", kind="tile", cells=[(1, 0)], box=B, image_sha256="b", phases=["text"])]
    seam = View(id="r1c1|r1c2", kind="seam", cells=[(0, 0), (1, 0)], box=(50, 0, 150, 100), image_sha256="s",
                phases=["text", "subjects"])
    whole = View(id="all", kind="region", cells=[(0, 0), (1, 0)], box=(0, 0, 200, 100), image_sha256="w",
                 phases=["subjects", "characteristics"])
    plan = Plan(image_path="x", image_sha256="x", width=200, height=100, cols=2, rows=1, density="light",
                phases=["text", "subjects", "characteristics"], overview_sha256="o", views=[*tiles, seam, whole],
                synthesis=False)
    return plan, [(10, 10, 40, 20), (10, 50, 40, 60), (150, 10, 180, 20)]


def counted(plan: Plan) -> shaping.Estimate:
    return shaping.Estimate(calls=plan.total_calls, seconds=0, image_tokens=0, answer_tokens=0)


def test_a_budget_drops_the_views_worth_least_first_and_says_so():
    plan, regions = toy_plan()
    assert plan.total_calls == 1 + 2 + 2 + 2 + 1
    order = [(rank, view, phase) for rank, view, phase in shaping.cuts(plan, regions)]
    assert order == [(0, "r1c1|r1c2", None), (2, "all", "characteristics"), (2, "all", "subjects"),
                     (4, "r1c2", "text"), (4, "r1c1", "text")]  # the right tile has less text

    budget = shaping.Budget(calls=7, second_look_share=0.5)
    fitted, words = shaping.fit(plan, regions, budget, counted)
    # without the seam (2 calls): 6 calls, and a second look of floor(0.5 * 6) = 3 would make 9 > 7; without
    # characteristics 5 + 2 = 7 fits
    assert fitted.total_calls == 5 and fitted.second_look_cap == 2
    assert words == ["1 seam crop with no text on the line", "characteristics of the whole image"]
    assert plan.total_calls == 8  # the plan given is left as it was

    fitted, words = shaping.fit(plan, regions, shaping.Budget(calls=4, second_look_share=0.5), counted)
    # no coarse phase left: 4 calls, the second look shrinks to 0 and fits
    assert fitted.total_calls == 4 and fitted.second_look_cap == 0
    assert words[-1] == "the second look to 0 calls"

    fitted, words = shaping.fit(plan, regions, shaping.Budget(calls=3, second_look_share=0.5), counted)
    assert [v.id for v in fitted.views if v.phases] == ["r1c1"] and words[-1] == "the text of r1c2"


def test_a_minutes_budget_counts_the_second_looks_time():
    plan, regions = toy_plan()
    budget = shaping.Budget(minutes=1, second_look_share=1.0, detail_s=10)
    timed = lambda p: shaping.Estimate(calls=p.total_calls, seconds=5 * p.total_calls, image_tokens=0,  # noqa: E731
                                       answer_tokens=0)
    fitted, _ = shaping.fit(plan, regions, budget, timed)
    first = timed(fitted)
    assert first.seconds + 10 * fitted.second_look_cap <= 60
    assert first.seconds + 10 * (fitted.second_look_cap + 1) > 60 or fitted.second_look_cap == fitted.total_calls


def test_a_shaped_plan_fills_its_calls_with_the_second_look():
    plan, _ = toy_plan()
    fill = shaping.Budget(calls=30, second_look_share=0.3)
    assert shaping.filled_cap(plan, fill, counted(plan)) == 30 - plan.total_calls
    assert shaping.filled_cap(plan, shaping.Budget(calls=5, second_look_share=0.3), counted(plan)) == math.floor(0.3 * 8)
    # minutes too: 8 calls of 5 s and crops of 10 s within 2 minutes leave room for 8 crops
    timed = shaping.Estimate(calls=8, seconds=40, image_tokens=0, answer_tokens=0)
    assert shaping.filled_cap(plan, shaping.Budget(calls=30, minutes=2, second_look_share=0.3, detail_s=10), timed) == 8
    # within a budget of 12 calls: 4
    assert shaping.filled_cap(plan, fill, timed, shaping.Budget(calls=12)) == 4


def test_planned_text():
    assert shaping.planned_text(23, 7, 150, ["characteristics of the whole image"]) == \
        "23 calls planned (about 2.5 laptop minutes), at most 7 more for a second look; budget cut: " \
        "characteristics of the whole image"
    assert shaping.planned_text(5, 0) == "5 calls planned"


def test_prepare_asks_the_text_phase_only_where_the_detector_finds_text(tmp_path):
    image = Image.new("RGB", (1500, 1200), (200, 200, 200))
    font = ImageFont.load_default(size=48)
    ImageDraw.Draw(image).text((80, 120), "OPEN DAILY 9-5", fill=(10, 10, 10), font=font)
    path = tmp_path / "sign.png"
    image.save(path)
    blobs = BlobStore(tmp_path / "blobs")
    phases = ["text", "subjects", "characteristics"]
    plan = prepare(str(path), "light", None, phases, Backend(model="openai/x"), blobs, design="auto")
    regions = text_regions(lambda: image, plan.image_sha256, blobs)
    assert regions and plan.design == "shaped" and (plan.cols, plan.rows) == (3, 3)
    asked = {v.id for v in plan.tiles if v.phases}
    assert asked == {t.id for t in plan.tiles if shaping.text_count(t.box, regions)} and "r1c1" in asked
    assert "r3c3" not in asked
    assert [v.id for v in plan.views if v.kind == "seam" and v.phases] == []  # the sign crosses no tile line
    whole = [v for v in plan.views if v.kind == "region"]
    assert [(v.id, v.phases, v.box) for v in whole] == [("all", ["subjects", "characteristics"], (0, 0, 1500, 1200))]
    assert plan.views_in_call_order()[0].id == "all"  # every tile's report waits for it
    assert not any(plan.needs_synthesis(t) for t in plan.tiles)
    assert plan.total_calls == 1 + len(asked) + 2 + 1

    full = prepare(str(path), "light", None, phases, Backend(model="openai/x"), blobs, design="full")
    assert full.total_calls == 1 + 9 * 3 + 12 * 2 + 9 + 1


def test_plan_line_says_the_estimate_and_the_budget_cut():
    plan, regions = toy_plan()
    fitted, words = shaping.fit(plan, regions, shaping.Budget(calls=7, second_look_share=0.5), counted)
    fitted.notes.append("budget cut (7 calls per image): " + "; ".join(words))
    fitted.estimated_s = 90
    assert shaping.plan_line(fitted, 2) == ("5 calls planned (about 1.5 laptop minutes), at most 2 more for a second "
                                            "look; budget cut: 1 seam crop with no text on the line; characteristics "
                                            "of the whole image")
