"""Unit tests of small functions: parsing a model's JSON, merging readings, tile reports, the final review's
completeness, and how backend errors are classified. No network, no Prefect."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported: no cost-map download

import litellm  # noqa: E402
import pytest  # noqa: E402

from mosaic.steps import retry_wait  # noqa: E402
from mosaic.errors import BackendError  # noqa: E402
from mosaic.llm import classify  # noqa: E402
from mosaic.pipeline import complete_review, make_tile_report, parse_json_object  # noqa: E402
from mosaic.readings import merge_readings  # noqa: E402
from mosaic.schema import ModelCall, ModelReply, Observation, Plan, Reading, View  # noqa: E402


def tile(view_id="r1c2", cell=(1, 0)) -> View:
    return View(id=view_id, kind="tile", cells=[cell], box=(100, 0, 200, 100), image_sha256="0" * 64)


def observation(view, phase, readings=(), items=(), notes="") -> Observation:
    return Observation(view=view, phase=phase, readings=list(readings), items=list(items), notes=notes,
                       reply=ModelReply(content="{}"))


def plan() -> Plan:
    """Two tiles side by side: r1c1 (0-100) and r1c2 (100-200)."""
    views = [View(id="r1c1", kind="tile", cells=[(0, 0)], box=(0, 0, 100, 100), image_sha256="0" * 64), tile()]
    return Plan(image_path="x.png", image_sha256="0" * 64, width=200, height=100, cols=2, rows=1, density="quick",
                phases=["text"], overview_sha256="0" * 64, views=views)


# --- parse_json_object ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('{"summary": "a shop", "n": 2}', {"summary": "a shop", "n": 2}),
    ('  \n{"a": [1, 2]}\n ', {"a": [1, 2]}),
    ('Here it is:\n```json\n{"readings": ["OPEN"]}\n```\nHope that helps.', {"readings": ["OPEN"]}),
    ('```\n{"items": ["cat"]}\n```', {"items": ["cat"]}),
    ('Sure! The answer is {"notes": "dim light"} as asked.', {"notes": "dim light"}),
], ids=["bare", "padded", "fenced-json", "fenced", "in-prose"])
def test_parse_json_object_finds_the_object(text, expected):
    assert parse_json_object(text) == expected


@pytest.mark.parametrize("text", ['["OPEN", "EXIT"]', "no JSON here at all", '{"a": 1', "", '"just a string"', "42"],
                         ids=["list", "garbage", "truncated", "empty", "string", "number"])
def test_parse_json_object_returns_none_without_an_object(text):
    assert parse_json_object(text) is None


# --- merge_readings --------------------------------------------------------------------------------------------

def test_merge_keeps_one_reading_per_text_ignoring_case_and_whitespace():
    merged = merge_readings([
        Reading(text="Open Now", views=["r1c1"]),
        Reading(text="open  now", views=["r1c2"]),
        Reading(text="EXIT", views=["r2c1"]),
    ])
    assert [r.text for r in merged] == ["Open Now", "EXIT"]


def test_merge_drops_a_reading_contained_in_a_longer_one():
    merged = merge_readings([
        Reading(text="BAKE", views=["r1c1"]),
        Reading(text="Bakery Rossi", views=["r1c1|r1c2"]),
        Reading(text="ry Rossi", views=["r1c2"]),
    ])
    assert [r.text for r in merged] == ["Bakery Rossi"]


def test_merge_keeps_unclear_only_if_every_copy_was_unclear():
    merged = merge_readings([
        Reading(text="EXIT", unclear=True, views=["r1c1"]),
        Reading(text="exit", unclear=False, views=["r1c2"]),
        Reading(text="PUSH", unclear=True, views=["r1c1"]),
        Reading(text="push", unclear=True, views=["r2c1"]),
    ])
    assert {r.text: r.unclear for r in merged} == {"EXIT": False, "PUSH": True}


def test_merge_unites_the_views_in_order_without_repeats():
    merged = merge_readings([
        Reading(text="EXIT", views=["r1c2"]),
        Reading(text="Exit", views=["r1c2|r1c3", "r1c2"]),
        Reading(text="exit", views=["r1c3"]),
    ])
    assert len(merged) == 1
    assert merged[0].views == ["r1c2", "r1c2|r1c3", "r1c3"]


def test_merge_leaves_its_input_readings_unchanged():
    first = Reading(text="EXIT", views=["r1c1"])
    merge_readings([first, Reading(text="exit", views=["r1c2"])])
    assert first.views == ["r1c1"]


# --- make_tile_report ------------------------------------------------------------------------------------------

def test_tile_report_merges_readings_and_subjects_in_code():
    observations = [
        observation("r1c2", "text", readings=[Reading(text="OPEN", views=["r1c2"], tiles=["r1c2"])]),
        observation("r1c2|r1c3", "text", readings=[Reading(text="open", views=["r1c2|r1c3"], tiles=["r1c2", "r1c3"])]),
        observation("r1c2", "subjects", items=["bicycle", "door"]),
        observation("r1c2|r1c3", "subjects", items=["door", "lamp"]),
    ]
    report = make_tile_report(plan(), tile(), observations, None)
    assert [(r.text, r.views) for r in report.readings] == [("OPEN", ["r1c2", "r1c2|r1c3"])]
    assert report.subjects == ["bicycle", "door", "lamp"]
    assert report.views == ["r1c2", "r1c2|r1c3"]
    assert (report.tile, report.position, report.box) == ("r1c2", {"row": 1, "col": 2}, (100, 0, 200, 100))


def test_tile_report_summary_comes_from_the_synthesis_json():
    reply = ModelReply(content='```json\n{"summary": "A bakery front.", "characteristics": "warm light"}\n```')
    report = make_tile_report(plan(), tile(), [observation("r1c2", "subjects", notes="a shop")], reply)
    assert report.report == "A bakery front."
    assert report.characteristics == "warm light"


def test_tile_report_summary_is_the_reply_text_when_it_is_not_json():
    reply = ModelReply(content="  A bakery front with a red awning.\n")
    report = make_tile_report(plan(), tile(), [observation("r1c2", "subjects", notes="a shop")], reply)
    assert report.report == "A bakery front with a red awning."


def test_tile_report_without_a_reply_uses_the_tiles_own_notes():
    observations = [
        observation("r1c2", "text", notes="A sign above the door."),
        observation("r1c2|r1c3", "text", notes="Seam notes are not the tile's own."),
        observation("r1c2", "characteristics", notes="Sharp, daylight."),
    ]
    report = make_tile_report(plan(), tile(), observations, None)
    assert report.report == "A sign above the door. Sharp, daylight."
    assert report.characteristics == "Sharp, daylight."


def test_tile_report_without_observations_says_not_inspected():
    report = make_tile_report(plan(), tile(), [], None)
    assert report.report == "Not inspected."
    assert (report.readings, report.subjects, report.views) == ([], [], [])


# --- complete_review -------------------------------------------------------------------------------------------

def test_complete_review_lists_every_reading_confirmed_ones_apart_with_their_tiles():
    readings = [Reading(text="Bakery Rossi", views=["r1c1", "r1c1|r1c2"], tiles=["r1c1"], confirmed=True),
                Reading(text="EXIT", views=["r1c2"], tiles=["r1c2"], confirmed=False, variants=["EXJT"]),
                Reading(text="No Parking", views=["r1c1|r1c2"], tiles=["r1c1", "r1c2"], on_tile_line=True,
                        confirmed=False)]
    review = complete_review("A street with BAKERY ROSSI on the left.\n", readings)
    head, confirmed, others = review.split("\n\n")
    assert head == "A street with BAKERY ROSSI on the left."
    assert confirmed.startswith("Readings confirmed") and '"Bakery Rossi" in r1c1' in confirmed
    assert "EXIT" not in confirmed
    assert others.startswith("Readings not confirmed")
    assert '"EXIT" in r1c2; also read as \'EXJT\'' in others
    assert '"No Parking" in r1c1, r1c2 (on a tile line)' in others


def test_complete_review_with_no_readings_is_the_models_text():
    assert complete_review("Nothing legible.\n", []) == "Nothing legible."


# --- classify and the retry policy ------------------------------------------------------------------------------

CALL = ModelCall(model="openai/x", api_base="http://127.0.0.1:9/v1", system="s", prompt="p")
KEY = "sk-test-5ecret-key"
MODEL = dict(model="openai/x", llm_provider="openai")


@pytest.mark.parametrize("make_error, retryable, says", [
    pytest.param(lambda: litellm.NotFoundError(message=f"no such model ({KEY})", **MODEL), False, "not found",
                 id="not-found"),
    pytest.param(lambda: litellm.Timeout(message=f"Request timed out ({KEY})", **MODEL), True,
                 "did not answer in time", id="timeout"),
    pytest.param(lambda: litellm.APIConnectionError(message=f"Cannot connect to host ({KEY})", **MODEL), True,
                 "cannot reach", id="connection"),
    pytest.param(lambda: litellm.BadRequestError(message=f"image too large ({KEY})", **MODEL), False,
                 "rejected the request", id="bad-request"),
    pytest.param(lambda: litellm.AuthenticationError(message=f"Incorrect API key provided: {KEY}", **MODEL), False,
                 "refused the credentials", id="auth"),
    pytest.param(lambda: litellm.RateLimitError(message=f"slow down ({KEY})", **MODEL), True, "failed",
                 id="rate-limit"),
    pytest.param(lambda: Exception(f"something broke ({KEY})"), True, "failed", id="plain-exception"),
])
def test_classify_says_whether_to_retry_names_the_backend_and_hides_the_key(make_error, retryable, says):
    failure = classify(make_error(), CALL, KEY)
    assert isinstance(failure, BackendError)
    assert failure.retryable is retryable
    message = str(failure)
    assert "http://127.0.0.1:9/v1" in message
    assert says in message
    assert KEY not in message


def test_one_retry_policy_fails_over_at_once_honours_retry_after_once_and_backs_off_with_jitter():
    busy = BackendError("429", retryable=True, retry_after=7.0)
    assert retry_wait(busy, 0, 1.0, failover=True) == 0.0  # another server: at once
    assert retry_wait(busy, 0, 1.0) == 7.0  # the server said when
    waits = [retry_wait(busy, 2, 1.0, waited_as_asked=True) for _ in range(50)]  # then backoff: 4 s ± 20%
    assert all(3.2 <= w <= 4.8 for w in waits) and len(set(waits)) > 1
    import pickle

    again = pickle.loads(pickle.dumps(BackendError("gone", retryable=False, retry_after=None)))
    assert again.retryable is False and str(again) == "gone"  # across processes with its flag


def test_the_settings_page_has_a_row_for_every_setting_with_its_default_and_description():
    """docs/settings.md is the settings' reference: a field added or changed in mosaic.settings without its row is
    caught here."""
    from pathlib import Path

    from mosaic.settings import Settings

    page = (Path(__file__).parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line for line in page.splitlines() if line.startswith("| `MOSAIC_")}
    for name, field in Settings.model_fields.items():
        row = rows.get(f"MOSAIC_{name.upper()}")
        assert row, f"docs/settings.md has no row for MOSAIC_{name.upper()}"
        cells = [c.strip() for c in row.split("|")]
        if field.default is None or isinstance(field.default, bool) or name in ("cache_dir", "max_image_mp"):
            continue  # none, true/false, or a default said in words
        assert cells[2] == f"`{field.default}`", f"MOSAIC_{name.upper()}: the page says {cells[2]}, the code {field.default}"
        assert field.description.split(".")[0] in cells[3], f"MOSAIC_{name.upper()}: the description differs"
