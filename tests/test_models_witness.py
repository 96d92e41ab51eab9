"""Another model as a witness (mosaic compare): what each other model read at a reading's place, and confirmed only
where a model of another family read the same text and the detector did not find the place blank."""

from __future__ import annotations

from mosaic.compare import with_models_witness
from mosaic.schema import Reading


def r(text, box, status="unconfirmed", variants=()) -> Reading:
    return Reading(text=text, box=box, tiles=["r1c1"], views=["r1c1"], status=status, confirmed=status == "confirmed",
                   variants=list(variants))


def only(readings, text) -> Reading:
    return next(x for x in readings if x.text == text)


def test_another_family_reading_the_same_text_confirms_and_is_named():
    out = with_models_witness({"qwen2.5vl:7b": [r("HOTEL", (100, 100, 200, 130)), r("PARK", (400, 50, 480, 80))],
                               "gemma3:4b": [r("Hotel", (104, 98, 205, 128))]})
    hotel = only(out["qwen2.5vl:7b"], "HOTEL")
    assert hotel.status == "confirmed" and "gemma3:4b" in hotel.reason
    assert hotel.witnesses.models == {"gemma3:4b": "Hotel"}
    park = only(out["qwen2.5vl:7b"], "PARK")
    assert park.status == "unconfirmed" and park.witnesses.models == {"gemma3:4b": None}
    assert out["gemma3:4b"][0].status == "confirmed" and out["gemma3:4b"][0].witnesses.models == {
        "qwen2.5vl:7b": "HOTEL"}
    assert [x.text for x in out["qwen2.5vl:7b"]] == ["HOTEL", "PARK"]  # confirmed first


def test_a_model_of_the_same_family_confirms_nothing():
    out = with_models_witness({"qwen2.5vl:7b": [r("BAKERY", (10, 10, 90, 40))],
                               "qwen2.5vl:3b": [r("BAKERY", (10, 10, 90, 40))]})
    assert out["qwen2.5vl:7b"][0].status == "unconfirmed"
    assert out["qwen2.5vl:7b"][0].witnesses.models == {"qwen2.5vl:3b": "BAKERY"}


def test_two_families_agreeing_where_the_detector_saw_no_text_stay_probably_absent():
    out = with_models_witness({"qwen2.5vl:7b": [r("BAKERY", (10, 10, 90, 40), status="probably_absent")],
                               "gemma3:4b": [r("BAKERY", (12, 10, 92, 40), status="probably_absent")]})
    assert {x[0].status for x in out.values()} == {"probably_absent"}


def test_another_familys_different_text_is_a_variant_and_confirms_nothing():
    out = with_models_witness({"qwen2.5vl:7b": [r("橋本", (10, 10, 60, 40))],
                               "gemma3:4b": [r("桶本", (12, 11, 61, 41))]})
    mine = out["qwen2.5vl:7b"][0]
    assert mine.status == "unconfirmed" and mine.variants == ["桶本"] and mine.witnesses.models == {"gemma3:4b": "桶本"}


def test_existing_witnesses_are_kept_and_a_confirmed_reading_keeps_its_reason():
    from mosaic.schema import Witnesses

    mine = r("OPEN", (10, 10, 60, 40), status="confirmed").model_copy(update={
        "reason": "an independent reader read it", "witnesses": Witnesses(views=["r1c1"], detector="text")})
    out = with_models_witness({"a-model": [mine], "gemma3:4b": [r("OPEN", (10, 10, 60, 40))]})
    kept = out["a-model"][0]
    assert kept.reason == "an independent reader read it" and kept.witnesses.detector == "text"
    assert kept.witnesses.models == {"gemma3:4b": "OPEN"}
