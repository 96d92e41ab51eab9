"""Trust benchmark: a second look with evidence for every reading, measured with stand-in models.

    python -m bench.trust                              # all cases on 6 scenes
    python -m bench.trust --scenes 2 --cases inventing # fewer scenes, one case
    python -m bench.trust --cold                       # clear the memo first

Stand-in models (testkit/stand_ins.py) behave like small VLMs: they invent text, misread, answer in prose, drop
readings. Each case is one stand-in spec; on the same scenes it runs Mosaic light with the second look, Mosaic light
without it (the first look only), and for the reader cases SAHI-style 3x3 slices and the reader's ceiling (every
sign cropped at full resolution). Writes docs/bench/trust.json and docs/bench/trust.md. Every call is memoized under
$MOSAIC_BENCH_DIR/trust (one memo per case and method), so a rerun is cheap.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import sys
import time
from pathlib import Path

from testkit import score
from bench.run import ALL_PHASES, ROOT, WORK, scenes  # also sets the environment defaults bench.run sets
from testkit.scenes import Sign

TRUST = WORK / "trust"
DOCS = ROOT / "docs" / "bench"
STAND_IN_FACTORY = "testkit.stand_ins:completion"

CASES: dict[str, dict] = {
    "inventing": {
        "group": "inventing",
        "spec": "reader=rapidocr,budget=896,invent=0.2,misread=0.1,style=json,positions=box",
        "meaning": "A model that invents a fifth of its readings and misreads a tenth: the second look should confirm "
                   "the real readings and leave the invented ones unconfirmed, for few extra calls.",
    },
    "prose+drops": {
        "group": "prose",
        "spec": "reader=rapidocr,budget=896,style=prose,drop=0.25,positions=words",
        "meaning": "A model that answers in prose instead of JSON and drops a quarter of what it read: the report "
                   "should still hold the signs, and the final review should keep what the report holds.",
    },
    "rapidocr": {
        "group": "readers",
        "spec": "reader=rapidocr,budget=896",
        "peers": True,
        "meaning": "A plain reader (RapidOCR at 896 px): Mosaic's recall against SAHI-style slicing and against the "
                   "reader's ceiling (each sign cropped at full resolution).",
    },
    "tesseract": {
        "group": "readers",
        "spec": "reader=tesseract,budget=896",
        "peers": True,
        "meaning": "A weaker plain reader (Tesseract at 896 px), which needs larger text: Mosaic's recall against "
                   "SAHI-style slicing and against the reader's ceiling.",
    },
}

TARGETS = {"confirmed_real": 0.95, "confirmed_recall": 0.90, "calls_vs_first_look": 1.30,
           "prose_recall_report": 0.90, "review_vs_report": 0.95, "tesseract_vs_sahi": 1.5}

SECOND_LOOK = "mosaic light, second look"  # the default: with the second look
FIRST_LOOK = "mosaic light, first look only"  # second_look=False: today's behaviour


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ scoring (pure)

def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def reading_texts(reading: dict) -> list[str]:
    """A reading's text and its variants."""
    return [reading.get("text") or "", *(reading.get("variants") or [])]


def report_texts(report: dict) -> list[str]:
    """Everything the report read: its readings (texts and variants) and every tile's readings."""
    texts = [t for r in report.get("readings", []) for t in reading_texts(r)]
    texts += [t for tile in report.get("tiles", []) for r in tile.get("readings", []) for t in reading_texts(r)]
    return texts


def judges_readings(report: dict) -> bool:
    """Does the report say which readings are confirmed? (A report from before the second look does not.)"""
    return report.get("second_look") is True or any(r.get("confirmed") is not None for r in report.get("readings", []))


def confirmed_of(reading: dict, judged: bool) -> bool | None:
    """Confirmed or not when the report judges readings (a reading not judged counts as unconfirmed); else None."""
    return reading.get("confirmed") is True if judged else None


def sign_hits(signs: list[Sign], report: dict) -> dict[str, list[bool]]:
    """Per sign: is it in the report, in the final review, in a confirmed reading (an empty list when unknown)?"""
    judged = judges_readings(report)
    confirmed = [t for r in report.get("readings", []) if confirmed_of(r, judged) for t in reading_texts(r)]
    return {"report": score.recalled(signs, report_texts(report)),
            "review": score.recalled(signs, report.get("review") or ""),
            "confirmed": score.recalled(signs, confirmed) if judged else []}


def reading_checks(signs: list[Sign], report: dict) -> list[dict]:
    """Per reading of the report: its text, whether it is real (matches a sign) and whether it was confirmed."""
    truths, judged = [s.text for s in signs], judges_readings(report)
    return [{"text": r.get("text") or "", "real": not score.invented([r.get("text") or ""], truths),
             "confirmed": confirmed_of(r, judged)} for r in report.get("readings", [])]


def review_vs_report(hits: dict[str, list[bool]]) -> float | None:
    """Signs in the final review over signs in the report."""
    return share(sum(hits["review"]), sum(hits["report"]))


def confirmed_recall(hits: dict[str, list[bool]]) -> float | None:
    """Share of signs whose text is in a confirmed reading (None when the report has no confirmed flags)."""
    return score.rate(hits["confirmed"])


def real_share(checks: list[dict], confirmed: bool) -> float | None:
    """Share of real readings among the confirmed (or the unconfirmed) ones; None when there are none, or no flags."""
    picked = [c for c in checks if c["confirmed"] is confirmed]
    return share(sum(c["real"] for c in picked), len(picked))


def confirmed_real(checks: list[dict]) -> float | None:
    return real_share(checks, True)


def unconfirmed_real(checks: list[dict]) -> float | None:
    return real_share(checks, False)


def join_hits(per_scene: list[dict[str, list[bool]]]) -> dict[str, list[bool]]:
    """The per-sign lists of several scenes, one after the other."""
    keys = per_scene[0].keys() if per_scene else ()
    return {k: [h for hits in per_scene for h in hits[k]] for k in keys}


def mosaic_figures(scored: list[dict]) -> dict:
    """Figures of a Mosaic method from its scenes' scores ({'hits', 'checks', 'calls', 'second_look_calls'})."""
    hits = join_hits([s["hits"] for s in scored])
    checks = [c for s in scored for c in s["checks"]]
    second = [s["second_look_calls"] for s in scored]
    return {"calls": sum(s["calls"] for s in scored),
            "second_look_calls": None if None in second else sum(second),
            "signs": len(hits["report"]),
            "recall_report": score.rate(hits["report"]), "recall_review": score.rate(hits["review"]),
            "review_vs_report": review_vs_report(hits),
            "readings": len(checks), "invented_share": share(sum(not c["real"] for c in checks), len(checks)),
            "confirmed_readings": sum(c["confirmed"] is True for c in checks),
            "confirmed_real": confirmed_real(checks), "confirmed_recall": confirmed_recall(hits),
            "unconfirmed_real": unconfirmed_real(checks),
            "invented_examples": [c["text"] for c in checks if not c["real"]][:6]}


def texts_figures(scored: list[dict]) -> dict:
    """Figures of a peer (SAHI, the ceiling) from its scenes' scores ({'signs', 'texts', 'calls'})."""
    hits = [h for s in scored for h in score.recalled(s["signs"], s["texts"])]
    invented = [x for s in scored for x in score.invented(s["texts"], [g.text for g in s["signs"]])]
    readings = sum(len(s["texts"]) for s in scored)
    return {"calls": sum(s["calls"] for s in scored), "signs": len(hits), "recall_report": score.rate(hits),
            "readings": readings, "invented_share": share(len(invented), readings), "invented_examples": invented[:6]}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def target(name: str, value: float | None, goal: float, at_most: bool = False) -> dict:
    met = None if value is None else (value <= goal if at_most else value >= goal)
    return {"name": name, "value": value, "goal": f"{'≤' if at_most else '≥'} {goal}", "met": met}


def case_targets(case: str, methods: dict[str, dict]) -> list[dict]:
    """The issue's targets for a case, from its methods' figures."""
    main, first = methods.get(SECOND_LOOK, {}), methods.get(FIRST_LOOK, {})
    if case == "inventing":
        return [target("confirmed_real", main.get("confirmed_real"), TARGETS["confirmed_real"]),
                target("confirmed_recall", main.get("confirmed_recall"), TARGETS["confirmed_recall"]),
                target("calls / calls without the second look", ratio(main.get("calls"), first.get("calls")),
                       TARGETS["calls_vs_first_look"], at_most=True)]
    if case == "prose+drops":
        return [target("recall_report", main.get("recall_report"), TARGETS["prose_recall_report"]),
                target("review_vs_report", main.get("review_vs_report"), TARGETS["review_vs_report"])]
    vs_sahi = ratio(main.get("recall_report"), methods.get("sahi 3x3 +20%", {}).get("recall_report"))
    out = [target("Mosaic recall / SAHI recall", vs_sahi, 1.0)]
    if case == "tesseract":
        out.append(target("Mosaic recall / SAHI recall (tesseract)", vs_sahi, TARGETS["tesseract_vs_sahi"]))
    return out


# ---------------------------------------------------------------------------------------- running

def stand_ins():
    try:
        import testkit.stand_ins as module
    except ImportError as e:
        raise SystemExit(f"testkit/stand_ins.py is not usable yet ({e})") from None
    return module


def case_dir(case: str) -> Path:
    """The memo and reports of a case; named by its spec too, so a changed spec never reads stale answers."""
    spec = CASES[case]["spec"]
    slug = case.replace("+", "-")
    return TRUST / f"{slug}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def model_for(case: str) -> str:
    """One model string per case: Mosaic keeps one completion function per backend, and each case needs its own."""
    return "openai/stand-in-" + case.replace("+", "-")


def use_stand_in(case: str) -> None:
    os.environ["MOSAIC_COMPLETION"] = STAND_IN_FACTORY
    os.environ["MOSAIC_STAND_IN"] = CASES[case]["spec"]


def has_second_look() -> bool:
    import mosaic

    return "second_look" in inspect.signature(mosaic.review).parameters


def review_report(case: str, scene: dict, method_dir: Path, second_look: bool) -> dict:
    """Run Mosaic light on one scene through the stand-in; report.json as a dict."""
    import mosaic
    from mosaic.errors import RunFailed

    os.environ["MOSAIC_CACHE_DIR"] = str(method_dir / "memo")
    os.environ["MOSAIC_OUT_DIR"] = str(method_dir / "reports")
    extra = {"second_look": second_look} if has_second_look() else {}
    try:
        report = mosaic.review(scene["path"], model=model_for(case), density="light", phases=ALL_PHASES,
                               out_dir=str(method_dir / "reports"), input_px=896, **extra)
        folder = report.report_dir
    except RunFailed as e:  # some tiles failed: score the partial report
        log(f"    {Path(scene['path']).name}: {e.what}")
        folder = e.report_dir
    return json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))


def score_review(report: dict, signs: list[Sign]) -> dict:
    calls = report.get("calls", {})
    return {"hits": sign_hits(signs, report), "checks": reading_checks(signs, report),
            "calls": calls.get("total", 0), "second_look_calls": calls.get("second_look")}


def run_mosaic(case: str, scene_list: list[dict], second_look: bool) -> dict:
    method_dir = case_dir(case) / ("second-look" if second_look else "first-look")
    scored = [score_review(review_report(case, sc, method_dir, second_look), sc["signs"]) for sc in scene_list]
    return mosaic_figures(scored)


def sahi_texts(case: str, scene: dict, memo_dir: Path, complete) -> tuple[list[str], int]:
    """What SAHI-style 3x3 slices (20% overlap) plus the whole image read; (texts, calls)."""
    from PIL import Image

    from bench import baselines
    from mosaic.backend import Backend
    from mosaic.memo import BlobStore, Memo

    image = Image.open(scene["path"]).convert("RGB")
    views = baselines.method_views("sahi", image.width, image.height, 3, 3)
    backend = Backend.create(model_for(case))
    blobs, memo = BlobStore(memo_dir / "blobs"), Memo(memo_dir)
    try:
        texts = [t for box in views.boxes for t in baselines.read_crop(image, box, backend, blobs, memo, complete)[0]]
    finally:
        memo.close()
    return list(dict.fromkeys(texts)), views.calls


def run_sahi(case: str, scene_list: list[dict]) -> dict:
    complete = stand_ins().StandIn.from_spec(CASES[case]["spec"])
    scored = []
    for sc in scene_list:
        texts, calls = sahi_texts(case, sc, case_dir(case) / "sahi", complete)
        scored.append({"signs": sc["signs"], "texts": texts, "calls": calls})
    return texts_figures(scored)


def flat_texts(found) -> list[str]:
    """The ceiling's answer as a list of texts, whether it gives a text, a list or a dict per box."""
    out = []
    for item in found or []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out.append(str(item.get("text") or ""))
        elif isinstance(item, (list, tuple)):
            out += flat_texts(item)
    return [t for t in out if t.strip()]


def run_ceiling(case: str, scene_list: list[dict]) -> dict:
    from PIL import Image

    reader = CASES[case]["spec"].split("reader=")[1].split(",")[0]
    scored = []
    for sc in scene_list:
        image = Image.open(sc["path"]).convert("RGB")
        texts = flat_texts(stand_ins().ceiling(image, [s.box for s in sc["signs"]], reader))
        scored.append({"signs": sc["signs"], "texts": texts, "calls": len(sc["signs"])})
    return texts_figures(scored)


def run_case(case: str, scene_list: list[dict]) -> dict:
    use_stand_in(case)
    methods: dict[str, dict] = {}
    steps = [(SECOND_LOOK, lambda: run_mosaic(case, scene_list, True)),
             (FIRST_LOOK, lambda: run_mosaic(case, scene_list, False))]
    if CASES[case].get("peers"):
        steps += [("sahi 3x3 +20%", lambda: run_sahi(case, scene_list)),
                  ("ceiling", lambda: run_ceiling(case, scene_list))]
    for name, step in steps:
        t = time.monotonic()
        methods[name] = step()
        methods[name]["wall_s"] = round(time.monotonic() - t, 1)
        m = methods[name]
        log(f"  {case:12s} {name:30s} recall {m['recall_report']}  review {m.get('recall_review')}  "
            f"confirmed_real {m.get('confirmed_real')}  calls {m['calls']}  {m['wall_s']} s")
    out = {"spec": CASES[case]["spec"], "meaning": CASES[case]["meaning"], "scenes": len(scene_list),
           "methods": methods, "targets": case_targets(case, methods)}
    if CASES[case].get("peers"):
        out["mosaic_over_sahi"] = ratio(methods[SECOND_LOOK]["recall_report"],
                                        methods["sahi 3x3 +20%"]["recall_report"])
    return out


# --------------------------------------------------------------------------------------- the scenes

def trust_scenes(count: int) -> list[dict]:
    """The standard set (4 scenes) and the first two of its next seed: 6 scenes; the first `count` of them."""
    return (scenes("standard", 0, False) + scenes("standard", 1, False)[:2])[:count]


# ------------------------------------------------------------------------------------------ the docs

COLUMNS = [("calls", "calls"), ("second_look_calls", "2nd-look calls"), ("recall_report", "recall (report)"),
           ("recall_review", "recall (review)"), ("review_vs_report", "review / report"), ("readings", "readings"),
           ("invented_share", "invented"), ("confirmed_real", "confirmed real"),
           ("confirmed_recall", "confirmed recall"), ("unconfirmed_real", "unconfirmed real")]


def cell(value) -> str:
    return "–" if value is None else str(value)


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "not met"


def case_markdown(case: str, result: dict) -> list[str]:
    lines = [f"## {case}", "", result["meaning"], "", f"Stand-in: `{result['spec']}`; scenes: {result['scenes']}.", "",
             "| method | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | " + " | ".join(cell(m.get(key)) for key, _ in COLUMNS) + " |")
    lines += ["", "Targets:", ""]
    lines += [f"- {t['name']}: {cell(t['value'])} (goal {t['goal']}): **{verdict(t['met'])}**"
              for t in result["targets"]]
    examples = {n: m["invented_examples"] for n, m in result["methods"].items() if m.get("invented_examples")}
    if examples:
        lines += ["", "Invented readings (first 6): " + "; ".join(
            f"{n}: " + ", ".join(f"`{x}`" for x in xs) for n, xs in examples.items())]
    return lines + [""]


def render_markdown(results: dict) -> str:
    lines = ["# Trust benchmark: a second look with evidence for every reading", "",
             f"Command: `{results['command']}`. Stand-in models (testkit/stand_ins.py) behave like small VLMs; "
             "Mosaic runs light (3x3, shaped to the aspect) at 896 px with all three phases. "
             "'Confirmed' readings are those the second look backed with evidence; a reading is invented when it "
             "matches no sign of the scene. Recall (report) counts a sign found in any reading, variant or tile "
             "reading; recall (review) in the final review text.", ""]
    if not results["second_look_in_library"]:
        lines += ["The library had no second look yet when this ran: both Mosaic rows are today's behaviour, and "
                  "the confirmed figures are not measured.", ""]
    for case, result in results["cases"].items():
        lines += case_markdown(case, result)
    return "\n".join(lines)


def write_docs(results: dict, folder: Path) -> None:
    """docs/bench/trust.json (all figures) and docs/bench/trust.md (a table per case with its targets)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trust.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (folder / "trust.md").write_text(render_markdown(results), encoding="utf-8")


def kept_cases(folder: Path, run: list[str]) -> dict:
    """Cases of the trust.json already written that this run does not redo."""
    path = folder / "trust.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text(encoding="utf-8")).get("cases", {})
    return {c: r for c, r in old.items() if c not in run and c in CASES}


# ---------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.trust", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6, help="how many of the 6 scenes to use")
    ap.add_argument("--cases", default="inventing,prose,readers", help="comma list of: inventing, prose, readers")
    ap.add_argument("--cold", action="store_true", help="clear the trust memo first")
    a = ap.parse_args(argv)
    groups = set(filter(None, a.cases.split(",")))
    run = [c for c, case in CASES.items() if case["group"] in groups]
    if not run:
        ap.error("no case chosen; --cases takes inventing, prose, readers")
    if a.cold:
        shutil.rmtree(TRUST, ignore_errors=True)
    started = time.monotonic()
    scene_list = trust_scenes(a.scenes)
    log(f"{len(scene_list)} scenes, {sum(len(s['signs']) for s in scene_list)} signs; cases: {', '.join(run)}; "
        f"second look in the library: {has_second_look()}")
    results = {"command": " ".join(["python -m bench.trust", *(sys.argv[1:] if argv is None else argv)]),
               "second_look_in_library": has_second_look(),
               "stand_in_specs": {c: CASES[c]["spec"] for c in CASES},
               "scenes": [{"seed": s["seed"], "size": [s["width"], s["height"]], "signs": len(s["signs"])}
                          for s in scene_list],
               "targets": TARGETS, "cases": kept_cases(DOCS, run),
               "wall_s_note": "each method's time in this process; a case's methods share the stand-in's OCR cache, "
                              "so the methods after the first of a case run faster"}
    for case in run:
        t = time.monotonic()
        log(f"case {case}: {CASES[case]['spec']}")
        results["cases"][case] = run_case(case, scene_list)
        results["cases"][case]["elapsed_s"] = round(time.monotonic() - t, 1)
        for tg in results["cases"][case]["targets"]:
            log(f"  target {tg['name']}: {tg['value']} (goal {tg['goal']}): {verdict(tg['met'])}")
    results["cases"] = {c: results["cases"][c] for c in CASES if c in results["cases"]}
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write_docs(results, DOCS)
    log(f"done in {results['elapsed_s']} s: {DOCS / 'trust.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
