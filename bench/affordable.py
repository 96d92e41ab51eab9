"""Affordable-review benchmark: what a review costs a laptop, beside SAHI-style slices and the blog's design.

    python -m bench.affordable                 # 4 generated 12-MP scenes, both readers
    python -m bench.affordable --scenes 2      # fewer scenes

A stand-in small VLM (testkit/stand_ins.py: inventions, misreads, JSON and prose answers) reads through Mosaic's call
seam with RapidOCR, then with Tesseract. Per reader, on the same scenes in the same run: Mosaic light (the shaped
plan, second look on) through the library entry (mosaic.review), the same with a budget of 15 calls, the blog's
design (`plan=blog`, no second look), and SAHI-style 3x3 slices with 20% overlap plus the whole image.

Every call is metered at the seam: its image tokens estimated from the crop as sent, as a Qwen-style encoder counts
them (one per 28x28 patch, mosaic.shaping.image_tokens), its answer tokens (the stand-in's completion tokens:
answer characters / 4), and its laptop time, one call at a time: 0.5 s + image tokens / 500 + answer tokens / 20.
Writes docs/bench/affordable.json and docs/bench/affordable.md. Runs cold (the memo of each run is cleared), so every
call is metered.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

from bench import trust
from testkit import score
from bench.run import ALL_PHASES, ROOT, WORK  # also sets the environment defaults bench.run sets
from testkit.scenes import scene_on_disk
from mosaic.shaping import CallCost, image_tokens

HERE = WORK / "affordable"
DOCS = ROOT / "docs" / "bench"
SCENES = [(2900, 4000, 3000), (2901, 3000, 4000), (2902, 4000, 3000), (2903, 4240, 2832)]  # 12 MP each
READERS = {
    "rapidocr": "reader=rapidocr,budget=896,invent=0.15,misread=0.1,style=mixed,positions=box",
    "tesseract": "reader=tesseract,budget=896,invent=0.15,misread=0.1,style=mixed,positions=box",
}
COST = CallCost()  # the laptop: 0.5 s + prefill at 500 tokens/s + decoding at 20 tokens/s
LIGHT, BUDGETED, BLOG, SAHI = "mosaic light", "mosaic light --max-calls 15", "blog design (light grid)", "sahi 3x3 +20%"
TARGETS = {"calls_per_image": 30, "minutes_per_image": 3.0, "recall_vs_sahi": 1.0, "confirmed_real": 0.97,
           "tesseract_recall_vs_sahi": 1.5, "tesseract_calls_vs_sahi": 4.0, "budgeted_vs_unbudgeted": 0.9}

METER: list[dict] = []  # one entry per call that reached the stand-in


def meter() -> list[dict]:
    """METER of the module the completion factory is imported as (this file runs as __main__ too)."""
    return importlib.import_module("bench.affordable").METER


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- metering

def sent_sizes(messages: list[dict]) -> list[tuple[int, int]]:
    """The pixel sizes of the images a call sends (data URLs)."""
    sizes = []
    for message in messages:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                sizes.append(Image.open(io.BytesIO(base64.b64decode(data))).size)
    return sizes


def call_figures(sizes: list[tuple[int, int]], answer_tokens: int) -> dict:
    tokens = sum(image_tokens(w, h, max(w, h)) for w, h in sizes)
    return {"image_tokens": tokens, "answer_tokens": answer_tokens, "seconds": COST.seconds(tokens, answer_tokens)}


def metered(backend):
    """The completion factory (MOSAIC_COMPLETION=bench.affordable:metered): the stand-in $MOSAIC_STAND_IN, each call
    metered into METER."""
    from testkit.stand_ins import completion

    stand_in = completion(backend)

    def complete(call, messages, api_key=None, timeout_s=0.0):
        answer = stand_in(call, messages, api_key, timeout_s)
        meter().append(call_figures(sent_sizes(messages), answer.usage.get("completion_tokens", len(answer.content) // 4)))
        return answer

    return complete


def metered_total() -> dict:
    calls = meter()
    return {"calls": len(calls), "image_tokens": sum(m["image_tokens"] for m in calls),
            "answer_tokens": sum(m["answer_tokens"] for m in calls),
            "minutes": round(sum(m["seconds"] for m in calls) / 60, 2)}


# --------------------------------------------------------------------------------------------- running

def scenes(count: int) -> list[dict]:
    out = []
    for seed, w, h in SCENES[:count]:
        out.append(scene_on_disk(HERE / "scenes", seed, w, h))
    return out


def run_mosaic(reader: str, method: str, scene: dict, calls: int | None = None) -> dict:
    """One review through the library entry; its report's scores and the metered calls. calls: a --max-calls budget
    of a point of the budget curve."""
    import mosaic
    from mosaic.errors import RunFailed
    from mosaic.settings import load_settings

    folder = HERE / reader / method.replace(" ", "_").replace("-", "") / str(calls or "") / str(scene["seed"])
    shutil.rmtree(folder, ignore_errors=True)
    options = {"call_budget": 15} if method == BUDGETED else {"plan": "blog"} if method == BLOG else {}
    options |= {"call_budget": calls} if calls else {}
    settings = load_settings(completion="bench.affordable:metered", cache_dir=str(folder / "memo"),
                             out_dir=str(folder / "reports"), **options)
    meter().clear()
    try:
        report = mosaic.review(scene["path"], model=f"openai/stand-in-{reader}", density="light", phases=ALL_PHASES,
                               input_px=896, second_look=method != BLOG, settings=settings)
        path = report.report_dir
    except RunFailed as e:
        log(f"    {Path(scene['path']).name}: {e.what}")
        path = e.report_dir
    data = json.loads((Path(path) / "report.json").read_text(encoding="utf-8"))
    return {**metered_total(), "reported_calls": data["calls"]["total"], "hits": trust.sign_hits(scene["signs"], data),
            "checks": trust.reading_checks(scene["signs"], data), "notes": data.get("notes", [])}


def run_sahi(reader: str, scene: dict) -> dict:
    from bench import baselines
    from mosaic.backend import Backend
    from mosaic.memo import BlobStore, Memo

    folder = HERE / reader / "sahi" / str(scene["seed"])
    shutil.rmtree(folder, ignore_errors=True)
    image = Image.open(scene["path"]).convert("RGB")
    views = baselines.method_views("sahi", image.width, image.height, 3, 3)
    backend, blobs, memo = Backend.create(f"openai/stand-in-{reader}"), BlobStore(folder / "blobs"), Memo(folder)
    complete = metered(backend)
    meter().clear()
    try:
        texts = [t for box in views.boxes for t in baselines.read_crop(image, box, backend, blobs, memo, complete)[0]]
    finally:
        memo.close()
    return {**metered_total(), "hits": {"report": score.recalled(scene["signs"], texts)}, "checks": []}


# --------------------------------------------------------------------------------------------- figures

def figures(runs: list[dict]) -> dict:
    """A method's figures over its scenes: per image means (and the largest), recall and trust."""
    n = len(runs)
    hits = [h for r in runs for h in r["hits"]["report"]]
    checks = [c for r in runs for c in r["checks"]]
    out = {"scenes": n, "signs": len(hits), "recall": score.rate(hits)}
    for key in ("calls", "image_tokens", "answer_tokens", "minutes"):
        out[f"{key}_per_image"] = round(sum(r[key] for r in runs) / n, 2)
    out["max_calls_per_image"] = max(r["calls"] for r in runs)
    out["max_minutes_per_image"] = max(r["minutes"] for r in runs)
    if checks:
        out["confirmed_real"] = trust.confirmed_real(checks)
        out["confirmed_recall"] = trust.confirmed_recall(trust.join_hits([r["hits"] for r in runs]))
        out["invented_share"] = trust.share(sum(not c["real"] for c in checks), len(checks))
    notes = [note for r in runs for note in r.get("notes", []) if note.startswith("budget cut")]
    if notes:
        out["budget_cuts"] = notes
    return out


def reader_targets(reader: str, m: dict[str, dict]) -> list[dict]:
    light, sahi, budgeted = m[LIGHT], m[SAHI], m[BUDGETED]
    t = trust.target
    out = [t("calls per image (largest)", light["max_calls_per_image"], TARGETS["calls_per_image"], at_most=True),
           t("estimated laptop minutes per image (largest)", light["max_minutes_per_image"],
             TARGETS["minutes_per_image"], at_most=True),
           t("recall / SAHI's", trust.ratio(light["recall"], sahi["recall"]), TARGETS["recall_vs_sahi"]),
           t("confirmed readings that are real", light.get("confirmed_real"), TARGETS["confirmed_real"]),
           t("--max-calls 15: recall / unbudgeted recall", trust.ratio(budgeted["recall"], light["recall"]),
             TARGETS["budgeted_vs_unbudgeted"]),
           t("--max-calls 15: calls per image (largest)", budgeted["max_calls_per_image"], 15, at_most=True)]
    if reader == "tesseract":
        out += [t("tesseract: recall / SAHI's", trust.ratio(light["recall"], sahi["recall"]),
                  TARGETS["tesseract_recall_vs_sahi"]),
                t("tesseract: calls / SAHI's", trust.ratio(light["calls_per_image"], sahi["calls_per_image"]),
                  TARGETS["tesseract_calls_vs_sahi"], at_most=True)]
    return out


COLUMNS = [("calls_per_image", "calls/image"), ("max_calls_per_image", "max calls"),
           ("image_tokens_per_image", "image tokens/image"), ("answer_tokens_per_image", "answer tokens/image"),
           ("minutes_per_image", "est. laptop min/image"), ("max_minutes_per_image", "max min"), ("recall", "recall"),
           ("confirmed_real", "confirmed real"), ("confirmed_recall", "confirmed recall"),
           ("invented_share", "invented")]


def render_markdown(results: dict) -> str:
    lines = ["# Affordable review: calls, tokens and laptop minutes per 12-MP image", "",
             f"Command: `{results['command']}`. {len(results['scenes'])} generated 12-MP street scenes "
             f"(testkit/scenes.py, seeds {', '.join(str(s['seed']) for s in results['scenes'])}), "
             f"{sum(s['signs'] for s in results['scenes'])} signs. A stand-in small VLM (testkit/stand_ins.py) reads "
             "through Mosaic's call seam; Mosaic runs through `mosaic.review` (light density, 896-px encoder, phases "
             "text, subjects, characteristics).", "",
             "Every call is metered at the seam. Image tokens: one per 28×28 patch of each image as sent (a "
             "Qwen-style encoder), sides rounded up; answer tokens: the stand-in's completion tokens (answer "
             "characters / 4); estimated laptop time per call, one call at a time: 0.5 s + image tokens / 500 + "
             "answer tokens / 20. SAHI: 3×3 slices with 20% overlap plus the whole image (10 calls). Blog design: "
             "each tile asked everything in one call, each seam twice, a synthesis per tile, no second look. "
             "Recall: a sign's text found in any reading of the report (for SAHI: in any answer).", ""]
    for reader, result in results["readers"].items():
        lines += [f"## {reader}", "", f"Stand-in: `{result['spec']}`.", "",
                  "| method | " + " | ".join(title for _, title in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for name, m in result["methods"].items():
            lines.append(f"| {name} | " + " | ".join(trust.cell(m.get(key)) for key, _ in COLUMNS) + " |")
        lines += ["", "Targets:", ""]
        lines += [f"- {t['name']}: {trust.cell(t['value'])} (goal {t['goal']}): **{trust.verdict(t['met'])}**"
                  for t in result["targets"]]
        cuts = result["methods"][BUDGETED].get("budget_cuts", [])
        if cuts:
            lines += ["", "What the budget cut (per scene): " + " / ".join(f"`{c}`" for c in cuts)]
        curve = result.get("budget_curve")
        if curve:
            unbudgeted = result["methods"][LIGHT]["recall"]
            lines += ["", "Recall within a `--max-calls` budget (`--budget-curve`), against the unbudgeted run's:", "",
                      "| --max-calls | calls/image | recall | of unbudgeted | confirmed real |", "|---|---|---|---|---|"]
            lines += [f"| {p['budget']} | {p['calls_per_image']} | {trust.cell(p['recall'])} | "
                      f"{trust.cell(trust.ratio(p['recall'], unbudgeted))} | {trust.cell(p.get('confirmed_real'))} |"
                      for p in curve]
        lines.append("")
    return "\n".join(lines)


def kept_readers(run: list[str]) -> dict:
    """The readers of the affordable.json already written that this run does not redo."""
    path = DOCS / "affordable.json"
    old = json.loads(path.read_text(encoding="utf-8")).get("readers", {}) if path.exists() else {}
    return {r: v for r, v in old.items() if r not in run and r in READERS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.affordable", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=len(SCENES), help=f"how many of the {len(SCENES)} scenes to use")
    ap.add_argument("--readers", default=",".join(READERS), help="comma list of: " + ", ".join(READERS))
    ap.add_argument("--budget-curve", default="", help="comma list of --max-calls budgets to run too (e.g. 18,21,24)")
    a = ap.parse_args(argv)
    os.environ["MOSAIC_STAND_IN"] = ""
    started = time.monotonic()
    scene_list = scenes(a.scenes)
    results = {"command": " ".join(["python -m bench.affordable", *(sys.argv[1:] if argv is None else argv)]),
               "scenes": [{"seed": s["seed"], "size": [s["width"], s["height"]], "signs": len(s["signs"])}
                          for s in scene_list],
               "cost_model": COST.model_dump(), "token_rule": "ceil(w/28) * ceil(h/28) per image as sent",
               "targets": TARGETS, "readers": kept_readers(a.readers.split(","))}
    for reader in filter(None, a.readers.split(",")):
        os.environ["MOSAIC_STAND_IN"] = READERS[reader]
        methods: dict[str, dict] = {}
        for method in (LIGHT, BUDGETED, BLOG, SAHI):
            t = time.monotonic()
            runs = [run_sahi(reader, s) if method == SAHI else run_mosaic(reader, method, s) for s in scene_list]
            methods[method] = figures(runs) | {"wall_s": round(time.monotonic() - t, 1)}
            m = methods[method]
            log(f"{reader:9s} {method:28s} calls/image {m['calls_per_image']}  min/image {m['minutes_per_image']}  "
                f"recall {m['recall']}  confirmed_real {m.get('confirmed_real')}  {m['wall_s']} s")
        curve = [{"budget": 15, **methods[BUDGETED]}]
        for calls in (int(c) for c in filter(None, a.budget_curve.split(","))):
            curve.append({"budget": calls, **figures([run_mosaic(reader, LIGHT, s, calls) for s in scene_list])})
            log(f"{reader:9s} --max-calls {calls}: recall {curve[-1]['recall']}")
        results["readers"][reader] = {"spec": READERS[reader], "methods": methods,
                                      "targets": reader_targets(reader, methods),
                                      **({"budget_curve": curve} if len(curve) > 1 else {})}
        for tg in results["readers"][reader]["targets"]:
            log(f"  target {tg['name']}: {tg['value']} (goal {tg['goal']}): {trust.verdict(tg['met'])}")
    results["readers"] = {r: results["readers"][r] for r in READERS if r in results["readers"]}
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "affordable.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (DOCS / "affordable.md").write_text(render_markdown(results), encoding="utf-8")
    log(f"done in {results['elapsed_s']} s: {DOCS / 'affordable.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
