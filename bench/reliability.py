"""Reliability figures: damaged images, backend faults, interruptions, secrets. Writes docs/reliability.md.

    python -m bench.reliability            # ~4 minutes on 2 cores

Everything runs on this machine: a loopback model server (mosaic.offline.server) with injected faults, the real
`mosaic` command, the real Prefect engine."""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-bench-NeverWritten-7d41"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "reliability.md"))
    parser.add_argument("--interruptions", type=int, default=4)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mosaic-reliability-"))
    os.environ.update({
        "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MOSAIC_CACHE_DIR": str(work / "memo"),
        "MOSAIC_OUT_DIR": str(work / "reports"), "MOSAIC_RETRIES": "2", "MOSAIC_RETRY_DELAY_S": "0.2",
        "MOSAIC_API_KEY": SECRET, "MOSAIC_PREFECT_SERVER": "temporary",  # as it measured before the local server
    })
    os.environ.pop("PREFECT_API_URL", None)
    photo = _photo(work / "photo.png")
    results = {
        "fuzz": fuzz_images(),
        "bad_inputs": bad_inputs(work),
        "faults": backend_faults(photo, work),
        "interruptions": interruptions(photo, work, args.interruptions),
    }
    results["secret_found_in"] = [str(p.relative_to(work)) for p in work.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    Path(args.out).write_text(render(results))
    print(f"wrote {args.out}")
    return 0


def _photo(path: Path) -> Path:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1200, 800), (90, 120, 150))
    draw = ImageDraw.Draw(img)
    for i in range(0, 1200, 97):
        draw.rectangle((i, 260, i + 60, 340), fill=(200, 180 - i % 50, 40))
    img.save(path)
    return path


def fuzz_images(per_format: int = 150) -> dict:
    from PIL import Image

    from mosaic.errors import BadImage
    from mosaic.images import decode_image

    counts = {"cases": 0, "image": 0, "clear_error": 0, "other_exception": 0}
    rng = random.Random(0)
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF"):
        buf = io.BytesIO()
        Image.new("RGB", (96, 64), (30, 120, 200)).save(buf, fmt)
        original = buf.getvalue()
        for i in range(per_format):
            data = bytearray(original)
            if i % 3 == 0:
                data = data[: rng.randrange(len(data))]
            else:
                for _ in range(rng.randint(1, 12)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            counts["cases"] += 1
            try:
                decode_image(bytes(data), "case")
                counts["image"] += 1
            except BadImage:
                counts["clear_error"] += 1
            except Exception:
                counts["other_exception"] += 1
    return counts


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosaic_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def bad_inputs(work: Path) -> list[dict]:
    from PIL import Image

    d = work / "bad"
    d.mkdir()
    (d / "folder").mkdir()
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("hello")
    Image.new("RGB", (900, 600), "white").save(d / "ok.png")
    (d / "cut.png").write_bytes((d / "ok.png").read_bytes()[:400])
    Image.new("RGB", (1, 1), "white").save(d / "one.png")
    (d / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    cases = [
        ("missing file", [f"{d}/nope.jpg"]), ("a folder", [f"{d}/folder"]), ("zero bytes", [f"{d}/empty.jpg"]),
        ("not an image", [f"{d}/text.jpg"]), ("truncated PNG", [f"{d}/cut.png"]), ("1×1 image", [f"{d}/one.png"]),
        ("HEIC", [f"{d}/photo.heic"]), ("invalid density", [f"{d}/ok.png", "--density", "huge"]),
        ("invalid grid", [f"{d}/ok.png", "--grid", "9"]), ("backend not listening",
         [f"{d}/ok.png", "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1"]),
    ]
    rows = []
    for name, args in cases:
        result = _cli("run", *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        rows.append({"case": name, "exit": result.returncode, "one_line": len(lines) == 1,
                     "traceback": "Traceback" in result.stderr, "message": lines[-1] if lines else ""})
    return rows


FAULTS = {
    "429 with Retry-After": dict(status=429, retry_after=0.5), "429": dict(status=429), "500": dict(status=500),
    "503 with Retry-After": dict(status=503, retry_after=0.3), "HTML 502 page": dict(status=502, body="<html>bad gateway</html>"),
    "connection closed": dict(status=0), "malformed JSON": dict(status=200, body="{not json"),
    "empty content": dict(status=200, body='{"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}'),
    "timeout (slow drip)": dict(status=200, delay=4.0),
    "context overflow": dict(status=400, body='{"error": {"message": "request exceeds the available context size"}}'),
    "model not found": dict(status=404, body='{"error": {"message": "model \'x\' not found"}}'),
}


def backend_faults(photo: Path, work: Path) -> list[dict]:
    """Each fault on one tile's calls: twice (retries absorb it) and forever (the run fails, naming the tile)."""
    from mosaic_cli.main import main as mosaic
    from mosaic.offline.server import Fault, ModelServer
    from testkit.fake_vlm import fake_vlm

    rows = []
    for name, spec in FAULTS.items():
        for times in (2, -1):
            os.environ["MOSAIC_CACHE_DIR"] = str(work / f"memo-fault-{len(rows)}")
            os.environ["MOSAIC_TIMEOUT_S"] = "2"
            with ModelServer(fake_vlm) as server:
                server.add_fault(Fault(times=times, match="This crop is tile r1c1 ", **spec))
                started = time.monotonic()
                out, err = io.StringIO(), io.StringIO()
                saved = sys.stdout, sys.stderr
                sys.stdout, sys.stderr = out, err
                try:
                    code = mosaic(["run", str(photo), "--model", "openai/fake", "--api-base", server.openai_base,
                                   "--grid", "2x2", "--phases", "text", "--json"])
                finally:
                    sys.stdout, sys.stderr = saved
                answered = len(server.chat_requests())
                tried = len(server.requests)
                first_run_s = time.monotonic() - started
                completed = _memo_entries(Path(os.environ["MOSAIC_CACHE_DIR"]))
                server.clear_faults()
                sys.stdout = io.StringIO()
                try:
                    rerun_code = mosaic(["run", str(photo), "--model", "openai/fake", "--api-base", server.openai_base,
                                         "--grid", "2x2", "--phases", "text", "--json"])
                    rerun = json.loads(sys.stdout.getvalue())["calls"]
                finally:
                    sys.stdout = saved[0]
            message = next((line for line in reversed(err.getvalue().splitlines())
                            if line.startswith("mosaic: ") and "calls planned" not in line and " calls to " not in line), "")
            rows.append({"fault": name, "times": "twice" if times == 2 else "always", "exit": code,
                         "requests": tried, "answered": answered, "seconds": round(first_run_s, 1),
                         "message": message[:200], "rerun_exit": rerun_code, "rerun_made": rerun["made"],
                         "completed": completed, "calls_lost": completed - rerun["cached"]})
    os.environ.pop("MOSAIC_TIMEOUT_S")
    return rows


def _memo_entries(directory: Path) -> int:
    from mosaic.memo import Memo

    memo = Memo(directory)
    try:
        return memo.stats()["entries"]
    finally:
        memo.close()


def interruptions(photo: Path, work: Path, count: int) -> list[dict]:
    """SIGKILL the whole process group at different points of the fan-out, then run again."""
    from mosaic.offline.server import ModelServer
    from testkit.fake_vlm import fake_vlm

    rows = []
    for i in range(count):
        memo_dir = work / f"memo-kill-{i}"
        env = {"MOSAIC_CACHE_DIR": str(memo_dir)}
        with ModelServer(fake_vlm, latency=0.2, slots=2) as server:
            args = ["run", str(photo), "--model", "openai/fake", "--api-base", server.openai_base, "--grid", "3x2",
                    "--concurrency", "2", "--json"]
            proc = subprocess.Popen([sys.executable, "-m", "mosaic_cli", *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env={**os.environ, **env}, start_new_session=True, cwd=ROOT)
            kill_after = 5 + i * 8
            while len(server.chat_requests()) < kill_after and proc.poll() is None:
                time.sleep(0.02)
            if proc.poll() is not None:
                raise RuntimeError(f"the run ended before the kill: {proc.stderr.read()[-600:]}")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.5)
            answered = len(server.chat_requests())
            kept = _memo_entries(memo_dir)
            rerun = _cli(*args, env=env)
            report = json.loads(rerun.stdout) if rerun.returncode == 0 else {"calls": {}}
            rows.append({"killed_after_answers": answered, "memo_entries_kept": kept, "rerun_exit": rerun.returncode,
                         "rerun_made": report["calls"].get("made"), "rerun_cached": report["calls"].get("cached"),
                         "planned": report["calls"].get("planned"), "calls_lost": kept - report["calls"].get("cached", 0)})
    return rows


def render(r: dict) -> str:
    fuzz = r["fuzz"]
    lines = [
        "# Reliability figures", "",
        "Produced by `python -m bench.reliability` (results also in `reliability.json`). Everything runs on one machine:",
        "a loopback model server with injected faults, the real `mosaic` command and Prefect engine.", "",
        "## Damaged images (generated)", "",
        f"{fuzz['cases']} mutated JPEG, PNG, GIF, WebP, TIFF, BMP and AVIF files (random truncation and overwritten bytes): "
        f"{fuzz['image']} decoded to an image, {fuzz['clear_error']} refused with one clear line, "
        f"**{fuzz['other_exception']} other exceptions**.", "",
        "## Bad input to `mosaic run`", "", "| case | exit | one line | traceback | message |", "|---|---|---|---|---|",
    ]
    lines += [f"| {b['case']} | {b['exit']} | {b['one_line']} | {b['traceback']} | {b['message']} |" for b in r["bad_inputs"]]
    lines += ["", "## Backend faults", "",
              "Injected on every call of tile r1c1 (2×2 grid, text phase, 2 retries with backoff): *twice* (the retries "
              "should absorb it) or *always* (the run must fail naming r1c1, keep the other tiles, and a rerun after "
              "the fault is gone must make only the missing calls).", "",
              "Columns: HTTP requests the server saw, calls completed (in the memo) after the run, seconds (the first "
              "row includes starting Prefect's temporary server), calls the rerun made and completed calls it had to "
              "make again (lost).", "",
              "| fault | injected | exit | requests | completed | s | rerun made | calls lost | message |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {f['fault']} | {f['times']} | {f['exit']} | {f['requests']} | {f['completed']} | {f['seconds']} | "
              f"{f['rerun_made']} | {f['calls_lost']} | {f['message'].replace('|', '/')} |" for f in r["faults"]]
    lines += ["", "## Interruptions (SIGKILL of the whole process group mid fan-out, then the same command)", "",
              "| killed after answers | memo entries kept | rerun exit | rerun made | rerun cached | planned | calls lost |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {i['killed_after_answers']} | {i['memo_entries_kept']} | {i['rerun_exit']} | {i['rerun_made']} | "
              f"{i['rerun_cached']} | {i['planned']} | {i['calls_lost']} |" for i in r["interruptions"]]
    lost = sum(f["calls_lost"] for f in r["faults"]) + sum(i["calls_lost"] for i in r["interruptions"])
    lines += ["", f"**Calls lost in all of the above: {lost}.** (A completed call is lost when a later run has to make "
              "it again. Calls in flight at the moment of a kill were never completed and are made again.)", "",
              "## Secrets", "",
              f"Every run above had `MOSAIC_API_KEY` set. Files under the run's folders (memo, reports, Prefect's database "
              f"and logs) containing it: **{len(r['secret_found_in'])}** {r['secret_found_in'] or ''}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
