"""Mosaic against stand-ins that answer in each small VLM family's dialect, with no setting: the obedient stand-in
(testkit.stand_ins, JSON, boxes in thousandths) and the same answers rewritten as each family writes them
(testkit.dialects: Qwen2.5-VL pixels of its resized input, 0-1000 under bbox_2d, y first, 0-1, words,
GLM box tokens, PaliGemma <loc> tokens, think blocks with and without the opening tag, a loop to the token limit).
Each run's model name is its family's, so the table's profile is what reads it. Also: `mosaic probe` against each
grounding dialect names its convention.

    python -m bench.dialects            # 2 scenes, light, text phase: a few minutes
Writes docs/bench/dialects.json and docs/bench/dialects.md."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from bench.run import ROOT, WORK, scenes  # also sets the environment defaults bench.run sets
from bench.trust import mosaic_figures, reading_checks, sign_hits

DIALECTS = ("json", "qwen-pixels", "thousandths", "thousandths-yx", "fractions", "words", "glm", "loc-yx", "think",
            "think-unopened", "loop")
PROBED = ("qwen-pixels", "thousandths", "thousandths-yx", "fractions", "loc-yx", "words")
OUT = ROOT / "docs" / "bench"
_STAND_IN = None


def obedient():
    """One obedient stand-in for all dialects (its OCR cache shared: every dialect sees the same readings)."""
    global _STAND_IN
    if _STAND_IN is None:
        from testkit.stand_ins import StandIn

        _STAND_IN = StandIn.from_spec("reader=rapidocr,budget=896")
    return _STAND_IN


def model_name(dialect: str) -> str:
    from testkit.dialects import model_for

    return f"openai/{model_for(dialect)}-as-{dialect}"


def completion(backend):
    """MOSAIC_COMPLETION=bench.dialects:completion: the obedient stand-in, in the dialect the model name ends with."""
    from mosaic.llm import Completion
    from testkit.dialects import sent_size, speak

    dialect = backend.model.rsplit("-as-", 1)[1]

    def complete(call, messages, api_key=None, timeout_s=0.0):
        answer = obedient().answer(messages, call.key())
        return Completion(speak(answer, dialect, sent_size(messages)), "stop", {})

    return complete


def run_dialect(dialect: str, scene_list: list[dict], folder: Path) -> dict:
    import mosaic
    from testkit.dialects import INVENTED

    os.environ["MOSAIC_CACHE_DIR"] = str(folder / dialect / "memo")
    scored, from_thinking = [], 0
    for scene in scene_list:
        report = json.loads(mosaic.review(scene["path"], model=model_name(dialect), density="light", phases=["text"],
                                          out_dir=str(folder / dialect / "reports"), input_px=896,
                                          use_memo=False).model_dump_json())
        from_thinking += sum(INVENTED.casefold() in r["text"].casefold() for r in report["readings"])
        scored.append({"hits": sign_hits(scene["signs"], report), "checks": reading_checks(scene["signs"], report),
                       "calls": report["calls"]["total"], "second_look_calls": report["calls"].get("second_look")})
    figures = mosaic_figures(scored)
    return {k: figures[k] for k in ("calls", "signs", "recall_report", "confirmed_recall", "readings",
                                    "confirmed_readings")} | {"readings_from_thinking": from_thinking}


def probe_conventions(dialects: tuple[str, ...]) -> dict:
    from mosaic.backend import Backend
    from testkit.dialects import CONVENTION, in_dialect, model_for
    from mosaic.offline.server import ModelServer
    from mosaic.probe import probe
    from mosaic.settings import Settings

    found = {}
    for dialect in dialects:
        with ModelServer(in_dialect(lambda messages, model: obedient().answer_http(messages, model), dialect),
                         slots=2, latency=0.5) as server:
            result = probe(Backend.create("openai/" + model_for(dialect), server.openai_base), Settings(), save=False)
        found[dialect] = {"expected": CONVENTION[dialect], "named": result.convention, "fit": result.convention_fit,
                          "right": result.convention == CONVENTION[dialect], "concurrency": result.concurrency}
    return found


def markdown(results: dict) -> str:
    base = results["dialects"]["json"]
    lines = ["# Small-VLM dialects", "", f"`{results['command']}` ({results['scenes']} scenes, light, text phase, "
             "second look on; one obedient stand-in, its answers rewritten in each dialect; no setting: each model "
             "name's table profile reads it). Measured " + results["date"] + ".", "",
             "| dialect | recall | Δ vs obedient | confirmed cover | Δ | readings | from a think block | calls |",
             "|---|---|---|---|---|---|---|---|"]
    for dialect, f in results["dialects"].items():
        lines.append(f"| {dialect} | {f['recall_report']:.3f} | {f['recall_report'] - base['recall_report']:+.3f} | "
                     f"{f['confirmed_recall']:.3f} | {f['confirmed_recall'] - base['confirmed_recall']:+.3f} | "
                     f"{f['readings']} | {f['readings_from_thinking']} | {f['calls']} |")
    lines += ["", "`mosaic probe` against each grounding dialect (loopback server, 2 slots):", "",
              "| dialect | convention expected | named | fit | served at once |", "|---|---|---|---|---|"]
    for dialect, p in results["probe"].items():
        lines.append(f"| {dialect} | {p['expected']} | {p['named']} | {p['fit']:.2f} | {p['concurrency']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dialects", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialects", default=",".join(DIALECTS))
    parser.add_argument("--no-probe", action="store_true")
    args = parser.parse_args(argv)
    os.environ["MOSAIC_COMPLETION"] = "bench.dialects:completion"
    folder = WORK / "dialects"
    shutil.rmtree(folder, ignore_errors=True)
    scene_list = scenes("standard", 0, quick=True)
    results = {"command": "python -m bench.dialects", "scenes": len(scene_list),
               "date": time.strftime("%Y-%m-%d", time.gmtime()), "dialects": {}, "probe": {}}
    for dialect in args.dialects.split(","):
        started = time.monotonic()
        results["dialects"][dialect] = run_dialect(dialect, scene_list, folder)
        print(f"{dialect}: {results['dialects'][dialect]} ({time.monotonic() - started:.0f} s)", flush=True)
    os.environ.pop("MOSAIC_COMPLETION")
    if not args.no_probe:
        results["probe"] = probe_conventions(PROBED)
        print(results["probe"], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dialects.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "dialects.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
