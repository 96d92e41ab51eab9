"""Peak memory of Mosaic's prepare step (decode, cut every view, store crops) on a large image, in a fresh process.

    python -m bench.memory [--mp 100] [--density light]

Prints one JSON line: the image size, its decoded size (W*H*3), the process's RSS after imports, its peak RSS
(ru_maxrss) and their ratios to the decoded size."""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """VmHWM, the peak RSS of this program. Not getrusage's ru_maxrss: that survives exec, so a child started
    from a large parent reports the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_image(path: Path, megapixels: float) -> tuple[int, int]:
    """A street scene scaled up to `megapixels` (4:3), saved as JPEG (quality 90)."""
    from PIL import Image

    from testkit.scenes import make_scene

    h = int(math.sqrt(megapixels * 1e6 * 3 / 4))
    w = int(h * 4 / 3)
    scene = make_scene(3, 4000, 3000, n_signs=24)
    big = scene.image.resize((w, h), Image.Resampling.BILINEAR)
    del scene
    big.save(path, quality=90)
    return w, h


def measure_prepare(path: str, density: str) -> dict:
    from mosaic.backend import Backend
    from mosaic.memo import BlobStore
    from mosaic.images import set_pixel_limit
    from mosaic.pipeline import prepare

    set_pixel_limit(300)
    base = _rss_now()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.monotonic()
        plan = prepare(path, density, None, ["text", "subjects", "characteristics"], Backend.create("offline:896"),
                       BlobStore(Path(tmp)))
        elapsed = time.monotonic() - t
    decoded = plan.width * plan.height * 3
    peak = _peak()
    return {"size": [plan.width, plan.height], "megapixels": round(plan.width * plan.height / 1e6, 1),
            "grid": f"{plan.cols}x{plan.rows}", "decoded_mb": round(decoded / 2**20, 1),
            "rss_after_imports_mb": round(base / 2**20, 1), "peak_rss_mb": round(peak / 2**20, 1),
            "peak_over_decoded": round(peak / decoded, 2), "peak_minus_imports_over_decoded": round((peak - base) / decoded, 2),
            "prepare_s": round(elapsed, 1)}


def run(megapixels: float = 100, density: str = "light", workdir: Path | None = None) -> dict:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="mosaic-mem-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"big-{int(megapixels)}mp.jpg"
    if not path.exists():
        subprocess.run([sys.executable, "-c", f"from bench.memory import make_image; from pathlib import Path; "
                        f"make_image(Path({str(path)!r}), {megapixels})"], check=True, cwd=Path(__file__).parents[1])
    out = subprocess.run([sys.executable, "-m", "bench.memory", "--measure", str(path), "--density", density],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory")
    ap.add_argument("--mp", type=float, default=100)
    ap.add_argument("--density", default="light")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.measure:
        print(json.dumps(measure_prepare(a.measure, a.density)))
    else:
        print(json.dumps(run(a.mp, a.density)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
