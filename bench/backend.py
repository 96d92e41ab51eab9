"""The stand-in model server in a process of its own, as a real backend is: its work (HTTP, parsing a view-sized
request) is then not counted as Mosaic's. `python -m bench.backend --latency 0.5 --slots 4 --log requests.json`
prints its address, serves until SIGTERM, then writes what it answered (monotonic times, comparable across
processes on Linux)."""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 60


class BackendProcess:
    """`with BackendProcess(latency=0.5, slots=4) as b:` b.openai_base to call; b.requests once the block has ended."""

    def __init__(self, latency: float = 0.0, slots: int | None = None, spec: str | None = None,
                 dialect: str | None = None):
        self.latency, self.slots, self.spec, self.dialect = latency, slots, spec, dialect
        self.requests: list[SimpleNamespace] = []

    def __enter__(self) -> BackendProcess:
        self._folder = Path(tempfile.mkdtemp(prefix="mosaic-backend-"))
        self._log = self._folder / "requests.json"
        command = [sys.executable, "-m", "bench.backend", "--latency", str(self.latency), "--log", str(self._log)]
        if self.slots:
            command += ["--slots", str(self.slots)]
        if self.spec:
            command += ["--spec", self.spec]
        if self.dialect:
            command += ["--dialect", self.dialect]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            ready, _, _ = select.select([self._process.stdout], [], [], STARTUP_S)
            url = self._process.stdout.readline().strip() if ready else ""
            if not url.startswith("http"):
                raise RuntimeError(f"the stand-in backend did not start in {STARTUP_S} s (exit {self._process.poll()})")
        except BaseException:
            self._stop()
            raise
        self.url, self.openai_base = url, url + "/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        """End the child, keep what it answered (when it wrote its log), leave nothing behind."""
        try:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._log.exists():
                self.requests = [SimpleNamespace(**r) for r in json.loads(self._log.read_text())]
        finally:
            self._process.stdout.close()
            shutil.rmtree(self._folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.backend", description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--slots", type=int, default=None)
    ap.add_argument("--log", required=True)
    ap.add_argument("--spec", help="a small-VLM stand-in (testkit.stand_ins), e.g. reader=tesseract,style=prose; "
                                   "default: the fake VLM")
    ap.add_argument("--dialect", help="the stand-in answers as a model family does (testkit.dialects), e.g. qwen-pixels")
    a = ap.parse_args(argv)
    from mosaic.offline.server import ModelServer
    from testkit.fake_vlm import fake_vlm

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if a.spec:
        from testkit.stand_ins import StandIn

        stand_in = StandIn.from_spec(a.spec)
        if a.dialect:
            from testkit.dialects import in_dialect

            server = ModelServer(in_dialect(stand_in.answer_http, a.dialect), latency=a.latency, slots=a.slots).start()
        else:
            server = ModelServer(stand_in.answer_http, latency=a.latency, slots=a.slots, listed=["stand-in"],
                                 encoder_px=lambda model: stand_in.budget).start()
    else:
        server = ModelServer(fake_vlm, latency=a.latency, slots=a.slots).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()
        records = [asdict(r) | {"text": r.text[max(0, r.text.find("Mosaic task:")):][:300]} for r in server.requests]
        Path(a.log).write_text(json.dumps(records), encoding="utf-8")


if __name__ == "__main__":
    main()
