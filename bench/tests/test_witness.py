"""bench.witness scoring and the stand-in's blank boards (pure)."""

from __future__ import annotations

import random

from testkit.scenes import Sign
from testkit.stand_ins import board_readings, board_text, crop_box
from bench.witness import confirmed_at, figures, scene_figures

import pytest  # noqa: E402

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI

BOARD = (1000, 500, 1200, 540)


def test_a_board_is_read_the_same_in_every_crop_that_shows_most_of_it():
    rng = random.Random(1)
    tile = board_readings([BOARD], crop_box("This crop is tile r1c2 of a 3×3 grid, pixels [900, 0, 1800, 1000]."), rng)
    closer = board_readings([BOARD], crop_box("a closer look at pixels [950, 450, 1250, 600] of the image"), rng)
    assert [s.text for s in tile] == [s.text for s in closer] == [board_text(BOARD)]
    assert abs(tile[0].box[0] - 111) <= 3 and abs(closer[0].box[0] - 167) <= 3
    assert board_readings([BOARD], (0, 0, 1050, 1000), rng) == []  # a quarter of it in the crop
    assert board_readings([BOARD], None, rng) == []  # the whole image (orientation): no box stated


def test_scores_count_boards_confirmed_and_a_looser_threshold():
    signs = [Sign("KARUMEDO", "latin", (0, 0, 10, 10), (), False), Sign("0312-5567", "digits", (0, 0, 9, 9), (), False)]
    scene = {"signs": signs, "blanks": [BOARD]}
    reader = lambda s: {"reader": {"similarity": s}}  # noqa: E731
    report = {"readings": [
        {"text": "KARUMEDO", "confirmed": True, "status": "confirmed", "witnesses": reader(1.0)},
        {"text": "0312-5561", "confirmed": False, "status": "unconfirmed", "witnesses": reader(0.889)},
        {"text": board_text(BOARD), "confirmed": True, "witnesses": None}]}
    got = figures([scene_figures(report, scene)])
    assert (got["confirmed"], got["confirmed_real"], got["cover"], got["boards_confirmed"]) == (2, 0.5, 0.5, 1)
    loose = figures([scene_figures(report, scene, 0.8)])
    assert (loose["confirmed"], loose["confirmed_real"], loose["boards_confirmed"]) == (2, 0.5, 0)
    assert confirmed_at({"witnesses": {"reader": None}}, 0.5) is False
