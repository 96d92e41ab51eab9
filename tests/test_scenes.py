"""Tests for the benchmark scene generator (bench/scenes.py)."""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from testkit.scenes import (
    Scene,
    Sign,
    grid_lines,
    make_scene,
    scene_set,
    signs_from_ground_truth,
    straddled_grids,
)

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI

W, H = 900, 600
GRIDS = ((2, 2), (3, 3), (4, 4), (5, 5))
SAMPLES = Path(__file__).resolve().parents[1] / "mosaic" / "samples"


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene(11, W, H, n_signs=12)


def _digest(img) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ----------------------------------------------------------------- determinism


def test_same_seed_same_bytes(scene):
    again = make_scene(11, W, H, n_signs=12)
    assert _digest(again.image) == _digest(scene.image)
    assert again.signs == scene.signs


def test_different_seed_differs(scene):
    other = make_scene(12, W, H, n_signs=12)
    assert _digest(other.image) != _digest(scene.image)
    assert [s.text for s in other.signs] != [s.text for s in scene.signs]


def test_image_is_rgb_of_requested_size_and_not_blank(scene):
    assert scene.image.mode == "RGB"
    assert scene.image.size == (W, H) == (scene.width, scene.height)
    arr = np.asarray(scene.image)
    assert arr.std() > 20  # a street, not a plain background
    assert len(np.unique(arr.reshape(-1, 3)[::97], axis=0)) > 200


# ---------------------------------------------------------------------- signs


def test_sign_count_scripts_and_text_shapes(scene):
    assert len(scene.signs) == 12
    assert {s.script for s in scene.signs} == {"latin", "digits", "cjk"}
    for s in scene.signs:
        if s.script == "latin":
            assert s.text.isascii() and s.text.isalpha() and s.text.isupper()
            assert 5 <= len(s.text) <= 9
        elif s.script == "digits":
            assert set(s.text) <= set("0123456789-") and sum(c.isdigit() for c in s.text) >= 6
        else:
            assert 2 <= len(s.text) <= 4
            assert all("\u4e00" <= c <= "\u9fff" for c in s.text)


def test_signs_inside_image_and_not_overlapping(scene):
    for s in scene.signs:
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, s
    for a, b in combinations(scene.signs, 2):
        assert not _overlap(a.box, b.box), (a, b)


def test_text_heights_within_requested_range():
    sc = make_scene(5, 1600, 1200, n_signs=10, min_height_frac=0.01, max_height_frac=0.02)
    for s in sc.signs:
        h = s.box[3] - s.box[1]
        assert 0.8 * 0.01 * 1200 <= h <= 1.2 * 0.02 * 1200, s


def test_text_is_actually_drawn_in_its_box(scene):
    arr = np.asarray(scene.image).astype(np.int16)
    for s in scene.signs:
        x0, y0, x1, y1 = s.box
        patch = arr[y0:y1, x0:x1]
        # text strokes over a board: the box holds clearly different tones
        assert np.ptp(patch.mean(axis=2)) > 25, s


def test_texts_unique_and_no_substrings(scene):
    for sc in (scene, make_scene(3, 1200, 900, n_signs=30)):
        texts = [s.text for s in sc.signs]
        assert len(set(texts)) == len(texts)
        for a, b in combinations(texts, 2):
            assert a not in b and b not in a, (a, b)


def test_text_drawing_enforces_uniqueness_at_scale():
    # Many draws make collisions (e.g. a 2-kanji word inside a 4-kanji one) likely,
    # so this fails if the generator stops checking.
    import random

    from testkit.scenes import _unique_texts

    scripts = ["cjk"] * 200 + ["digits"] * 100 + ["latin"] * 100
    texts = _unique_texts(random.Random(0), scripts)
    assert len(texts) == len(scripts) == len(set(texts))
    for a, b in combinations(texts, 2):
        assert a not in b and b not in a, (a, b)


def test_dim_fraction(scene):
    assert sum(s.dim for s in scene.signs) == round(12 * 0.25)
    none = make_scene(11, W, H, n_signs=12, dim_frac=0.0)
    assert not any(s.dim for s in none.signs)


# ------------------------------------------------------------------ straddling


def test_grid_lines_use_round():
    assert grid_lines(1000, 600, (3, 2)) == ([333, 667], [300])
    assert grid_lines(10, 10, "4x4") == ([2, 5, 8], [2, 5, 8])  # round(2.5) == 2, round(7.5) == 8


def test_straddled_grids_exact():
    grids = ((2, 2), (3, 3), (4, 2))
    # 1000x600: 2x2 -> x 500, y 300; 3x3 -> x 333, 667, y 200, 400; 4x2 -> x 250, 500, 750, y 300
    assert straddled_grids((10, 10, 100, 50), 1000, 600, grids) == ()
    assert straddled_grids((480, 10, 520, 50), 1000, 600, grids) == ("2x2", "4x2")
    assert straddled_grids((320, 10, 340, 50), 1000, 600, grids) == ("3x3",)
    assert straddled_grids((10, 290, 100, 310), 1000, 600, grids) == ("2x2", "4x2")
    assert straddled_grids((10, 190, 100, 210), 1000, 600, grids) == ("3x3",)
    assert straddled_grids((240, 390, 260, 410), 1000, 600, grids) == ("3x3", "4x2")
    # half-open boxes: touching a line from either side does not cross it
    assert straddled_grids((500, 10, 600, 50), 1000, 600, grids) == ()
    assert straddled_grids((400, 10, 500, 50), 1000, 600, grids) == ()
    assert straddled_grids((400, 10, 501, 50), 1000, 600, grids) == ("2x2", "4x2")
    assert straddled_grids((10, 300, 100, 350), 1000, 600, grids) == ()
    # string grid names work too, order follows the grids given
    assert straddled_grids((480, 10, 520, 50), 1000, 600, ["4x2", "2x2"]) == ("4x2", "2x2")


def test_straddles_field_matches_function(scene):
    for s in scene.signs:
        assert s.straddles == straddled_grids(s.box, W, H, GRIDS)


@pytest.mark.parametrize("frac,grids", [(1 / 3, GRIDS), (0.5, ((3, 2),)), (1.0, ((2, 2), (4, 4)))])
def test_requested_fraction_straddles(frac, grids):
    n = 12
    sc = make_scene(21, 1200, 900, n_signs=n, straddle_grids=grids, straddle_frac=frac)
    names = {f"{c}x{r}" for c, r in grids}
    crossing = [s for s in sc.signs if s.straddles]
    assert len(crossing) >= round(n * frac)
    for s in sc.signs:
        assert set(s.straddles) <= names


def test_deliberate_straddlers_are_centred_on_a_line():
    sc = make_scene(4, 1200, 900, n_signs=9, straddle_grids=((3, 3),), straddle_frac=1.0)
    xs, ys = grid_lines(1200, 900, (3, 3))
    for s in sc.signs:
        x0, y0, x1, y1 = s.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        assert any(abs(cx - x) <= 1 for x in xs) or any(abs(cy - y) <= 1 for y in ys), s


def test_no_straddling_requested_prefers_clean_spots():
    sc = make_scene(8, 1600, 1200, n_signs=8, straddle_grids=((2, 2),), straddle_frac=0.0)
    assert sum(1 for s in sc.signs if s.straddles) <= 1


# ---------------------------------------------------------------- ground truth


def test_ground_truth_json_round_trip(scene):
    gt = scene.ground_truth()
    text = json.dumps(gt, ensure_ascii=False)
    back = json.loads(text)
    assert back == gt
    assert back["seed"] == 11 and back["size"] == [W, H]
    assert back["grids"] == ["2x2", "3x3", "4x4", "5x5"]
    assert signs_from_ground_truth(back) == scene.signs
    assert [Sign.from_dict(d) for d in back["signs"]] == scene.signs


# ------------------------------------------------------------------ scene sets


def test_scene_sets():
    smoke = scene_set("smoke")
    assert len(smoke) == 2 and all(w * h <= 1_200_000 for _, w, h in smoke)
    std = scene_set("standard", seed=3)
    assert len({s for s, _, _ in std}) == len(std)
    sizes = {(w, h) for _, w, h in std}
    assert (4000, 3000) in sizes and (3000, 4000) in sizes and (8000, 2000) in sizes
    assert sum(w * h for _, w, h in std) <= 60_000_000
    full = {(w, h) for _, w, h in scene_set("full")}
    assert (8660, 5773) in full and (6000, 4000) in full
    assert scene_set("standard", 0) == scene_set("standard", 0)
    assert scene_set("standard", 0) != scene_set("standard", 1)
    with pytest.raises(ValueError):
        scene_set("nope")


def test_smoke_set_builds():
    for seed, w, h in scene_set("smoke"):
        sc = make_scene(seed, w, h)
        assert sc.image.size == (w, h) and len(sc.signs) == 24


def test_too_many_signs_fails_clearly():
    with pytest.raises(ValueError, match="could not place"):
        make_scene(1, 200, 150, n_signs=60, max_height_frac=0.1, min_height_frac=0.08)


# ------------------------------------------------------------- bundled sample


def test_bundled_sample_matches_its_ground_truth():
    from PIL import Image

    jpg, js = SAMPLES / "street.jpg", SAMPLES / "street.json"
    assert jpg.is_file() and js.is_file()
    assert jpg.stat().st_size < 1_600_000
    gt = json.loads(js.read_text(encoding="utf-8"))
    with Image.open(jpg) as im:
        assert im.size == tuple(gt["size"]) and im.mode == "RGB"
    signs = signs_from_ground_truth(gt)
    assert len(signs) == 16
    w, h = gt["size"]
    for s in signs:
        assert 0 <= s.box[0] < s.box[2] <= w and 0 <= s.box[1] < s.box[3] <= h
        assert s.straddles == straddled_grids(s.box, w, h, gt["grids"])


def test_bundled_sample_ground_truth_is_reproducible():
    gt = json.loads((SAMPLES / "street.json").read_text(encoding="utf-8"))
    w, h = gt["size"]
    sc = make_scene(gt["seed"], w, h, n_signs=len(gt["signs"]))
    regenerated = sc.ground_truth()
    assert regenerated == {k: v for k, v in gt.items() if k in regenerated}


def test_missing_cjk_font_names_the_package(monkeypatch):
    import testkit.scenes as scenes

    monkeypatch.setattr(scenes, "_cjk_font_candidates", lambda: [])
    scenes._cjk_font_source.cache_clear()
    scenes._cjk_font.cache_clear()
    try:
        with pytest.raises(scenes.FontMissingError, match="manimgx-fonts-cjk"):
            scenes.make_scene(1, 600, 400, n_signs=6)
    finally:
        scenes._cjk_font_source.cache_clear()
        scenes._cjk_font.cache_clear()
