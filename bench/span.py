"""Is the backend kept busy? `python -m bench.span` → docs/bench/span.json and .md.

One generated 12-MP street scene (not one of the benchmark's own), light density, three phases, second look on, no
memo: `mosaic run`'s flow (Prefect, a task per step) and the Python API's thread pool, each with --concurrency 4
against a stand-in server in its own process that answers in 0.5 s with 4 slots. The span runs from the first
call's arrival to the last call's answer, as the server saw them; its lower bound is calls × 0.5 s / 4 slots.
Also: seconds of the span with no call in flight, most calls in flight at once, and this machine's cores' busy time
in the span (/proc/stat, every process): the span over the larger of the calls' bound and that busy time over the
cores says how much scheduling could still win (median run of three)."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.throughput import cpu_view

ROOT = Path(__file__).resolve().parents[1]
LATENCY, SLOTS, CONCURRENCY = 0.5, 4, 4


def scene(folder: Path, seed: int = 911) -> str:
    from testkit.scenes import make_scene

    path = folder / f"scene-{seed}.png"
    if not path.exists():
        make_scene(seed, 4000, 3000).image.save(path, compress_level=1)
    return str(path)


def server_view(requests, latency: float, slots: int) -> dict:
    """What the server saw: span, bound, idle seconds inside the span, most in flight."""
    reqs = [r for r in requests if r.status == 200]
    first, last = min(r.started for r in reqs), max(r.finished for r in reqs)
    events = sorted([(r.started, 1) for r in reqs] + [(r.finished, -1) for r in reqs])
    level = peak = 0
    idle, idle_since = 0.0, None
    for t, d in events:
        level += d
        peak = max(peak, level)
        if level == 0:
            idle_since = t
        elif idle_since is not None:
            idle, idle_since = idle + t - idle_since, None
    bound = max(len(reqs) * latency, sum(r.finished - r.started for r in reqs)) / slots  # a stand-in may take longer
    floor = sum(math.ceil(len(stage) / slots) * max(latency, sum(r.finished - r.started for r in stage) / len(stage))
                for stage in stages(reqs) if stage)
    return {"calls": len(reqs), "span_s": round(last - first, 2), "bound_s": round(bound, 2),
            "span_over_bound": round((last - first) / bound, 3), "floor_s": round(floor, 2),
            "span_over_floor": round((last - first) / floor, 3), "idle_s": round(idle, 2), "max_in_flight": peak}


def stages(reqs) -> list[list]:
    """The calls by the review's stages, each of which waits for the one before: the orientation, the first wave
    (tiles, seams, the whole image), the second look's closer crops, the tiles' syntheses, the final review."""
    def stage(r) -> int:
        if "Mosaic task: orientation" in r.text:
            return 0
        if "Mosaic task: final-review" in r.text:
            return 4
        if "Mosaic task: tile-synthesis" in r.text:
            return 3
        return 2 if "This crop is a closer look" in r.text else 1
    out: list[list] = [[] for _ in range(5)]
    for r in reqs:
        out[stage(r)].append(r)
    return out


def run_once(driver: str, image: str, work: Path, latency: float = LATENCY, slots: int = SLOTS,
             concurrency: int = CONCURRENCY, spec: str | None = None, dialect: str | None = None) -> dict:
    from bench.backend import BackendProcess
    from bench.throughput import Sampler, machine_busy_cpu

    shutil.rmtree(work / "memo", ignore_errors=True)
    os.environ["MOSAIC_CACHE_DIR"] = str(work / "memo")
    from testkit.dialects import model_for

    model = f"openai/{model_for(dialect)}-as-{dialect}" if dialect else "openai/stand-in" if spec else "openai/fake-vl"
    with (BackendProcess(latency=latency, slots=slots, spec=spec, dialect=dialect) as server,
          Sampler(0.02, machine_busy_cpu) as cores):
        args = dict(model=model, api_base=server.openai_base, density="light", out_dir=str(work / "out"),
                    use_memo=False, concurrency=concurrency)
        started = time.monotonic()
        if driver == "prefect":
            from mosaic_flows.review import run_review

            state = run_review(image_path=image, **{k: v for k, v in args.items() if k != "concurrency"},
                               concurrency=concurrency)
            assert state.is_completed(), state.message
        else:
            import mosaic

            mosaic.review(image, **args)
        wall = time.monotonic() - started
    view = server_view(server.requests, latency, slots)
    answered = [r for r in server.requests if r.status == 200]
    busy = cores.cpu_between(min(r.started for r in answered), max(r.finished for r in answered))
    return view | cpu_view(view, busy, os.cpu_count() or 1) | {"wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.span")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "span"))
    parser.add_argument("--latency", type=float, default=LATENCY, help="seconds the stand-in server takes per call")
    parser.add_argument("--slots", type=int, default=SLOTS, help="calls the stand-in server answers at once")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="Mosaic's --concurrency")
    parser.add_argument("--spec", help="a small-VLM stand-in that reads the scene and says where "
                                       "(testkit.stand_ins, e.g. reader=rapidocr,budget=896); default: the fake VLM, "
                                       "whose readings have no place")
    parser.add_argument("--dialect", help="with --spec: the stand-in answers as a model family does "
                                          "(testkit.dialects, e.g. qwen-pixels: boxes in pixels of its resized input)")
    parser.add_argument("--witnesses", help="the local witnesses asked ($MOSAIC_WITNESSES; none: the scheduling "
                                            "alone, without the OCR on this machine's cores)")
    parser.add_argument("--plan", help="the plan's design ($MOSAIC_PLAN: shaped, full; default: light's, shaped)")
    args = parser.parse_args(argv)
    if args.plan is not None:
        os.environ["MOSAIC_PLAN"] = args.plan
    if args.witnesses is not None:
        os.environ["MOSAIC_WITNESSES"] = args.witnesses
    from testkit.dialects import model_for

    latency, slots, concurrency = args.latency, args.slots, args.concurrency
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("MOSAIC_PREFECT_SERVER", "temporary")
    work = Path(tempfile.mkdtemp(prefix="mosaic-span-"))
    image = scene(work)
    results = {}
    for driver in ("threads", "prefect"):  # threads first: no Prefect server of the process running beside them
        runs = [run_once(driver, image, work, latency, slots, concurrency, args.spec, args.dialect)
                for _ in range(args.repeats)]
        median = sorted(runs, key=lambda r: r["span_over_bound"])[len(runs) // 2]
        results[driver] = {"median": median, "runs": runs,
                           "span_over_bound_all": [r["span_over_bound"] for r in runs]}
        print(driver, json.dumps(median), flush=True)
    out = {"latency_s": latency, "slots": slots, "concurrency": concurrency, "scene": "4000x3000 generated, seed 911",
           "density": "light", "second_look": True, "stand_in": args.spec or "fake_vlm",
           "dialect": args.dialect, "plan": args.plan or "auto",
           "witnesses": os.environ.get("MOSAIC_WITNESSES", "detector,reader") or "none", "results": results}
    Path(args.out).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    command = " ".join(["python -m bench.span", *(argv if argv is not None else sys.argv[1:])])
    lines = [f"# Is the backend kept busy? (`{command}`)", "",
             f"One generated 4000×3000 street scene, light density, three phases, second look on, no memo; a stand-in "
             f"server in its own process answering in {latency} s with {slots} slots; `--concurrency {concurrency}`; "
             + (f"the model: a stand-in that reads the scene and says where (`{args.spec}`, its reading is part of "
                "the server's time" + (f"; in the `{args.dialect}` dialect, as the model "
                                       f"`{model_for(args.dialect)}` answers" if args.dialect else "") + "). "
                if args.spec else "the model: the fake VLM, whose readings have no place (the "
                "witnesses read whole tiles). ") +
             ("No local witnesses (`--witnesses none`): the scheduling alone. " if args.witnesses == "none" else "") +
             (f"The {args.plan} plan (`--plan {args.plan}`). " if args.plan else "") +
             "Span: the first call's arrival to the last answer, as the server saw them; bound: calls × latency / slots "
             "(or the calls' own time / slots where the stand-in took longer); floor: what the review's stages allow "
             "however well they are scheduled (orientation, first wave, second look, syntheses, final review: each "
             "waits for the one before, so each takes at least ⌈its calls / slots⌉ calls' time); cores busy: this "
             "machine's busy time in the span (every process, the stand-in server's too) over its cores' time; span / "
             "CPU bound: the span over the larger of the bound and that busy time over the cores (near 1: the cores, "
             "not the scheduling, set the span). Median run of " + str(args.repeats) + ".", "",
             "| driver | calls | span s | bound s | span / bound (runs) | floor s | span / floor | idle s in span | most in "
             "flight | cores busy | span / CPU bound | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for driver, r in results.items():
        m = r["median"]
        runs = ", ".join(f"{x:.3f}" for x in r["span_over_bound_all"])
        lines.append(f"| {driver} | {m['calls']} | {m['span_s']} | {m['bound_s']} | **{m['span_over_bound']}** ({runs}) "
                     f"| {m['floor_s']} | {m['span_over_floor']} | {m['idle_s']} | {m['max_in_flight']} "
                     f"| {100 * m['cpu_busy_share']:.0f}% of {m['cpus']} | {m['span_over_cpu_bound']} | {m['wall_s']} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
