"""How much code a review's scheduling takes, now and at a base commit. `python -m bench.code_size` →
docs/bench/code-size.json and .md.

Counted from git (the base) and the work tree (now), lines as `wc -l` counts them:
- the review's engine and scheduling: the engine, the driver, the batch, the steps (the one retry layer), the flows
  and tasks (Prefect's server client, flows/server.py, apart: it schedules nothing);
- where a review's model call is made (`call_model(` outside its definition, the probe and tests);
- tests that import bench/, and the README's length."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "460c71c"  # the last commit before issue 25's work
SCHEDULING = ("mosaic/engine.py", "mosaic/driver.py", "mosaic/batch.py", "mosaic/steps.py", "flows/", "tasks/")
APART = ("flows/server.py",)
CALL = re.compile(r"(?<!def )\bcall_model\(")
IMPORTS_BENCH = re.compile(r"^\s*(from bench\b|import bench\b)", re.M)


def files(rev: str | None) -> list[str]:
    listed = (subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split() if rev else
              subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split())
    return [f for f in listed if f.endswith(".py") or f == "README.md"]


def text(rev: str | None, path: str) -> str:
    if rev:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    return (ROOT / path).read_text()


def measure(rev: str | None) -> dict:
    names = files(rev)
    scheduling = {f: text(rev, f).count("\n") for f in names
                  if f.startswith(SCHEDULING) and f.endswith(".py") and f not in APART}
    calls = [f"{f}:{n}" for f in names if f.endswith(".py") and not f.startswith(("tests/", "bench/"))
             and f != "mosaic/probe.py" for n, line in enumerate(text(rev, f).splitlines(), 1) if CALL.search(line)]
    return {"rev": rev or "work tree", "scheduling_lines": sum(scheduling.values()), "by_file": scheduling,
            "apart": {f: text(rev, f).count("\n") for f in names if f in APART},
            "review_call_sites": calls,
            "tests_importing_bench": sorted(f for f in names if f.startswith("tests/") and f.endswith(".py")
                                            and IMPORTS_BENCH.search(text(rev, f))),
            "readme_lines": text(rev, "README.md").count("\n") if "README.md" in names else 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.code_size")
    parser.add_argument("--base", default=BASE, help="the commit to compare with")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "code-size"))
    args = parser.parse_args(argv)
    base, now = measure(args.base), measure(None)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    out = {"base": base, "now": now, "head": head.strip()}
    Path(args.out).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# How much code a review's scheduling takes (`python -m bench.code_size`)", "",
             f"Lines (`wc -l`) at {args.base} (before issue 25's work) and now (the work tree on {out['head']}). "
             "The review's engine and scheduling: " + ", ".join(SCHEDULING) + "; "
             + ", ".join(APART) + " (Prefect's server client: serve, history, show, rerun) counted apart.", "",
             "| file | base | now |", "|---|---|---|"]
    for f in sorted(set(base["by_file"]) | set(now["by_file"])):
        lines.append(f"| {f} | {base['by_file'].get(f, '')} | {now['by_file'].get(f, '')} |")
    lines += [f"| **the review's engine and scheduling** | **{base['scheduling_lines']}** | **{now['scheduling_lines']}** |",
              *(f"| {f} (apart) | {base['apart'].get(f, '')} | {now['apart'].get(f, '')} |" for f in APART), "",
              "| figure | base | now |", "|---|---|---|",
              f"| where a review's model call is made | {', '.join(base['review_call_sites'])} | "
              f"{', '.join(now['review_call_sites'])} |",
              f"| tests that import bench/ | {len(base['tests_importing_bench'])} | {len(now['tests_importing_bench'])} |",
              f"| README lines | {base['readme_lines']} | {now['readme_lines']} |"]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
