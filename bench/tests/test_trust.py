"""The trust benchmark's scoring (bench/trust.py) on hand-made reports: no model runs."""

from __future__ import annotations

from bench import trust
from testkit.scenes import Sign

import pytest  # noqa: E402

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


def sign(text):
    return Sign(text=text, script="latin", box=(10, 10, 50, 20), straddles=(), dim=False)


SIGNS = [sign("BRAKTUN"), sign("0312-5567"), sign("KOLVAMI"), sign("ZEPTORA")]


def reading(text, confirmed=None, variants=()):
    return {"text": text, "confirmed": confirmed, "variants": list(variants)}


def report(readings, review="", tiles=(), second_look=True):
    return {"readings": readings, "review": review, "tiles": list(tiles), "second_look": second_look,
            "calls": {"total": 10, "second_look": 2}}


def test_confirmed_real_is_the_share_of_confirmed_readings_that_match_a_sign():
    r = report([reading("BRAKTUN", True), reading("0312-5567", True), reading("QQQQQ", True),
                reading("XXXXX", False), reading("KOLVAMI")])
    checks = trust.reading_checks(SIGNS, r)
    assert trust.confirmed_real(checks) == round(2 / 3, 4)
    assert trust.unconfirmed_real(checks) == 0.5  # a reading not judged counts as unconfirmed


def test_confirmed_recall_counts_signs_in_confirmed_readings_and_their_variants_only():
    r = report([reading("BRAKTUM", True, variants=["BRAKTUN"]), reading("0312-5567", False),
                reading("KOLVAMI")], tiles=[{"readings": [reading("ZEPTORA")]}])
    hits = trust.sign_hits(SIGNS, r)
    assert trust.confirmed_recall(hits) == 0.25
    assert hits["report"] == [True, True, True, True]  # tile readings and variants count for the report


def test_review_vs_report_is_signs_in_the_review_over_signs_in_the_report():
    r = report([reading("BRAKTUN"), reading("0312-5567"), reading("KOLVAMI"), reading("QQQQQ")],
               review="A sign reads braktun; a phone number 0312-5567.")
    hits = trust.sign_hits(SIGNS, r)
    assert trust.review_vs_report(hits) == round(2 / 3, 4)
    assert trust.review_vs_report(trust.sign_hits(SIGNS, report([]))) is None


def test_a_report_with_no_reading_judged_and_no_second_look_has_no_confirmed_figures():
    r = report([reading("BRAKTUN"), reading("QQQQQ")], second_look=False)
    figures = trust.mosaic_figures([trust.score_review(r, SIGNS)])
    assert figures["confirmed_real"] is None and figures["confirmed_recall"] is None
    assert figures["invented_share"] == 0.5 and figures["invented_examples"] == ["QQQQQ"]


def test_figures_pool_the_scenes_and_targets_say_met_or_not():
    good = report([reading("BRAKTUN", True), reading("0312-5567", True), reading("KOLVAMI", True),
                   reading("ZEPTORA", True)])
    bad = report([reading("BRAKTUN", True), reading("QQQQQ", True)])
    figures = trust.mosaic_figures([trust.score_review(good, SIGNS), trust.score_review(bad, SIGNS)])
    assert figures["confirmed_real"] == round(5 / 6, 4)
    assert figures["confirmed_recall"] == round(5 / 8, 4)
    assert figures["calls"] == 20 and figures["second_look_calls"] == 4
    first = dict(figures, calls=10)
    targets = trust.case_targets("inventing", {trust.SECOND_LOOK: figures, trust.FIRST_LOOK: first})
    assert [t["met"] for t in targets] == [False, False, False]  # 0.83 < 0.95, 0.62 < 0.90, 2.0 > 1.3
