"""Soak: the recurring inbox deployment left running on Mosaic's local Prefect server, the model server stopped
for a while, good and bad files in the inbox. Writes docs/soak.md and docs/soak.json.

    python -m bench.soak --minutes 10 --outage-at 4 --outage 2

Checks: every good image reviewed exactly once, every bad one in rejected/ with its reason, no sweep Failed except
while the model server was down, no traceback in `mosaic serve`'s log; the server's memory and database size at
the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from testkit.inbox_files import bad_files, good_photo

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _sweeps(api_url: str) -> list[dict]:
    """The review-inbox runs on the server: state, start and end (UTC epoch seconds)."""
    body = json.dumps({"flows": {"name": {"any_": ["review-inbox"]}}, "limit": 200}).encode()
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.loads(response.read())

    def epoch(text: str | None) -> float | None:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None

    return sorted(({"name": r["name"], "state": r["state_name"], "start": epoch(r.get("start_time")),
                    "end": epoch(r.get("end_time"))} for r in runs), key=lambda r: r["start"] or 0)


def run(minutes: float, outage_at: float, outage: float, good: int, base: Path, say=print, late: int = 3,
        until_done: bool = False) -> dict:
    """good images at the start; late more when the model server goes down (they wait for it to come back).
    until_done: stop before `minutes` once every good image is reviewed and every bad file rejected (a short soak)."""
    from mosaic.offline.server import ModelServer
    from testkit.fake_vlm import fake_vlm

    inbox, outbox = base / "inbox", base / "outbox"
    inbox.mkdir(parents=True)
    for i in range(good):
        good_photo(inbox / f"good-{i:02d}.png", seed=i)
    bad = {kind: path.name for kind, path in bad_files(inbox).items()}
    port, model_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MOSAIC_PREFECT_SERVER")}
    env.update(PREFECT_HOME=str(base / "prefect-home"), MOSAIC_SERVER_PORT=str(port),
               MOSAIC_CACHE_DIR=str(base / "memo"), LITELLM_LOCAL_MODEL_COST_MAP="True", MOSAIC_RETRIES="1",
               MOSAIC_RETRY_DELAY_S="0", MOSAIC_INBOX_MAX_FAILURES="10")
    mosaic = [sys.executable, "-m", "mosaic_cli"]
    subprocess.run(mosaic + ["server", "start"], env=env, check=True, capture_output=True, timeout=300)
    api_url = f"http://127.0.0.1:{port}/api"
    server_pid = json.loads((base / "prefect-home" / "mosaic-server.json").read_text())["pid"]
    db = base / "prefect-home" / "prefect.db"
    start = {"server_rss_mb": _rss_mb(server_pid), "db_mb": db.stat().st_size / 1e6}
    model = ModelServer(fake_vlm, models=["fake-vl"], port=model_port).start()
    log = open(base / "serve.log", "w")
    serve = subprocess.Popen(mosaic + ["serve", "--name", "soak", "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--every", "1", "--model", "openai/fake-vl", "--api-base", model.openai_base,
                                       "--density", "quick", "--phases", "text"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    began = time.time()
    down: tuple[float, float] | None = None
    try:
        while time.time() - began < minutes * 60:
            elapsed = (time.time() - began) / 60
            if outage and down is None and elapsed >= outage_at:
                model.stop()
                down = (time.time(), 0.0)
                for i in range(good, good + late):  # images that arrive while the model server is down
                    good_photo(inbox / f"good-{i:02d}.png", seed=i)
                say(f"soak: model server stopped at {elapsed:.1f} min, {late} new images dropped in")
            if down and not down[1] and elapsed >= outage_at + outage:
                model = ModelServer(fake_vlm, models=["fake-vl"], port=model_port).start()
                down = (down[0], time.time())
                say(f"soak: model server back at {elapsed:.1f} min")
            if until_done and not down and _all_handled(outbox, base / "rejected", good, len(bad)):
                break
            time.sleep(2)
        time.sleep(5)
        sweeps = _sweeps(api_url)
        end = {"server_rss_mb": _rss_mb(server_pid), "db_mb": db.stat().st_size / 1e6}
    finally:
        serve.terminate()
        serve.wait(60)
        log.close()
        model.stop()
        subprocess.run(mosaic + ["server", "stop"], env=env, capture_output=True, timeout=120)
    markers = [json.loads(p.read_text())["image"] for p in (outbox / ".mosaic-reviewed").glob("*.json")]
    rejected = base / "rejected"
    reasons = {name: (rejected / f"{name}.reason.txt").read_text().strip() if (rejected / f"{name}.reason.txt").exists()
               else None for name in bad.values()}
    logged = (base / "serve.log").read_text(errors="replace")

    def while_down(sweep: dict) -> bool:  # a sweep that overlapped the outage (plus its own retries)
        return bool(down) and (sweep["end"] or time.time()) >= down[0] and (sweep["start"] or 0) <= (down[1] or time.time())

    failed = [s for s in sweeps if s["state"] not in ("Completed", "Scheduled", "Pending", "Running")]
    return {
        "minutes": minutes, "outage": {"at_min": outage_at, "for_min": outage} if outage else None,
        "good_images": good, "arrived_during_outage": late if down else 0, "bad_files": bad,
        "reviewed_once": sorted(markers) == sorted(f"good-{i:02d}.png" for i in range(good + (late if down else 0))),
        "reviews": len(markers),
        "bad_left_in_inbox": sorted(p.name for p in inbox.iterdir() if p.is_file() and not p.name.startswith("good-")),
        "rejected_with_reason": all(reasons.values()), "reasons": reasons,
        "sweeps": sum(1 for x in sweeps if x["start"]),  # started; the scheduler keeps runs ahead as Scheduled
        "states": {s: sum(1 for x in sweeps if x["state"] == s) for s in {x["state"] for x in sweeps}},
        "failed_sweeps_outside_outage": [s["name"] for s in failed if not while_down(s)],
        "failed_sweeps_during_outage": [s["name"] for s in failed if while_down(s)],
        "tracebacks_in_serve_log": logged.count("Traceback"),
        "start": start, "end": end,
    }


def _all_handled(outbox: Path, rejected: Path, good: int, bad: int) -> bool:
    return (len(list((outbox / ".mosaic-reviewed").glob("*.json"))) >= good
            and len(list(rejected.glob("*.reason.txt"))) >= bad)


def write_docs(result: dict, out: Path) -> None:
    (out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    outage = result["outage"]
    lines = [
        "# Soak: the inbox deployment left running", "",
        f"`python -m bench.soak --minutes {result['minutes']:g}"
        + (f" --outage-at {outage['at_min']:g} --outage {outage['for_min']:g}`" if outage else " --outage 0`")
        + f" on {datetime.now(timezone.utc):%Y-%m-%d} (2 shared cores). `mosaic serve --every 1` on Mosaic's local "
        f"Prefect server; a stand-in VLM server (`fake_vlm`) on loopback"
        + (f", stopped from minute {outage['at_min']:g} for {outage['for_min']:g} min" if outage else "")
        + f"; {result['good_images']} good images (320×240) and {len(result['bad_files'])} bad files "
        f"at the start, {result['arrived_during_outage']} more good ones dropped in when the model server stopped "
        "(truncated PNG, zero bytes, text named .jpg, 20×20 px, a 200-MP PNG bomb of a few bytes).", "",
        "| check | result |", "|---|---|",
        f"| every good image reviewed exactly once | {result['reviewed_once']} ({result['reviews']} reviews) |",
        f"| bad files left in the inbox | {', '.join(result['bad_left_in_inbox']) or 'none'} |",
        f"| every bad file in rejected/ with its reason | {result['rejected_with_reason']} |",
        f"| sweeps started | {result['sweeps']} (runs by state: "
        f"{', '.join(f'{n} {s}' for s, n in sorted(result['states'].items()))}; Scheduled: made ahead by the scheduler) |",
        f"| Failed sweeps outside the outage | {len(result['failed_sweeps_outside_outage'])} |",
        f"| Failed sweeps during the outage | {len(result['failed_sweeps_during_outage'])} |",
        f"| tracebacks in `mosaic serve`'s log | {result['tracebacks_in_serve_log']} |",
        f"| server memory (RSS) start → end | {result['start']['server_rss_mb']:.0f} → {result['end']['server_rss_mb']:.0f} MB |",
        f"| database size start → end | {result['start']['db_mb']:.2f} → {result['end']['db_mb']:.2f} MB |",
        "", "Reasons written beside the rejected files:", "",
    ]
    lines += [f"- {name}: {reason}" for name, reason in result["reasons"].items()]
    lines += ["", "A sweep during the outage ends Failed and names the images it will try again; Prefect logs Mosaic's own "
              "errors (a server down, failed tiles) in one line, without a traceback (flows/expected_failures.py). "
              "The database grows with every sweep's runs, task runs and logs, and with the runs the scheduler keeps "
              "ahead."]
    (out / "soak.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--outage-at", type=float, default=4, help="minute the model server is stopped")
    parser.add_argument("--outage", type=float, default=2, help="minutes it stays down (0: no outage)")
    parser.add_argument("--good", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--rewrite", action="store_true", help="only write soak.md again from the soak.json in --out")
    args = parser.parse_args()
    if args.rewrite:
        write_docs(json.loads((args.out / "soak.json").read_text()), args.out)
        return
    with tempfile.TemporaryDirectory(prefix="mosaic-soak-") as base:
        result = run(args.minutes, args.outage_at, args.outage, args.good, Path(base),
                     lambda line: print(line, file=sys.stderr))
    write_docs(result, args.out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
