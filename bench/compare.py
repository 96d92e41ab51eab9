"""Compare benchmark: is agreement between models evidence, and does comparing lose anything?

    python -m bench.compare               # 6 scenes, cold memo (~15 min on 2 cores)
    python -m bench.compare --scenes 2

Three stand-in model servers on loopback, each its own process (testkit/stand_ins.py): A reads with RapidOCR and
answers the OpenAI API, B reads with Tesseract and answers Ollama's, C is of A's family: the same reader and the same
misreads (misread_by=text: a sign is misread alike by both, as models of one family share errors), but its own seed,
so it invents elsewhere. All three invent a fifth of their text readings and misread a tenth. On scenes with ground
truth it runs the user's command, `mosaic compare SCENE --model A --model B --json` (light grid, text phase, no
second look), then the same with C added, and scores the comparison's rows against the signs. Writes
docs/bench/compare.json and docs/bench/compare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from testkit import score
from bench.run import ROOT, WORK
from bench.trust import share, trust_scenes

HERE = WORK / "compare"
DOCS = ROOT / "docs" / "bench"
PREFECT_PORT = 4291

MODELS = {  # label -> (api style, port, stand-in spec)
    "openai/rapid-reader:a": ("openai", 8291, "reader=rapidocr,budget=896,invent=0.2,misread=0.1,style=json,"
                                              "positions=box,misread_by=text"),
    "ollama_chat/tess-reader": ("ollama", 8292, "reader=tesseract,budget=896,invent=0.2,misread=0.1,style=fenced,"
                                                "positions=box"),
    "openai/rapid-reader:b": ("openai", 8293, "reader=rapidocr,budget=896,invent=0.2,misread=0.1,style=json,"
                                              "positions=box,misread_by=text,seed=1"),
}
PAIR = ["openai/rapid-reader:a", "ollama_chat/tess-reader"]
TRIO = [*PAIR, "openai/rapid-reader:b"]


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def api_base(label: str) -> str:
    style, port, _ = MODELS[label]
    return f"http://127.0.0.1:{port}" + ("/v1" if style == "openai" else "")


class StandInServers:
    """The stand-in servers as processes of their own, stopped on leaving."""

    def __enter__(self):
        self.processes = []
        for label, (_, port, spec) in MODELS.items():
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "testkit.stand_ins", "--port", str(port), "--spec", spec], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()))
        deadline = time.monotonic() + 60
        import socket

        for _, port, _ in MODELS.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"a stand-in server did not start on port {port}") from None
                    time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            p.wait(timeout=10)


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PREFECT_HOME": str(HERE / "prefect"), "MOSAIC_CACHE_DIR": str(HERE / "memo"),
            "MOSAIC_OUT_DIR": str(HERE / "reports"), "MOSAIC_PREFECT_SERVER": "local",
            "MOSAIC_SERVER_PORT": str(PREFECT_PORT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def mosaic(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosaic_cli", *argv], cwd=ROOT, env=env(), capture_output=True,
                          text=True)


def compare(scene: dict, labels: list[str]) -> dict:
    argv = ["compare", scene["path"], "--density", "light", "--phases", "text", "--no-second-look", "--json"]
    for label in labels:
        argv += ["--model", label, "--api-base", api_base(label)]
    started = time.monotonic()
    done = mosaic(*argv)
    if done.returncode != 0:
        raise SystemExit(f"mosaic compare failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout)
    result["command_s"] = round(time.monotonic() - started, 2)
    return result


# ------------------------------------------------------------------------------------------- scoring

def row_texts(row: dict) -> list[str]:
    return [t for t in row["by_model"].values() if t] + list(row.get("variants") or [])


def is_real(text: str, signs) -> bool:
    return not score.invented([text], [s.text for s in signs])


def own_readings(report_dir: str) -> list[dict]:
    return json.loads((Path(report_dir) / "report.json").read_text(encoding="utf-8"))["readings"]


def model_texts(readings: list[dict]) -> list[str]:
    """What a model's own report read: its readings and their variants."""
    return [t for r in readings for t in [r["text"], *r.get("variants", [])]]


def score_scene(result: dict, signs) -> dict:
    """Per comparison row: read by how many models, agreed or not, real or not; per model: its own recall."""
    rows = []
    for r in result["readings"]:
        readers = [m for m, t in r["by_model"].items() if t]
        rows.append({"readers": len(readers), "agreement": r["agreement"], "agreed": len(r["agreed"]),
                     "same_family": r["same_family"], "confirmed": r["confirmed"],
                     "real": is_real(r["text"], signs),
                     "families": sorted({next(m["family"] for m in result["models"] if m["label"] == x)
                                         for x in r["agreed"]})})
    per_model = {}
    for m in result["models"]:
        own = own_readings(m["report_dir"])
        per_model[m["label"]] = {"hits": score.recalled(signs, model_texts(own)), "calls": m["calls"],
                                 "elapsed_s": m["elapsed_s"], "readings": m["readings"],
                                 "confirmed": [is_real(r["text"], signs) for r in own if r["confirmed"]],
                                 "by_models": [is_real(r["text"], signs) for r in own if r["confirmed"]
                                               and (r.get("reason") or "").startswith("another model")]}
    union = score.recalled(signs, [t for r in result["readings"] for t in row_texts(r)])
    return {"rows": rows, "per_model": per_model, "union_hits": union, "command_s": result["command_s"],
            "signs": len(signs)}


def figures(scored: list[dict], labels: list[str]) -> dict:
    rows = [r for s in scored for r in s["rows"]]
    agreed = [r for r in rows if r["agreed"] >= 2]
    single = [r for r in rows if r["readers"] == 1]
    hard = [r for r in rows if r["agreement"] in ("near", "different")]
    out = {
        "scenes": len(scored), "signs": sum(s["signs"] for s in scored), "rows": len(rows),
        "agreed_rows": len(agreed), "agreed_real": share(sum(r["real"] for r in agreed), len(agreed)),
        "single_rows": len(single), "single_real": share(sum(r["real"] for r in single), len(single)),
        "hard_spots": len(hard), "hard_spots_real": share(sum(r["real"] for r in hard), len(hard)),
        "all_rows_real": share(sum(r["real"] for r in rows), len(rows)),
        "confirmed_rows": sum(r["confirmed"] for r in rows),
        "confirmed_real": share(sum(r["real"] for r in rows if r["confirmed"]), sum(r["confirmed"] for r in rows)),
        "union_recall": score.rate([h for s in scored for h in s["union_hits"]]),
        "command_s": round(sum(s["command_s"] for s in scored), 1), "models": {},
    }
    independent = [r for r in agreed if not r["same_family"]]
    clones = [r for r in agreed if r["same_family"]]
    if clones:
        out |= {"independent_agreed_rows": len(independent),
                "independent_agreed_real": share(sum(r["real"] for r in independent), len(independent)),
                "same_family_agreed_rows": len(clones),
                "same_family_agreed_real": share(sum(r["real"] for r in clones), len(clones))}
    for label in labels:
        per = [s["per_model"][label] for s in scored]
        out["models"][label] = {
            "recall": score.rate([h for p in per for h in p["hits"]]), "readings": sum(p["readings"] for p in per),
            "calls": sum(p["calls"]["total"] for p in per), "made": sum(p["calls"]["made"] for p in per),
            "from_memo": sum(p["calls"]["cached"] for p in per),
            "elapsed_s": round(sum(p["elapsed_s"] for p in per), 1),
            "own_confirmed": sum(len(p["confirmed"]) for p in per),
            "own_confirmed_real": share(sum(sum(p["confirmed"]) for p in per), sum(len(p["confirmed"]) for p in per)),
            "by_models": sum(len(p.get("by_models", [])) for p in per),
            "by_models_real": share(sum(sum(p.get("by_models", [])) for p in per),
                                    sum(len(p.get("by_models", [])) for p in per)),
        }
    best = max(m["recall"] or 0 for m in out["models"].values())
    out["union_vs_best_model"] = round(out["union_recall"] - best, 4)
    return out


# ---------------------------------------------------------------------------------------------- docs

def render_markdown(results: dict) -> str:
    pair, trio = results["pair"], results["trio"]

    def model_rows(f: dict) -> list[str]:
        rows = ["| model | family | recall (own report) | readings | confirmed in its own report | real | "
                "of them by another model only (real) | calls (made, from the memo) | time |",
                "|---|---|---|---|---|---|---|---|---|"]
        for label, m in f["models"].items():
            rows.append(f"| `{label}` | {results['families'][label]} | {m['recall']} | {m['readings']} | "
                        f"{m['own_confirmed']} | {m['own_confirmed_real']} | {m.get('by_models', '–')} "
                        f"({m.get('by_models_real') or '–'}) | {m['calls']} ({m['made']}, "
                        f"{m['from_memo']}) | {m['elapsed_s']} s |")
        return rows

    lines = [
        "# Compare benchmark: agreement between models as evidence", "",
        f"Command: `{results['command']}`; {pair['scenes']} scenes ({pair['signs']} signs), each run with "
        "`mosaic compare SCENE --model A --api-base … --model B --api-base … --density light --phases text "
        "--no-second-look --json` against stand-in servers on loopback (testkit/stand_ins.py, each its own process). "
        "No second look: what confirms a reading is two views of one model reading it alike, or two models. A row is "
        "real when its text matches a sign of the scene (or a piece of one).", "",
        "Stand-ins:", "",
    ]
    lines += [f"- `{label}` ({MODELS[label][0]} API): `{MODELS[label][2]}`" for label in MODELS]
    lines += ["", "## Two models that read differently (A: RapidOCR, B: Tesseract)", ""]
    lines += model_rows(pair)
    lines += ["", "*Confirmed in its own report*: each model's report.json as `mosaic compare` writes it again, the other "
              "models witnesses of its readings (`witnesses.models`): a model of another family reading the same text "
              "there confirms it, unless the detector saw no text there; *by another model only*: confirmed for that "
              "reason alone (its own local witnesses had not confirmed it)."]
    lines += ["", "| rows | read alike by both (confirmed) | real | read by one model only | real | hard spots | real |",
              "|---|---|---|---|---|---|---|",
              f"| {pair['rows']} | {pair['agreed_rows']} | **{pair['agreed_real']}** | {pair['single_rows']} | "
              f"**{pair['single_real']}** | {pair['hard_spots']} | {pair['hard_spots_real']} |", "",
              f"- Readings both models agree on are real {pair['agreed_real']} of the time, readings of one model only "
              f"{pair['single_real']}.",
              f"- Confirmed in the comparison (two models alike, or two views of one model with no model reading "
              f"otherwise): {pair['confirmed_rows']} rows, real {pair['confirmed_real']}.",
              f"- Union of the comparison: recall {pair['union_recall']}; the better model alone "
              f"{max(m['recall'] for m in pair['models'].values())} (union − best: {pair['union_vs_best_model']:+}).",
              f"- Whole commands: {pair['command_s']} s for {pair['scenes']} scenes (both models at once, each on its "
              "own server).", "",
              "## A third model of A's family added (C: A's clone)", "",
              "The same command with C added: A's and B's calls all come from the memo. C reads and misreads as A "
              "does and invents elsewhere; its inventions are never confirmed in its own views, so its figures match "
              "A's but for which texts it made up.", ""]
    lines += model_rows(trio)
    if "same_family_agreed_real" in trio:
        lines += ["", "| agreement | rows | real |", "|---|---|---|",
                  f"| models of different families | {trio['independent_agreed_rows']} | "
                  f"{trio['independent_agreed_real']} |",
                  f"| only models of one family (flagged weaker) | {trio['same_family_agreed_rows']} | "
                  f"{trio['same_family_agreed_real']} |"]
    lines += ["", f"- Confirmed in the three-model comparison (one family counts as one voter, so A and C together do "
              f"not outvote B): {trio['confirmed_rows']} rows, real {trio['confirmed_real']}; with A and B alone "
              f"{pair['confirmed_rows']} rows, real {pair['confirmed_real']}.",
              f"- Whole commands: {trio['command_s']} s for {trio['scenes']} scenes.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6, help="how many of the trust benchmark's 6 scenes")
    args = ap.parse_args(argv)
    for folder in ("memo", "reports"):  # cold: calls and time per model are a first run's
        shutil.rmtree(HERE / folder, ignore_errors=True)
    scene_list = trust_scenes(args.scenes)
    from mosaic.compare import model_family

    scored_pair, scored_trio = [], []
    with StandInServers():
        try:
            for sc in scene_list:
                pair = compare(sc, PAIR)
                scored_pair.append(score_scene(pair, sc["signs"]))
                trio = compare(sc, TRIO)
                scored_trio.append(score_scene(trio, sc["signs"]))
                log(f"{Path(sc['path']).name}: pair {pair['counts']} {pair['command_s']} s; "
                    f"trio {trio['command_s']} s")
        finally:
            mosaic("server", "stop")
    results = {"command": "python -m bench.compare" + (f" --scenes {args.scenes}" if args.scenes != 6 else ""),
               "families": {label: model_family(label) for label in MODELS},
               "pair": figures(scored_pair, PAIR), "trio": figures(scored_trio, TRIO)}
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "compare.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (DOCS / "compare.md").write_text(render_markdown(results), encoding="utf-8")
    log(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
