"""`mosaic batch DIR_OR_GLOB`: every image of a folder or pattern in one Prefect flow run, on threads or a Dask cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mosaic.errors import BadOption, BackendError, RunFailed
from mosaic.schema import DEFAULT_PHASES, PHASES
from mosaic.checks import checked_backend, checked_phases

from .common import command_seconds, connect_prefect, load, one_line, quiet_prefect, text_table

EXAMPLES = """examples:
  mosaic batch photos/ --model ollama_chat/qwen2.5vl:7b
  mosaic batch 'shoots/**/*.jpg' --model openai/qwen2.5-vl --api-base http://gpu1:8080/v1 --api-base http://gpu2:8080/v1
  mosaic batch photos/ --runner dask                                  # a local Dask cluster, one worker per core
  mosaic batch photos/ --runner dask --dask-address tcp://10.0.0.5:8786 --json > batch.json
"""


def register(commands) -> None:
    cmd = commands.add_parser("batch", help="review every image of a folder or glob pattern", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("images", help="a folder, a glob pattern (quoted: 'photos/**/*.jpg') or one image")
    cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show Prefect's logs")
    add_backend_options(cmd)
    cmd.add_argument("--density", default="light", help="quick, light, dense, max or auto (default: light)")
    cmd.add_argument("--grid", help="COLSxROWS, overrides --density")
    cmd.add_argument("--phases", default=",".join(DEFAULT_PHASES), help=f"comma-separated, from {', '.join(PHASES)}")
    cmd.add_argument("--concurrency", type=int, help="model calls in flight at once over the batch (default: "
                     "$MOSAIC_CONCURRENCY or 2, at least $MOSAIC_BACKEND_SLOTS per server)")
    cmd.add_argument("--runner", choices=["threads", "dask"], default="threads",
                     help="where the model calls run: this process's threads, or a Dask cluster (default: threads)")
    cmd.add_argument("--dask-address", help="the Dask scheduler to use, e.g. tcp://10.0.0.5:8786 (with --runner dask; "
                     "default: a local cluster started for the batch)")
    cmd.add_argument("--out", help="folder for report folders (default: ./mosaic-reports)")
    cmd.add_argument("--json", action="store_true", help="print one JSON object: images (image, state, report_dir, "
                     "calls) and totals")
    cmd.add_argument("--no-cache", action="store_true", help="skip the call memo")
    cmd.add_argument("--no-second-look", action="store_true", help="skip the second look")
    cmd.set_defaults(func=cmd_batch)


def add_backend_options(cmd) -> None:
    cmd.add_argument("--model", help="LiteLLM model string, or 'offline' (default: $MOSAIC_MODEL or offline)")
    cmd.add_argument("--api-base", action="append", help="the model server's address; give it once per server to spread "
                     "the calls over several servers of the model (default: $MOSAIC_API_BASE, comma-separated)")
    cmd.add_argument("--same-weights", action="store_true", default=None,
                     help="the servers serve the same weights: the memo keys calls by the model alone, so any server's "
                          "answer is reused by all (default: $MOSAIC_SAME_WEIGHTS, off: keys include the addresses)")


def joined_api_base(args) -> str | None:
    """The --api-base options as one setting; --same-weights passed on to the flow's settings (and its workers')."""
    if args.same_weights:
        os.environ["MOSAIC_SAME_WEIGHTS"] = "true"
    return ",".join(args.api_base) if args.api_base else None


def cmd_batch(args: argparse.Namespace) -> int:
    from mosaic.batch import batch_images

    settings = load(model=args.model, api_base=joined_api_base(args), concurrency=args.concurrency, out_dir=args.out,
                    same_weights=args.same_weights)
    if args.dask_address and args.runner != "dask":
        raise BadOption("--dask-address needs --runner dask")
    phases = checked_phases(args.phases)
    images = batch_images(args.images)
    backend = checked_backend(settings, settings.model, settings.api_base)
    if settings.out_dir.exists() and not settings.out_dir.is_dir():
        raise BadOption(f"--out {settings.out_dir} is a file, not a folder")
    backend.check_reachable()
    if args.runner == "dask":
        _check_dask(args.dask_address)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    say(f"mosaic: {len(images)} images, {args.density if not args.grid else args.grid}, phases {','.join(phases)}, "
        f"to {backend.model} at {backend.address}, on {args.runner}" + (f" ({args.dask_address})" if args.dask_address else ""))
    quiet_prefect(args.verbose)
    connect_prefect(settings, say)
    from mosaic_flows.batch import run_batch

    state = run_batch(args.runner, args.dask_address, images=[str(p.resolve()) for p in images], model=settings.model,
                      api_base=settings.api_base, density=args.density, grid=args.grid, phases=phases,
                      out_dir=str(settings.out_dir.resolve()), use_memo=not args.no_cache,
                      concurrency=settings.concurrency, second_look=False if args.no_second_look else None)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        raise BackendError(f"the batch failed: {one_line(error) or state.message}")
    summary = state.result()
    totals = summary["totals"]
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        rows = [{"image": i["image"], "state": i["state"], "made": (i["calls"] or {}).get("made", ""),
                 "cached": (i["calls"] or {}).get("cached", ""), "report": i["report_dir"] or i["error"] or ""}
                for i in summary["images"]]
        print(text_table(rows, ["image", "state", "made", "cached", "report"]))
    say(f"mosaic: {totals['reviewed']} of {totals['images']} images reviewed, {totals['failed']} failed; "
        f"{totals['calls_made']} calls made, {totals['calls_cached']} from the memo; {totals['seconds']:.1f} s, whole "
        f"command {command_seconds():.1f} s")
    if totals["failed"]:
        failed = [f"{i['image']} ({i['error']})" for i in summary["images"] if i["state"] == "failed"]
        raise RunFailed(f"{totals['failed']} of {totals['images']} images failed: " + "; ".join(failed),
                        retry="run the same command again")
    return 0


def _check_dask(address: str | None) -> None:
    """One line, not a traceback, when the scheduler does not answer."""
    if not address:
        return
    import socket
    from urllib.parse import urlparse

    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        with socket.create_connection((url.hostname or "", url.port or 8786), timeout=3):
            pass
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot reach the Dask scheduler at {address}: {(getattr(e, 'strerror', None) or str(e)).lower()}",
                           retryable=False) from None
