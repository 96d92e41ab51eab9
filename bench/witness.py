"""Witness benchmark: is "confirmed" evidence when the model repeats its own mistakes? (issue 26)

    python -m bench.witness                    # all cases, 3 scenes with 4 blank sign boards each
    python -m bench.witness --cases varying    # one case

Scenes are the bench's street scenes with four blank sign boards each (plain coloured rectangles, no text). Stand-in
models (testkit/stand_ins.py) read them: `boards=` reads a fixed made-up text on each blank board in every view that
shows it, `misread_by=text` misreads a given word the same way every time, `invent`/`misread` vary by call. Mosaic
runs light, text phase only, second look on, with the witnesses on (the default) and with none (two views of the
model confirm, as before). Figures: confirmed readings' share real, the share of signs a confirmed reading covers,
blank boards confirmed, calls over the first wave's, the local witnesses' CPU time, and the precision/cover curve
over the reader's agreement threshold. Writes docs/bench/witness.json and docs/bench/witness.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from testkit import score
from bench.run import ROOT, WORK
from testkit.scenes import scene_on_disk
from bench.trust import confirmed_real, reading_checks, share, sign_hits

DOCS = ROOT / "docs" / "bench"
SCENES = [(0, 4000, 3000), (1, 3000, 4000), (3, 1732, 1155)]  # (seed, width, height): 12 MP, 12 MP, 2 MP
BLANKS = 4
REPEATING = "budget=896,invent=0.2,misread=0.1,misread_by=text"
CASES = {
    "repeating": {"spec": f"reader=rapidocr,{REPEATING}", "boards": True,
                  "meaning": "Repeated inventions (a made-up text on every blank board, in every view), a tenth of "
                             "the words misread the same way every time, and inventions in a fifth of the calls.",
                  "targets": {"confirmed_real": 0.97, "cover": 0.85, "boards_confirmed": 0}},
    "repeating-tesseract": {"spec": f"reader=tesseract,{REPEATING}", "boards": True,
                            "meaning": "The same habits with Tesseract as the stand-in's eyes (a weaker reader).",
                            "targets": {"confirmed_real": 0.95, "cover": 0.26, "boards_confirmed": 0}},
    "placeless": {"spec": f"reader=rapidocr,{REPEATING},positions=none", "boards": True,
                  "meaning": "The repeating habits, from a model that never says where it read (as many small VLMs "
                             "answer): the witnesses look for each reading in the tiles it was read in.",
                  "targets": {"confirmed_real": 0.97, "cover": 0.85, "boards_confirmed": 0}},
    "varying": {"spec": "reader=rapidocr,budget=896,invent=0.2,misread=0.1", "boards": False,
                "meaning": "Today's case: inventions in a fifth of the calls and misreads in a tenth, each view "
                           "deciding afresh; no text read on blank boards.",
                "targets": {"confirmed_real": 0.97, "cover": 0.90}},
}
# The settings of each method. By default a shaped plan's second look is held to its share of the first wave
# (MOSAIC_SECOND_LOOK_SHARE, 0.3); MOSAIC_SHAPED_CALLS lets it fill the calls an image has left of that many: the
# "up to N calls" rows are the trade-off between calls and cover.
WITNESSES_ON = {"MOSAIC_WITNESSES": "detector,reader"}
METHODS = {"witnesses": WITNESSES_ON,
           "views only": {"MOSAIC_WITNESSES": "none"},
           "witnesses, up to 20 calls": WITNESSES_ON | {"MOSAIC_SHAPED_CALLS": "20"},
           "witnesses, up to 25 calls": WITNESSES_ON | {"MOSAIC_SHAPED_CALLS": "25"},
           "witnesses, up to 30 calls": WITNESSES_ON | {"MOSAIC_SHAPED_CALLS": "30"}}
THRESHOLDS = (1.0, 0.9, 0.8, 0.7, 0.5)
CALLS_TARGET = 1.3


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def witness_scenes() -> list[dict]:
    out = []
    for seed, w, h in SCENES:
        scene = scene_on_disk(WORK / "witness" / "scenes", seed, w, h, f"-blanks{BLANKS}", n_blanks=BLANKS)
        truth = json.loads(Path(scene["truth"]).read_text(encoding="utf-8"))
        out.append(scene | {"blanks": [tuple(b) for b in truth.get("blanks", [])]})
    return out


# --- scoring (pure) ----------------------------------------------------------------------------------------------

def board_texts(blanks) -> set[str]:
    from testkit.stand_ins import board_text

    return {score.norm(board_text(b)) for b in blanks}


def confirmed_at(reading: dict, threshold: float | None) -> bool:
    """Confirmed as the report says (None), or had the reader's agreement threshold been `threshold`."""
    if threshold is None:
        return reading.get("confirmed") is True
    reader = (reading.get("witnesses") or {}).get("reader") or {}
    return reader.get("similarity", 0.0) >= threshold


def scene_figures(report: dict, scene: dict, threshold: float | None = None) -> dict:
    readings = [r | {"confirmed": confirmed_at(r, threshold)} for r in report["readings"]]
    judged = {**report, "readings": readings, "second_look": True}
    hits, checks = sign_hits(scene["signs"], judged), reading_checks(scene["signs"], judged)
    boards = board_texts(scene["blanks"])
    return {"hits": hits["confirmed"], "checks": checks,
            "boards_listed": sum(score.norm(r["text"]) in boards for r in readings),
            "boards_confirmed": sum(score.norm(r["text"]) in boards and r["confirmed"] for r in readings),
            "probably_absent": sum(r.get("status") == "probably_absent" for r in readings)}


def figures(per_scene: list[dict]) -> dict:
    checks = [c for s in per_scene for c in s["checks"]]
    hits = [h for s in per_scene for h in s["hits"]]
    return {"readings": len(checks), "real_share": share(sum(c["real"] for c in checks), len(checks)),
            "confirmed": sum(c["confirmed"] is True for c in checks), "confirmed_real": confirmed_real(checks),
            "cover": score.rate(hits),
            "boards_listed": sum(s["boards_listed"] for s in per_scene),
            "boards_confirmed": sum(s["boards_confirmed"] for s in per_scene),
            "probably_absent": sum(s["probably_absent"] for s in per_scene)}


# --- running -----------------------------------------------------------------------------------------------------

def review(case: str, method: str, scene: dict) -> dict:
    import mosaic

    spec = CASES[case]["spec"] + (f",boards={scene['truth']}" if CASES[case]["boards"] else "")
    folder = WORK / "witness" / case
    os.environ |= {"MOSAIC_COMPLETION": "testkit.stand_ins:completion", "MOSAIC_STAND_IN": spec,
                   "MOSAIC_CACHE_DIR": str(folder / "memo"), "MOSAIC_SHAPED_CALLS": "0"} | METHODS[method]
    report = mosaic.review(scene["path"], model=f"openai/stand-in-{case}", density="light", phases=["text"],
                           out_dir=str(folder / method.replace(", ", "-").replace(" ", "-")), input_px=896,
                           second_look=True)
    return json.loads((Path(report.report_dir) / "report.json").read_text(encoding="utf-8"))


def witness_cost(report: dict, scene: dict) -> dict:
    """The local witnesses' CPU time on this report's readings, from a cold store (the image decoded apart)."""
    from PIL import Image

    from mosaic.evidence import WITNESSES, witness
    from mosaic.memo import BlobStore
    from mosaic.schema import Plan, Reading, View

    image = Image.open(scene["path"]).convert("RGB")
    tiles = [View(id=t["tile"], kind="tile", cells=[(t["position"]["col"] - 1, t["position"]["row"] - 1)],
                  box=tuple(t["box"]), image_sha256="-") for t in report["tiles"]]
    plan = Plan(image_path=scene["path"], image_sha256=report["image_sha256"], width=image.width,
                height=image.height, cols=report["cols"], rows=report["rows"], density=report["density"],
                phases=report["phases"], overview_sha256="-", views=tiles)
    readings = [Reading(**{k: r[k] for k in ("text", "views", "tiles", "box", "variants")}) for r in report["readings"]]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.process_time()
        witness(readings, lambda: image, plan, BlobStore(Path(tmp)), WITNESSES)
        cpu = time.process_time() - started
    return {"cpu_s": cpu, "readings": len(readings), "mp": image.width * image.height / 1e6}


def run_case(case: str, scene_list: list[dict]) -> dict:
    result: dict = {"spec": CASES[case]["spec"], "meaning": CASES[case]["meaning"], "methods": {}}
    for method in METHODS:
        t = time.monotonic()
        reports = [review(case, method, sc) for sc in scene_list]
        per_scene = [scene_figures(r, sc) for r, sc in zip(reports, scene_list)]
        m = figures(per_scene)
        calls = sum(r["calls"]["total"] for r in reports)
        first = sum(r["calls"]["planned"] - r["calls"]["second_look"] for r in reports)
        m |= {"calls": calls, "first_wave_calls": first, "calls_vs_first_wave": round(calls / first, 3),
              "wall_s": round(time.monotonic() - t, 1)}
        if method == "witnesses":
            m["curve"] = [{"threshold": th} | {k: v for k, v in figures(
                [scene_figures(r, sc, th) for r, sc in zip(reports, scene_list)]).items()
                if k in ("confirmed", "confirmed_real", "cover", "boards_confirmed")} for th in THRESHOLDS]
            costs = [witness_cost(r, sc) for r, sc in zip(reports, scene_list)]
            cpu, count = sum(c["cpu_s"] for c in costs), sum(c["readings"] for c in costs)
            m["witness_cpu"] = {"ms_per_reading": round(1000 * cpu / max(1, count)),
                                "ms_per_image": [round(1000 * c["cpu_s"]) for c in costs],
                                "image_mp": [round(c["mp"], 1) for c in costs]}
        result["methods"][method] = m
        log(f"  {case:20s} {method:21s} confirmed_real {m['confirmed_real']} cover {m['cover']} boards "
            f"{m['boards_confirmed']}/{m['boards_listed']} calls x{m['calls_vs_first_wave']} {m['wall_s']} s")
    main = result["methods"]["witnesses"]
    goals = CASES[case]["targets"]
    result["targets"] = [
        {"name": k, "value": main[k], "goal": f"{'=' if k == 'boards_confirmed' else '≥'} {v}",
         "met": None if main[k] is None else (main[k] == v if k == "boards_confirmed" else main[k] >= v)}
        for k, v in goals.items()] + [{"name": "calls / first wave", "value": main["calls_vs_first_wave"],
                                       "goal": f"≤ {CALLS_TARGET}", "met": main["calls_vs_first_wave"] <= CALLS_TARGET}]
    return result


# Two models whose eyes differ (RapidOCR, Tesseract) but which share one habit: the same made-up text on each blank
# board. Their reviews are the two repeating cases'; they are aligned as `mosaic compare` aligns them.
PAIR = {"rapidocr-eyed": "repeating", "tesseract-eyed": "repeating-tesseract"}


def shared_habit(scene_list: list[dict]) -> dict:
    """Per method: rows both models agree on, how many are blank boards' texts, how many of each are confirmed."""
    from mosaic.compare import align, with_models_witness
    from mosaic.schema import Reading

    out = {}
    for method in ("witnesses", "views only"):
        n = {"agreed": 0, "agreed_real": 0, "agreed_boards": 0, "confirmed": 0, "confirmed_real": 0,
             "boards_confirmed": 0, "boards": 0, "readings": 0, "readings_confirmed": 0,
             "readings_confirmed_real": 0, "readings_boards_confirmed": 0, "readings_confirmed_alone": 0}
        for sc in scene_list:
            by_model = {label: [Reading.model_validate(r) for r in review(case, method, sc)["readings"]]
                        for label, case in PAIR.items()}
            boards = board_texts(sc["blanks"])
            n["boards"] += len(sc["blanks"])
            families = {label: label for label in PAIR}
            n["readings_confirmed_alone"] += sum(bool(r.confirmed) for rs in by_model.values() for r in rs)
            for readings in with_models_witness(by_model, families).values():  # each model's report after a compare
                for r in readings:
                    real = not score.invented([r.text], [s.text for s in sc["signs"]])
                    n["readings"] += 1
                    n["readings_confirmed"] += bool(r.confirmed)
                    n["readings_confirmed_real"] += bool(r.confirmed) and real
                    n["readings_boards_confirmed"] += bool(r.confirmed) and score.norm(r.text) in boards
            for row in align(by_model, families=families):
                board = score.norm(row.text) in boards
                real = not score.invented([row.text], [s.text for s in sc["signs"]])
                if len(row.agreed) == 2:
                    n["agreed"] += 1
                    n["agreed_real"] += real
                    n["agreed_boards"] += board
                if row.confirmed:
                    n["confirmed"] += 1
                    n["confirmed_real"] += real
                    n["boards_confirmed"] += board
        out[method] = n
        log(f"  shared habit {method:10s} {n}")
    return out


# --- the docs ----------------------------------------------------------------------------------------------------

COLUMNS = [("readings", "readings"), ("real_share", "real"), ("confirmed", "confirmed"),
           ("confirmed_real", "confirmed real"), ("cover", "cover of signs"), ("boards_listed", "boards listed"),
           ("boards_confirmed", "boards confirmed"), ("probably_absent", "probably absent"),
           ("calls_vs_first_wave", "calls / first wave")]


def render(results: dict) -> str:
    lines = ["# Witness benchmark: confirmed means a second witness (issue 26)", "",
             f"Command: `{results['command']}`. Scenes: {results['scenes']} (each with {BLANKS} blank sign boards); "
             "Mosaic light, text phase, second look on. *witnesses*: the default (RapidOCR's detector and recognizer "
             "on each reading's place); *views only*: `--witnesses none`, two views of the model confirm (the old "
             "meaning); *witnesses, up to N calls*: the default witnesses with the second look let fill the calls an "
             "image has left of N (`MOSAIC_SHAPED_CALLS=N`; by default it is held to its share of the first wave, "
             "`MOSAIC_SECOND_LOOK_SHARE` 0.3): the trade-off between calls and cover. A reading is real when it "
             "matches a sign (or a part of one); cover: signs whose text is in a confirmed reading.", ""]
    for case, r in results["cases"].items():
        lines += [f"## {case}", "", r["meaning"], "", f"Stand-in: `{r['spec']}`.", "",
                  "| method | " + " | ".join(t for _, t in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        lines += [f"| {name} | " + " | ".join("–" if m.get(k) is None else str(m.get(k)) for k, _ in COLUMNS) + " |"
                  for name, m in r["methods"].items()]
        w = r["methods"]["witnesses"]
        cost = w["witness_cpu"]
        lines += ["", "Targets (witnesses): " + "; ".join(
            f"{t['name']} {t['value']} (goal {t['goal']}): **{'met' if t['met'] else 'not met'}**"
            for t in r["targets"]), ""] + [
            f"Local witnesses' CPU time (cold, both witnesses): {cost['ms_per_reading']} ms per reading; per image "
            + ", ".join(f"{ms} ms ({mp} MP)" for ms, mp in zip(cost["ms_per_image"], cost["image_mp"])) + ".", "",
            "Precision/cover over the reader's agreement threshold (`MOSAIC_WITNESS_SIMILARITY`; 1 = the same "
            "letters and digits):", "", "| threshold | confirmed | confirmed real | cover | boards confirmed |",
            "|---|---|---|---|---|"]
        lines += [f"| {c['threshold']} | {c['confirmed']} | {c['confirmed_real']} | {c['cover']} | "
                  f"{c['boards_confirmed']} |" for c in w["curve"]]
        lines.append("")
    if "shared_habit" in results:
        lines += ["## Two models that share a habit, compared", "",
                  "The repeating case's two stand-ins (RapidOCR's eyes, Tesseract's eyes; both read the same made-up "
                  "text on each blank board) aligned as `mosaic compare` aligns them, as two independent families.", "",
                  "| method | rows both agree on | of them real | of them blank boards | confirmed rows | confirmed real "
                  "| boards confirmed (of boards) | each model's readings | confirmed alone | confirmed after the compare "
                  "(real, boards) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {n['agreed']} | {n['agreed_real']} | {n['agreed_boards']} | {n['confirmed']} | "
                  f"{n['confirmed_real']} | {n['boards_confirmed']} (of {n['boards']}) | {n.get('readings', '–')} | "
                  f"{n.get('readings_confirmed_alone', '–')} | "
                  f"{n.get('readings_confirmed', '–')} ({n.get('readings_confirmed_real', '–')}, "
                  f"{n.get('readings_boards_confirmed', '–')}) |"
                  for name, n in results["shared_habit"].items()]
        lines += ["", "*Each model's readings*: the two models' reports as `mosaic compare` writes them again, the "
                  "other model a witness of every reading (`witnesses.models`): confirmed by its own witnesses or by "
                  "the other family reading the same text where the detector saw text."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.witness", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of: {', '.join(CASES)}")
    ap.add_argument("--scenes", type=int, default=len(SCENES), help=f"how many of the {len(SCENES)} scenes")
    ap.add_argument("--shared-habit", action=argparse.BooleanOptionalAction, default=True,
                    help="also compare the two repeating stand-ins as `mosaic compare` would")
    a = ap.parse_args(argv)
    run = [c for c in a.cases.split(",") if c]
    if not set(run) <= set(CASES):
        ap.error(f"unknown case; choose from {', '.join(CASES)}")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    scene_list = witness_scenes()[: a.scenes]
    path = DOCS / "witness.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    command = " ".join(["python -m bench.witness", *(sys.argv[1:] if argv is None else argv)])
    results = {"command": old.get("command", command) if not run else command,
               "scenes": len(scene_list), "cases": {c: r for c, r in old.get("cases", {}).items() if c not in run}}
    for case in run:
        log(f"case {case}")
        results["cases"][case] = run_case(case, scene_list)
    results["cases"] = {c: results["cases"][c] for c in CASES if c in results["cases"]}
    if a.shared_habit:
        log("two models that share a habit, compared")
        results["shared_habit"] = shared_habit(scene_list)
    elif "shared_habit" in old:
        results["shared_habit"] = old["shared_habit"]
    DOCS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (DOCS / "witness.md").write_text(render(results), encoding="utf-8")
    log(f"wrote {DOCS / 'witness.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
