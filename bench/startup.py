"""Start-up figures of the `mosaic` command, measured from outside as a user meets them.

    python -m bench.startup [--reruns 5]     # ~2 min; writes docs/bench/startup.json and startup.md

Each figure is the wall time of a real command (a fresh process) against a real loopback model server (the offline
reader over the OpenAI API), with a fresh PREFECT_HOME and memo: imports, Mosaic's local Prefect server starting
(fresh database, then again), the first run (and when its first call reached the backend), memoized reruns with the
local server up, and the same reruns with Prefect's temporary server instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "mosaic" / "samples" / "street.jpg"
SUMMARY = re.compile(r"(\d+) calls \((\d+) from the memo\); review ([\d.]+) s, whole command ([\d.]+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=env["MOSAIC_WORK"], timeout=900)
    return time.monotonic() - started, done


def mosaic(*args: str) -> list[str]:
    return [sys.executable, "-m", "mosaic_cli", *args]


def run_once(env: dict, base: str) -> dict:
    seconds, done = timed(mosaic("run", str(SAMPLE), "--model", "openai/ocr-448", "--api-base", base), env)
    if done.returncode != 0:
        raise SystemExit(f"bench.startup: a run failed: {done.stderr.strip().splitlines()[-1:]}")
    found = SUMMARY.search(done.stderr)
    calls, cached, review_s, whole_s = found.groups() if found else (0, 0, 0, 0)
    return {"s": round(seconds, 2), "calls": int(calls), "cached": int(cached), "review_s": float(review_s),
            "whole_command_said_s": float(whole_s)}


def imports(env: dict, module: str, times: int = 3) -> float:
    return round(statistics.median(timed([sys.executable, "-c", f"import {module}"], env)[0] for _ in range(times)), 2)


def litellm_imported(env: dict, base: str) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mosaic_cli", "run", str(SAMPLE), "--model",
                           "openai/ocr-448", "--api-base", base, "--json"], capture_output=True, text=True, env=env,
                          cwd=env["MOSAIC_WORK"], timeout=900)
    return bool(re.search(r"\|\s+litellm$", done.stderr, re.M))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--reruns", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    args = parser.parse_args(argv)

    from mosaic.offline.reader import OfflineReader
    from mosaic.offline.server import ModelServer
    from mosaic_cli.local_server import LocalServer

    work = Path(tempfile.mkdtemp(prefix="mosaic-startup-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOSAIC_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(work / "prefect"), MOSAIC_CACHE_DIR=str(work / "memo"), MOSAIC_WORK=str(work),
               MOSAIC_SERVER_PORT=str(port), LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
    reader = OfflineReader(448)
    first_request: list[float] = []

    def answer(messages: list[dict], model: str) -> str:
        first_request.append(time.monotonic())
        return reader.answer(messages)

    out: dict = {"machine": f"{os.cpu_count()} cores", "image": SAMPLE.name, "model": "openai/ocr-448 (loopback)"}
    out["imports_s"] = {m: imports(env, m) for m in ("mosaic_cli.main", "mosaic_flows.review", "litellm")}
    server = LocalServer(port, work / "prefect")
    try:
        out["server_start_s"] = {"fresh_database": round(timed(mosaic("server", "start"), env)[0], 2)}
        timed(mosaic("server", "stop"), env)
        out["server_start_s"]["again"] = round(timed(mosaic("server", "start"), env)[0], 2)
        with ModelServer(answer) as backend:
            base = backend.openai_base
            started = time.monotonic()
            first = run_once(env, base)
            first["first_call_s"] = round(first_request[0] - started, 2)
            out["first_run"] = first
            reruns = [run_once(env, base) for _ in range(args.reruns)]
            out["memoized_rerun"] = {"runs": reruns, "median_s": statistics.median(r["s"] for r in reruns),
                                     "all_from_memo": all(r["calls"] == r["cached"] for r in reruns)}
            out["memoized_rerun"]["share_of_first_run"] = round(out["memoized_rerun"]["median_s"] / first["s"], 3)
            out["memoized_rerun"]["litellm_imported"] = litellm_imported(env, base)
            timed(mosaic("server", "stop"), env)
            temporary = {**env, "MOSAIC_PREFECT_SERVER": "temporary"}
            runs = [run_once(temporary, base) for _ in range(2)]
            out["memoized_rerun_temporary_server"] = {"runs": runs, "median_s": statistics.median(r["s"] for r in runs)}
    finally:
        server.stop()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "startup.json").write_text(json.dumps(out, indent=2) + "\n")
    (folder / "startup.md").write_text(markdown(out))
    print(markdown(out))


def markdown(out: dict) -> str:
    rerun, temporary, first = out["memoized_rerun"], out["memoized_rerun_temporary_server"], out["first_run"]
    imports_s, start = out["imports_s"], out["server_start_s"]
    rows = [
        ("import mosaic_cli.main (the command, before Prefect)", imports_s["mosaic_cli.main"]),
        ("import mosaic_flows.review (Prefect and the flow)", imports_s["mosaic_flows.review"]),
        ("import litellm (only when a call reaches a backend)", imports_s["litellm"]),
        ("`mosaic server start`, fresh database (once per machine)", start["fresh_database"]),
        ("`mosaic server start` again", start["again"]),
        (f"first run, whole command ({first['calls']} calls)", first["s"]),
        ("first run: its first call reaches the backend", first["first_call_s"]),
        (f"memoized rerun, whole command, local server up (median of {len(rerun['runs'])})", rerun["median_s"]),
        ("memoized rerun, Prefect's temporary server instead (median of 2)", temporary["median_s"]),
    ]
    lines = [
        "# Start-up of the `mosaic` command",
        "",
        f"`python -m bench.startup` on {out['machine']}: {out['image']} (3000×2000, 4×2 light grid), "
        f"{out['model']}, fresh PREFECT_HOME and memo; each figure is one real command's wall time.",
        "",
        "| what | seconds |",
        "|---|---|",
        *[f"| {what} | {s:.2f} |" for what, s in rows],
        "",
        f"Memoized rerun: {rerun['share_of_first_run']:.1%} of the first run's time; every call from the memo: "
        f"{rerun['all_from_memo']}; LiteLLM imported: {rerun['litellm_imported']}. The summary line says the whole "
        f"command's time too (last rerun: review {rerun['runs'][-1]['review_s']} s, whole command "
        f"{rerun['runs'][-1]['whole_command_said_s']} s).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
