"""Throughput against a backend that answers at once (the stand-in server in a process of its own): calls per second
and CPU per call of Mosaic's process, next to a plain loop of LiteLLM calls of the same view-sized requests; and where
Mosaic's time goes, from stack samples of its threads during the calls.

    python -m bench.throughput       # writes docs/bench/throughput.json and throughput.md (~2 min)

Measured over the span of the calls (first request to last answer, from the server's log), so cutting the views
before the first call and writing the report after the last are not counted: they are once per image, not per call."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.backend import BackendProcess

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
GRID, PHASES, REPEATS = "4x4", ["text", "subjects", "characteristics"], 3
MODEL = "openai/fake-vl"
PREFECT_PORT = 4294


def process_cpu() -> float:
    """This process's CPU seconds (user + system, all threads)."""
    return sum(os.times()[:2])


def machine_busy_cpu() -> float:
    """This machine's busy CPU seconds, all processes (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_view(view: dict, busy_s: float, cpus: int) -> dict:
    """The cores' busy time in the span, and the span over the larger of the calls' bound and that time over them."""
    cpu_bound = busy_s / cpus
    return {"cpus": cpus, "cpu_busy_in_span_s": round(busy_s, 2), "cpu_busy_share": round(cpu_bound / view["span_s"], 2),
            "span_over_cpu_bound": round(view["span_s"] / max(view["bound_s"], cpu_bound), 3)}


class Sampler:
    """Every `every_s`: CPU seconds as `read` counts them (default: this process's)."""

    def __init__(self, every_s: float = 0.005, read=process_cpu):
        self.every_s, self.read = every_s, read
        self.cpu: list[tuple[float, float]] = []
        self._stop = threading.Event()

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.cpu.append((time.monotonic(), self.read()))

    def cpu_between(self, start: float, end: float) -> float:
        inside = [c for t, c in self.cpu if start <= t <= end]
        return inside[-1] - inside[0] if len(inside) > 1 else 0.0


class CpuParts:
    """CPU time of the calling thread inside each of a few functions (patched for the block), by part. Nested
    parts are not subtracted: the parts wrapped are disjoint."""

    def __init__(self, parts: dict[str, tuple[object, str]]):
        self.parts, self.cpu, self._saved = parts, Counter(), []
        self.requests: list[dict] = []

    def __enter__(self) -> CpuParts:
        for part, (owner, name) in self.parts.items():
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(part, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)

    def _timed(self, part: str, original):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.cpu[part] += time.thread_time() - started
        return timed


def call_span(requests) -> tuple[float, float, int]:
    answered = [r for r in requests if r.status == 200]
    return min(r.started for r in answered), max(r.finished for r in answered), len(answered)


def plain_litellm(requests: list[dict], concurrency: int) -> dict:
    """A loop of litellm.completion calls from `concurrency` threads: the very requests Mosaic sent (messages with
    the crop, the answer's JSON Schema as response_format, the same options), built ahead."""
    import litellm

    with BackendProcess() as server:
        sent = [{**request, "api_base": server.openai_base} for request in requests]
        litellm.completion(**sent[0])  # warm: the first connection
        with Sampler() as sampler, ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda request: litellm.completion(**request), sent))
    start, end, answered = call_span(server.requests[1:])
    return figures(answered, end - start, sampler.cpu_between(start, end))


def mosaic_library(image_path: str, concurrency: int, work: Path, parts: bool = False) -> tuple[dict, dict, list]:
    """mosaic.review(): the thread-pool driver, no memo (a scratch one for the run), no Prefect. With parts: the CPU
    of its steps per call, and the requests it sent to LiteLLM."""
    import mosaic
    from mosaic import engine, llm, memo

    timed = {"LiteLLM (request, HTTP, response)": (llm, "_complete"), "building messages (crop, prompt)":
             (llm, "build_messages"), "memo (diskcache)": (memo.Memo, "put"), "settling answers (parse, next work)":
             (engine.Review, "done")} if parts else {}
    requests: list[dict] = []
    with BackendProcess() as server, CpuParts(timed) as cpu:
        if parts:
            complete = llm._complete
            llm._complete = lambda request: (requests.append(request), complete(request))[1]
        try:
            with Sampler() as sampler:
                mosaic.review(image_path, MODEL, server.openai_base, grid=GRID, phases=PHASES, use_memo=False,
                              concurrency=concurrency, second_look=False, out_dir=str(work / "reports"))
        finally:
            if parts:
                llm._complete = complete
    start, end, answered = call_span(server.requests)
    total = sampler.cpu_between(start, end)
    per_call = {part: round(1000 * cpu_s / answered, 2) for part, cpu_s in cpu.cpu.most_common()}
    if parts:
        per_call["the rest (Mosaic's driver, LiteLLM's background logging, threads)"] = round(
            1000 * total / answered - sum(per_call.values()), 2)
    return figures(answered, end - start, total), per_call, requests


def mosaic_flow(image_path: str, concurrency: int, work: Path) -> dict:
    """`mosaic run`'s flow (mosaic_flows.review.run_review): a Prefect task per view on Mosaic's local Prefect server; the
    server's own CPU is on the same cores and not counted here."""
    from mosaic_flows.review import run_review

    with BackendProcess() as server:
        with Sampler() as sampler:
            state = run_review(concurrency=concurrency, image_path=image_path, model=MODEL, api_base=server.openai_base,
                               grid=GRID, phases=PHASES, use_memo=False, second_look=False,
                               out_dir=str(work / "flow-reports"))
        assert state.is_completed(), state.message
    start, end, answered = call_span(server.requests)
    return figures(answered, end - start, sampler.cpu_between(start, end))


def figures(calls: int, span_s: float, cpu_s: float) -> dict:
    return {"calls": calls, "span_s": round(span_s, 3), "calls_per_s": round(calls / span_s, 1),
            "cpu_ms_per_call": round(1000 * cpu_s / calls, 1)}


def median_of(runs: list[dict]) -> dict:
    best = sorted(runs, key=lambda r: r["calls_per_s"])[len(runs) // 2]
    return {**best, "all_calls_per_s": [r["calls_per_s"] for r in runs],
            "all_cpu_ms_per_call": [r["cpu_ms_per_call"] for r in runs]}


def measure() -> dict:
    work = Path(tempfile.mkdtemp(prefix="mosaic-bench-throughput-"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ["MOSAIC_CACHE_DIR"] = str(work / "memo")
    from testkit.scenes import make_photo  # the tests' textured photo: no blank views

    from mosaic_cli.local_server import LocalServer

    image = str(make_photo(work / "photo.png", size=(2400, 1600)))
    prefect = LocalServer(PREFECT_PORT, work / "prefect")  # a process of its own, as `mosaic run` has it
    try:
        prefect.ensure(120, lambda line: None)
        os.environ["PREFECT_API_URL"] = prefect.api_url
        return measured(image, work)
    finally:
        prefect.stop()


def measured(image: str, work: Path) -> dict:
    mosaic_library(image, 1, work)  # warm: imports, LiteLLM's first calls
    _, parts, requests = mosaic_library(image, 1, work, parts=True)
    out: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "grid": GRID, "phases": PHASES,
                 "calls": len(requests)}
    for concurrency in (1, 2):
        library = [mosaic_library(image, concurrency, work)[0] for _ in range(REPEATS)]
        plain = [plain_litellm(requests, concurrency) for _ in range(REPEATS)]
        out[f"concurrency_{concurrency}"] = {"plain_litellm": median_of(plain), "mosaic_library": median_of(library)}
    out["concurrency_2"]["mosaic_flow"] = median_of([mosaic_flow(image, 2, work) for _ in range(REPEATS)])
    out["mosaic_library_cpu_ms_per_call_by_part"] = parts
    for concurrency in (1, 2):
        row = out[f"concurrency_{concurrency}"]
        plain = row["plain_litellm"]
        for name in [k for k in row if k != "plain_litellm"]:
            row[name]["cpu_over_plain"] = round(row[name]["cpu_ms_per_call"] / plain["cpu_ms_per_call"], 3)
            row[name]["rate_plain_over_this"] = round(plain["calls_per_s"] / row[name]["calls_per_s"], 3)
    return out


def render(r: dict) -> str:
    lines = [f"# Throughput against a backend that answers at once ({r['date']}, {r['cpus']} CPUs)", "",
             f"`python -m bench.throughput`. One {r['grid']} review of a 2400×1600 photo, phases {', '.join(r['phases'])}, "
             "no memo, no second look; the stand-in server in a process of its own. Figures over the span of the calls "
             f"(first request to last answer), the median of {REPEATS} runs. The plain loop sends the very requests Mosaic "
             "sent (recorded: messages with the crop, response_format with the answer's JSON Schema, the same options) "
             "with `litellm.completion` from as many threads, built ahead.", "",
             "| in flight | way | calls | calls/s | CPU ms per call | CPU vs plain | plain rate / this |",
             "|---|---|---|---|---|---|---|"]
    for concurrency in (1, 2):
        for name, row in r[f"concurrency_{concurrency}"].items():
            lines.append(f"| {concurrency} | {name.replace('_', ' ')} | {row['calls']} | {row['calls_per_s']} | "
                         f"{row['cpu_ms_per_call']} | {row.get('cpu_over_plain', 1.0)} | {row.get('rate_plain_over_this', 1.0)} |")
    lines += ["", "## Where Mosaic's CPU goes per call (library driver, 1 in flight; each part's thread CPU time)", "",
              "| part | CPU ms per call |", "|---|---|"]
    lines += [f"| {part} | {ms} |" for part, ms in r["mosaic_library_cpu_ms_per_call_by_part"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    result = measure()
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    (DOCS / "throughput.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
