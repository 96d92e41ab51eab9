"""The review engine (mosaic.engine): a planner of phases, what to ask, counting and the report; the one driver
(mosaic.driver) on a thread pool and in a Prefect flow.

The model is the stand-in VLM, called through the call seam (MOSAIC_COMPLETION) as LiteLLM would be."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_photo
from mosaic import driver
from mosaic.context import RunContext
from mosaic.engine import Outcome, Review, Work
from mosaic.errors import RunFailed
from mosaic.llm import cached_reply
from mosaic.steps import ask, perform
from mosaic.schema import View
from mosaic.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = "testkit.fake_vlm:completion"
PLACED = "testkit.fake_vlm:placed_completion"  # the same, saying where it read


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setenv("MOSAIC_COMPLETION", STAND_IN)


def context(tmp_path, **overrides) -> tuple[RunContext, object]:
    settings = load_settings(**{"cache_dir": tmp_path / "memo", "completion": STAND_IN} | overrides)
    return RunContext.from_settings(settings, "openai/stand-in", "http://127.0.0.1:9/v1"), settings


def drive_by_hand(review: Review, ctx: RunContext, fail: set[str] = frozenset()) -> list[str]:
    """The smallest driver: one step at a time, in this thread; `fail` names steps that fail."""
    asked = []
    while not review.finished:
        steps = review.ready(1)  # one step that asks the backend, and any local work that is ready
        if not steps:
            break
        for step in steps:
            asked.append(step.name)
            if step.name in fail:
                review.done(step, Outcome(replies=[None] * len(step.calls), error=RuntimeError("injected failure")))
            else:
                review.done(step, perform([step], ctx)[0])
    return asked


def test_ready_keeps_to_the_calls_asked_for_but_gives_at_least_one_step(tmp_path):
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text", "subjects"], settings)
    review = Review(plan, ctx.backend)
    orient = review.ready(calls=0)
    assert [s.name for s in orient] == ["orient"]  # over the calls asked for, but the first step goes
    review.done(orient[0], perform(orient, ctx)[0])
    first = [s for s in review.ready(calls=5) if s.needs_backend]
    assert sum(len(s.calls) for s in first) <= 5 and len(first) == 2  # two views of two phases each
    rest = [s for s in review.ready() if s.needs_backend]
    assert rest and not {s.name for s in rest} & {s.name for s in first}


def test_the_engine_does_nothing_in_its_constructor_and_moves_through_its_phases(tmp_path):
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text", "subjects"], settings)
    from mosaic.second_look import SecondLook

    review = Review(plan, ctx.backend, SecondLook())
    assert review.outcomes == {} and review.phase == "orient" and not review.finished
    phases = []
    while not review.finished:
        steps = review.ready()
        phases.append((review.phase, sorted({s.kind for s in steps})))
        for step in steps:
            review.done(step, perform([step], ctx)[0])
    kinds = [k for _, ks in phases for k in ks]
    assert [p for p, _ in phases][:3] == ["orient", "views", "second look"]
    assert kinds.index("look") > max(i for i, k in enumerate(kinds) if k == "view" and i < kinds.index("look"))
    assert kinds[-1] == "final" and review.phase == "done"
    stats = review.stats  # derived from the outcomes: every answered reply counted once
    assert stats.total == sum(len(o.replies) for o in review.outcomes.values()) == stats.made


def test_the_photo_prepare_cut_is_not_decoded_again_by_the_local_steps_yet_a_changed_file_is_refused(
        tmp_path, monkeypatch):
    from mosaic import pipeline
    from mosaic.errors import BadImage

    decoded, real = [], pipeline.decode_image
    monkeypatch.setattr(pipeline, "decode_image", lambda data, name="image": decoded.append(name) or real(data, name))
    ctx, settings = context(tmp_path)
    path = make_photo(tmp_path / "p.png")
    plan = ctx.prepare(str(path), "light", "2x2", ["text"], settings)
    image = pipeline.original_image(plan)  # what each view's witnesses, the second look and the evidence look at
    assert image().size == (plan.width, plan.height) and image() is image() and len(decoded) == 1
    Path(path).write_bytes(Path(path).read_bytes() + b"changed")
    with pytest.raises(BadImage, match="changed after the run started"):
        image()


def test_a_views_readings_are_witnessed_as_it_answers_and_the_second_look_finds_them_witnessed(tmp_path,
                                                                                               monkeypatch):
    from mosaic import evidence
    from mosaic.second_look import SecondLook

    ctx, settings = context(tmp_path, completion=PLACED)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text"], settings)
    review = Review(plan, ctx.backend, SecondLook(), witnesses={"on": ["detector", "reader"], "similarity": 1.0})
    orient = review.ready(1)
    review.done(orient[0], perform(orient, ctx)[0])
    regions, *first = review.ready(1)  # the second look's text-like regions, found while views are asked
    assert regions.kind == "regions" and [s.kind for s in first] == ["view"]
    review.done(regions, perform([regions], ctx)[0])
    review.done(first[0], perform(first, ctx)[0])
    early = review.ready(0)  # no room at the backend: the view's witnesses go all the same
    assert [(s.kind, s.name) for s in early] == [("view-witness", "witness-" + first[0].target)]
    assert early[0].readings and all(r.views == [first[0].target] for r in early[0].readings)
    while True:
        steps = review.ready()
        early += [s for s in steps if s.kind == "view-witness"]
        views = [s for s in steps if s.kind == "view"]
        if not views:
            break
        for step in views:
            review.done(step, perform([step], ctx)[0])
    assert {s.kind for s in early} == {"view-witness"} and len(early) == len(review.observed)
    assert review.ready() == []  # the second look waits for every view's witnesses
    for step in early:
        review.done(step, perform([step], ctx)[0])
    look = review.ready()
    assert [s.kind for s in look] == ["look"]
    looked = []
    real = evidence.look_locally
    monkeypatch.setattr(evidence, "look_locally", lambda *a: looked.append(a) or real(*a))
    review.done(look[0], perform(look, ctx)[0])
    assert looked == []  # every place was looked at already, while the backend answered other views
    no_witnesses = Review(plan, ctx.backend, SecondLook())
    assert "view-witness" not in {k for k in drive_kinds(no_witnesses, ctx)}


def test_the_text_regions_are_found_once_beside_the_first_views_and_reach_the_second_look_wherever_it_runs(
        tmp_path, monkeypatch):
    from mosaic import steps, text_regions
    from mosaic.second_look import SecondLook

    ctx, settings = context(tmp_path, plan="full")  # a shaped plan finds them before the first call
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text"], settings)
    detected, wanted, real_detect, real_regions = [], [], text_regions.detect, steps.text_regions
    monkeypatch.setattr(text_regions, "detect", lambda *a: detected.append(a) or real_detect(*a))
    monkeypatch.setattr(steps, "text_regions", lambda *a, **k: wanted.append(k) or real_regions(*a, **k))
    review = Review(plan, ctx.backend, SecondLook(max_share=3.0))  # room to zoom where no view read
    orient = review.ready(1)
    review.done(orient[0], perform(orient, ctx)[0])
    ready = review.ready()
    regions = [s for s in ready if s.kind == "regions"]
    assert len(regions) == 1 and [s.kind for s in ready if s.kind != "regions"] == ["view"] * len(plan.views)
    for step in ready:
        if step.kind == "view":
            review.done(step, perform([step], ctx)[0])
    assert review.ready() == []  # the second look waits for the regions
    review.done(regions[0], perform(regions, context(tmp_path / "worker")[0])[0])  # found on another machine
    look = review.ready()
    assert [s.kind for s in look] == ["look"] and look[0].found
    outcome = perform(look, context(tmp_path / "another-worker")[0])[0]  # a store that never saw the image
    assert outcome.ok and len(wanted) == 2 and len(detected) == 1  # the look was given them: not detected again


def test_witnesses_on_workers_with_stores_of_their_own_find_what_one_machine_finds(tmp_path):
    """Each view's witnesses and the evidence run on machines of their own (each its own cache folder, as Dask
    workers): the rerun on this machine, from the memo, asks nothing again, not even the final review, whose
    prompt holds what the witnesses found."""
    from mosaic.second_look import SecondLook

    ctx, settings = context(tmp_path, completion=PLACED)  # at this size a place's finding depends on its neighbours
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png", size=(1000, 800))), "light", "2x2", ["text"], settings)
    on = {"on": ["detector", "reader"], "similarity": 1.0}
    review = Review(plan, ctx.backend, SecondLook(), witnesses=on)
    machines = iter(range(100))
    while steps := review.ready():
        for step in steps:
            where = context(tmp_path / f"worker{next(machines)}")[0] if step.kind in ("view-witness", "evidence") else ctx
            review.done(step, perform([step], where)[0])
    assert review.finished and next(machines) > 4
    again = Review(plan, ctx.backend, SecondLook(), witnesses=on)
    while steps := again.ready():
        for step in steps:
            assert all(cached_reply(c, ctx.memo) for c in step.calls), f"{step.name} asked again"
            again.done(step, perform([step], ctx)[0])
    assert again.report().model_dump(exclude={"calls"}) == review.report().model_dump(exclude={"calls"})


def drive_kinds(review: Review, ctx: RunContext) -> list[str]:
    kinds = []
    while steps := review.ready():
        for step in steps:
            kinds.append(step.kind)
            review.done(step, perform([step], ctx)[0])
    return kinds


def test_the_engine_asks_in_order_counts_and_builds_the_report(tmp_path):
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text", "subjects"], settings)
    review = Review(plan, ctx.backend)
    asked = drive_by_hand(review, ctx)
    assert asked[0] == "orient" and asked[-1] == "write-review"
    # a tile's synthesis is asked as soon as its views have answered, before later rows' views
    assert asked.index("synthesize-r1c1") < asked.index("inspect-r2c2")
    assert len([a for a in asked if a.startswith("inspect-")]) == len(plan.views) == 8
    report = review.report()
    assert report.complete and report.calls.made == report.calls.planned == plan.total_calls == 1 + 8 * 2 + 4 + 1
    assert [t.tile for t in report.tiles] == ["r1c1", "r1c2", "r2c1", "r2c2"]
    sign = next(r for r in report.readings if r.views == ["r1c1|r1c2"])  # evidence as data: the view it was read in
    assert sign.text.startswith("SIGN-")

    # the same review again: the memo answers every step the engine hands out, so no call is made
    again = Review(plan, ctx.backend)
    while steps := again.ready():
        for step in steps:
            if not step.needs_backend:  # local work (the witnesses): kept in the blob store, nothing to ask
                again.done(step, perform([step], ctx)[0])
                continue
            hits = [cached_reply(c, ctx.memo) for c in step.calls]
            assert None not in hits
            again.done(step, Outcome(replies=hits))
    assert again.finished and again.report().calls.cached == plan.total_calls
    assert again.report().model_dump(exclude={"calls"}) == report.model_dump(exclude={"calls"})


def test_a_failed_view_fails_its_tiles_and_keeps_the_rest(tmp_path):
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text", "subjects"], settings)
    review = Review(plan, ctx.backend)
    drive_by_hand(review, ctx, fail={"inspect-r1c2"})
    assert review.finished and review.failed_tiles == ["r1c2"]
    assert review.blocked == [("r1c2", ["r1c2"])]  # the Prefect driver shows it as a failed synthesis task
    report = review.report()
    assert not report.complete and report.calls.failed == 2 and report.review == ""
    failure = review.failure("out/x", "run it again")
    assert isinstance(failure, RunFailed) and failure.failed_tiles == ["r1c2"]
    assert "1 of 4 tiles failed after retries: r1c2 (injected failure)" in str(failure)


def test_more_views_can_be_asked_after_answers_come_in(tmp_path):
    """The ground of a second look: a follow-up adds a closer view of a tile once its own view has answered."""
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text"], settings)
    planned = plan.total_calls

    def closer_look(review: Review, view: View, observations) -> None:
        if view.id == "r1c1" and any(o.readings for o in observations):
            x0, y0, x1, y1 = view.box
            review.add_view(View(id="r1c1+detail", kind="detail", cells=view.cells, box=(x0, y0, (x0 + x1) // 2,
                                 (y0 + y1) // 2), image_sha256=plan.views[-1].image_sha256, phases=["text"]))

    review = Review(plan, ctx.backend, follow_up=closer_look)
    asked = drive_by_hand(review, ctx)
    assert "inspect-r1c1+detail" in asked and asked.index("inspect-r1c1+detail") < asked.index("write-review")
    report = review.report()
    assert report.complete and report.calls.planned == planned + 1 == report.calls.made
    tile = next(t for t in report.tiles if t.tile == "r1c1")
    assert "r1c1+detail" in tile.views and any("r1c1+detail" in r.views for r in tile.readings)
    with pytest.raises(ValueError, match="already reported"):
        review.add_view(View(id="late", kind="detail", cells=[[0, 0]], box=(0, 0, 9, 9), image_sha256="x",
                             phases=["text"]))


def test_a_tasks_inputs_pickle_and_its_body_runs_in_another_process(tmp_path):
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text"], settings)
    review = Review(plan, ctx.backend)
    [orientation] = review.ready()
    blob = tmp_path / "work.pickle"
    blob.write_bytes(pickle.dumps((orientation, ctx)))
    script = ("import pickle, sys, json\nfrom mosaic.steps import ask\n"
              "work, ctx = pickle.loads(open(sys.argv[1], 'rb').read())\n"
              "print(json.dumps([r.model_dump() for r in ask(work, ctx).replies]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(blob)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    [reply] = json.loads(done.stdout)
    assert reply["cached"] is False and reply["content"].startswith("A test scene")
    # the other process answered into the shared memo: here it is a memo hit, and the review goes on from it
    review.done(orientation, ask(orientation, ctx))
    assert review.stats.cached == 1 and review.orientation == reply["content"]
    assert all(isinstance(w, Work) for w in review.ready())


def test_a_run_without_the_memo_leaves_nothing_in_the_cache(tmp_path, stand_in):
    image = make_photo(tmp_path / "p.png")
    report = driver.review(str(image), "openai/stand-in", "http://127.0.0.1:9/v1", grid="2x2", phases=["text"],
                           use_memo=False, out_dir=str(tmp_path / "out"))
    assert report.complete and report.calls.made == report.calls.planned
    assert not (tmp_path / "memo").exists()  # no answers, no crops, no plan
    assert (Path(report.report_dir) / "report.json").is_file()


@pytest.mark.slow
def test_both_drivers_make_the_same_calls_counts_and_report(tmp_path, stand_in, monkeypatch):
    """The thread-pool driver (mosaic.review) and the Prefect flow run the same engine: on the same inputs, the
    same number of calls, the same counts and the same report."""
    from mosaic_flows.review import run_review

    image = str(make_photo(tmp_path / "p.png"))
    args = dict(grid="2x2", phases=["text", "subjects"])
    monkeypatch.setenv("MOSAIC_CACHE_DIR", str(tmp_path / "memo-threads"))
    by_threads = driver.review(image, "openai/stand-in", "http://127.0.0.1:9/v1", out_dir=str(tmp_path / "a"), **args)
    monkeypatch.setenv("MOSAIC_CACHE_DIR", str(tmp_path / "memo-prefect"))
    state = run_review(image_path=image, model="openai/stand-in", api_base="http://127.0.0.1:9/v1",
                       out_dir=str(tmp_path / "b"), **args)
    by_prefect = state.result()
    same = {"elapsed_s", "report_dir"}
    assert by_threads.model_dump(mode="json", exclude=same) == {k: v for k, v in by_prefect.items() if k not in same}
    assert by_threads.calls.made == by_threads.calls.planned == 1 + 8 * 2 + 4 + 1
    for folder in (by_threads.report_dir, by_prefect["report_dir"]):
        assert (Path(folder) / "report.md").read_text().count("## Review") == 1

    with pytest.raises(RunFailed, match="tiles failed after retries"):
        monkeypatch.setenv("MOSAIC_COMPLETION", "tests_engine_faults:failing_r1c2")
        sys.path.insert(0, str(tmp_path))
        (tmp_path / "tests_engine_faults.py").write_text(FAILING_R1C2)
        driver.review(image, "openai/stand-in", "http://127.0.0.1:9/v1", out_dir=str(tmp_path / "c"),
                      use_memo=False, **args)


FAILING_R1C2 = '''
from mosaic.errors import BackendError
from testkit.fake_vlm import completion


def failing_r1c2(backend):
    inner = completion(backend)

    def complete(call, messages, api_key=None, timeout_s=0.0):
        if "This crop is tile r1c2 " in call.prompt:
            raise BackendError("injected fault", retryable=False)
        return inner(call, messages, api_key, timeout_s)

    return complete
'''


def test_every_run_reads_the_image_size_limit(tmp_path, stand_in, monkeypatch):
    """MOSAIC_MAX_IMAGE_MP holds for every run, not only the CLI's (deployments and `serve` go through here)."""
    from PIL import Image

    from mosaic.errors import BadImage

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    monkeypatch.setenv("MOSAIC_MAX_IMAGE_MP", "0.5")
    image = make_photo(tmp_path / "p.png", size=(1200, 800))  # 0.96 MP
    with pytest.raises(BadImage, match="MOSAIC_MAX_IMAGE_MP="):
        driver.review(str(image), "openai/stand-in", "http://127.0.0.1:9/v1", grid="2x2", phases=["text"])


def test_views_added_from_the_memo_wait_until_the_hook_is_done(tmp_path):
    """On a rerun the memo answers added views on the spot; a hook adding two views must still see its tile open."""
    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "1x1", ["text"], settings)

    def two_closer_looks(review: Review, view: View, observations) -> None:
        if view.kind == "tile":
            for i in range(2):
                review.add_view(View(id=f"detail-{i}", kind="detail", cells=view.cells, box=view.box,
                                     image_sha256=view.image_sha256, phases=["text"]))

    for run in ("first", "from the memo"):
        review = Review(plan.model_copy(deep=True), ctx.backend, follow_up=two_closer_looks)
        drive_by_hand(review, ctx)
        report = review.report()
        assert report.complete and report.tiles[0].views == ["detail-0", "detail-1", "r1c1"], run
        assert report.calls.planned == 1 + 3 + 1 == report.calls.total, run
    with pytest.raises(ValueError, match="not a tile"):
        review.add_view(plan.views[0].model_copy(update={"id": "extra"}))


def test_a_backend_that_refuses_the_orientation_fails_with_its_own_error(tmp_path):
    from mosaic.errors import BackendError

    ctx, settings = context(tmp_path)
    plan = ctx.prepare(str(make_photo(tmp_path / "p.png")), "light", "2x2", ["text"], settings)
    review = Review(plan, ctx.backend)
    [orientation] = review.ready()
    review.done(orientation, Outcome(replies=[None], error=BackendError("model 'x' not found at http://127.0.0.1:9/v1",
                                                                          retryable=False)))
    assert review.finished and review.failed_tiles == ["r1c1", "r1c2", "r2c1", "r2c2"]
    failure = review.failure(None, None)
    assert isinstance(failure, BackendError) and failure.exit_code == 3 and "not found" in str(failure)
