"""The `mosaic` command. Thin: it checks the input, starts the flow and prints the result."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import mosaic
from mosaic.checks import checked_backend, checked_call_count, checked_phases
from mosaic.evidence import witnesses_on
from mosaic.errors import BackendError, BadOption, MosaicError, RunFailed
from mosaic.schema import DEFAULT_PHASES, PHASES, count_calls

from . import batch_command, compare_command, open_command, probe_command, server_commands
from .common import load as _settings
from .common import one_line as _one_line
from .common import checked_image, command_seconds, connect_prefect, quiet_prefect

EXAMPLES = """examples:
  mosaic run photo.jpg                                   # the built-in offline reader
  mosaic run photo.jpg --model ollama_chat/qwen2.5vl:7b  # Ollama on this machine
  mosaic run photo.jpg --model openai/qwen2.5-vl --api-base http://127.0.0.1:8080/v1 --density dense
  mosaic run photo.jpg --grid 4x2 --phases text --json > report.json
  mosaic run --sample                                    # the bundled sample image
"""

SAMPLE = Path(mosaic.__file__).parent / "samples" / "street.jpg"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mosaic-review")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosaic", description="Review a high-resolution image with a small local vision model, tile by tile.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    parser.add_argument("--version", action="version", version=f"mosaic {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="review an image", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("image", nargs="?", help="the image to review")
    run.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show Prefect's logs")
    run.add_argument("--sample", action="store_true", help="review the bundled sample image")
    batch_command.add_backend_options(run)
    run.add_argument("--density", default="light", help="quick 2×2, light 3×3, dense 4×4, max 5×5, or auto (default: light)")
    run.add_argument("--grid", help="COLSxROWS, overrides --density, e.g. 4x2")
    run.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                     help=f"comma-separated, from {', '.join(PHASES)} (default: {','.join(DEFAULT_PHASES)}); "
                          "'inspect' asks for everything in one call")
    run.add_argument("--concurrency", type=int, help="model calls in flight at once (default: $MOSAIC_CONCURRENCY or 2)")
    run.add_argument("--input-px", type=int, help="long side the model's image encoder works at, for --density auto when "
                     "Mosaic cannot size the model, e.g. 896 (default: $MOSAIC_INPUT_PX, else what an Ollama server "
                     "reports, else a table of known models)")
    run.add_argument("--profile", help="the model family whose habits to expect (box convention, limits), e.g. "
                     "qwen2.5-vl or gemini (default: $MOSAIC_PROFILE, else what `mosaic probe` saved, else the name)")
    run.add_argument("--box-convention", help="how the model writes boxes: qwen-pixels, pixels, thousandths, "
                     "thousandths-yx, fractions, loc-yx, words or auto (default: $MOSAIC_BOX_CONVENTION, else the profile's)")
    run.add_argument("--out", help="folder for report folders (default: ./mosaic-reports)")
    run.add_argument("--json", action="store_true", help="print only the final report as JSON on stdout")
    run.add_argument("--no-cache", action="store_true", help="skip the call memo (neither read nor write it)")
    run.add_argument("--yes", action="store_true", help="make a run of more calls than $MOSAIC_MAX_CALLS (1000) "
                     "without stopping to refuse it")
    run.add_argument("--plan", choices=["auto", "shaped", "full", "blog"],
                     help="which views are asked: shaped (text only where the local detector finds text, seams only "
                          "where it crosses a tile line, subjects and characteristics of the whole image), full (every "
                          "phase of every tile and seam), blog (the blog's design, for comparison); auto: shaped for "
                          "light and auto densities, full otherwise (default: $MOSAIC_PLAN or auto)")
    run.add_argument("--fine-phases", action="store_true",
                     help="in a shaped plan, ask subjects and characteristics of every tile, not of the whole image")
    run.add_argument("--max-calls", type=int, metavar="N",
                     help="a budget: at most N calls per image, second look included; the plan keeps the views worth "
                          "most and says what it cut (default: $MOSAIC_CALL_BUDGET, none)")
    run.add_argument("--max-minutes", type=float, metavar="M",
                     help="a budget: at most M estimated backend minutes per image (0.5 s + image tokens/500 + answer "
                          "tokens/20 per call, one at a time; $MOSAIC_CALL_OVERHEAD_S, _PREFILL_TPS, _DECODE_TPS) "
                          "(default: $MOSAIC_MINUTES_BUDGET, none)")
    run.add_argument("--no-second-look", action="store_true",
                     help="skip the second look: no closer crops of readings seen once, unclear or read differently, "
                          "so fewer readings are confirmed (default: $MOSAIC_SECOND_LOOK, on)")
    run.add_argument("--witnesses", default=None, metavar="LIST",
                     help="local witnesses asked about every reading: detector,reader (or none: two views of the "
                          "model reading the same text then confirm it) (default: $MOSAIC_WITNESSES, both)")
    run.set_defaults(func=cmd_run)

    cache = commands.add_parser("cache", help="the call memo: stats, clear or prune")
    cache.add_argument("action", choices=["stats", "clear", "prune"],
                       help="stats: size; clear: empty it; prune: drop damaged entries, evict down to the size limit, "
                            "remove crops unused for --days")
    cache.add_argument("--days", type=float, default=30, help="with prune: age of unused crops to remove (default 30)")
    cache.set_defaults(func=cmd_cache)
    batch_command.register(commands)
    compare_command.register(commands)
    open_command.register(commands)
    probe_command.register(commands)
    server_commands.register(commands)  # server, serve, history, show, rerun: Mosaic on a Prefect server
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: _interrupt(args))
    try:
        return args.func(args)
    except MosaicError as e:
        print(f"mosaic: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"\n{_interrupted_line(args)}", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, and the details with -v
        if args.verbose:
            raise
        print(f"mosaic: unexpected error: {type(e).__name__}: {_one_line(e)} (run with -v for details)", file=sys.stderr)
        return 1


INTERRUPT_GRACE_S = 10


def _interrupted_line(args: argparse.Namespace) -> str:
    if getattr(args, "no_cache", False):
        return "mosaic: interrupted; nothing was kept (--no-cache): the same command starts over"
    if args.func in (cmd_run, compare_command.cmd_compare, batch_command.cmd_batch):
        return "mosaic: interrupted; finished calls are kept in the memo, run the same command to go on"
    return "mosaic: interrupted"


def _interrupt(args: argparse.Namespace) -> None:
    """Ctrl-C: KeyboardInterrupt in the main thread, and out within INTERRUPT_GRACE_S even when a worker thread or
    Prefect's engine holds the exit (finished calls are already in the memo; a second Ctrl-C leaves at once)."""
    def leave() -> None:
        print(f"\n{_interrupted_line(args)}", file=sys.stderr, flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, lambda *_: leave())
    timer = threading.Timer(INTERRUPT_GRACE_S, leave)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def entry() -> None:
    """The `mosaic` command: main(), then out at once. Prefect's exit handlers take ~0.5 s joining its threads after
    everything is sent; its logs and events are sent here first."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if "prefect" in sys.modules:
        try:
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
            if "prefect.server.api.server" in sys.modules:
                from mosaic_flows.temporary_server import stop_temporary_servers

                stop_temporary_servers()
        except Exception:  # noqa: BLE001 - whatever is left unsent, the run's files are written
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def cmd_run(args: argparse.Namespace) -> int:
    from mosaic.pipeline import encoder_px
    from mosaic.tiles import choose_grid, coarsened_note

    plan_options = {"plan": args.plan, "coarse_phases": False if args.fine_phases else None,
                    "call_budget": args.max_calls, "minutes_budget": args.max_minutes}
    settings = _settings(model=args.model, api_base=batch_command.joined_api_base(args), concurrency=args.concurrency,
                         out_dir=args.out, input_px=args.input_px, same_weights=args.same_weights,
                         profile=args.profile, box_convention=args.box_convention, **plan_options)
    for name, value in plan_options.items():  # the flow reads its settings from the environment
        if value is not None:
            os.environ[f"MOSAIC_{name.upper()}"] = str(value)
    if args.sample:
        args.image = str(SAMPLE)
    if not args.image:
        raise BadOption("no image given: mosaic run IMAGE (or --sample for the bundled one)")
    phases = checked_phases(args.phases)
    # checked here, not at the end of the review; the review reads it where it witnesses the readings
    witnesses = witnesses_on(settings.witnesses if args.witnesses is None else args.witnesses)
    os.environ["MOSAIC_WITNESSES"] = ",".join(witnesses) or "none"
    backend = checked_backend(settings, settings.model, settings.api_base)
    model = backend.model
    unknown = probe_command.use_profile(settings, model)
    width, height = checked_image(args.image, settings, lambda line: print(line, file=sys.stderr))
    try:
        input_px = encoder_px(backend, args.density, settings.input_px)
        cols, rows, density = choose_grid(width, height, args.density, args.grid, model, input_px)
    except ValueError as e:
        raise BadOption(str(e)) from None
    if note := coarsened_note(width, height, density, cols, rows):
        print(f"mosaic: note: {note}", file=sys.stderr)
    if args.yes:
        os.environ["MOSAIC_YES"] = "1"  # the flow reads its settings too
        settings = settings.model_copy(update={"yes": True})
    if not settings.call_budget:  # a budget is planned within, not refused
        checked_call_count(count_calls(cols, rows, phases), cols, rows, settings)
    backend.check_reachable()
    if unknown:
        print(f"mosaic: {unknown}", file=sys.stderr)
    print(f"mosaic: {Path(args.image).name} {width}×{height}, {cols}×{rows} grid ({density}), phases {','.join(phases)}: "
          f"model {model}" + (f" at {settings.api_base}" if settings.api_base else ""),
          file=sys.stderr)

    state = _run_flow(args, settings, phases, density, input_px)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        if isinstance(error, RunFailed):
            raise error.with_retry("run the same command again")
        if isinstance(error, MosaicError):
            raise error
        raise BackendError(f"the run failed: {_one_line(error) or state.message}")
    report = state.result()
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        calls = report["calls"]
        print(report["review"])
        print(f"\n{calls['total']} calls ({calls['cached']} from the memo); review {report['elapsed_s']:.1f} s, whole "
              f"command {command_seconds():.1f} s; report: {report['report_dir']}", file=sys.stderr)
    return 0


def _run_flow(args, settings, phases, density, input_px):
    quiet_prefect(args.verbose)
    connect_prefect(settings, lambda line: print(line, file=sys.stderr))
    from mosaic_flows.review import run_review

    return run_review(
        concurrency=settings.concurrency, image_path=str(Path(args.image).resolve()), model=settings.model,
        api_base=settings.api_base, density=args.density if not args.grid else density, grid=args.grid,
        phases=phases, out_dir=str(settings.out_dir), use_memo=not args.no_cache, show_progress=True,
        input_px=input_px,  # as found above: the flow need not ask the backend again
        second_look=False if args.no_second_look else None,
    )


def cmd_cache(args: argparse.Namespace) -> int:
    from mosaic.memo import BlobStore, Memo

    settings = _settings()
    memo = Memo(settings.cache_dir, settings.cache_size_mb)
    blobs = BlobStore(settings.cache_dir / "blobs")
    mib = 1024 * 1024
    if args.action == "stats":
        stats, stored = memo.stats(), blobs.stats()
        print(f"{settings.cache_dir}: {stats['entries']} calls, {stats['bytes'] / mib:.1f} MiB of "
              f"{stats['limit'] / mib:.0f} MiB; {stored['crops']} crops, {stored['crop_bytes'] / mib:.1f} MiB; "
              f"{stored['plans']} plans")
    elif args.action == "clear":
        print(f"cleared {memo.clear()} calls and {blobs.clear()} crops and plans from {settings.cache_dir}")
    else:
        result = memo.prune()
        removed = blobs.prune(args.days)
        print(f"pruned {settings.cache_dir}: {result['damaged']} damaged entries dropped, {result['evicted']} evicted "
              f"to stay under {settings.cache_size_mb} MiB, {removed} crops and plans unused for {args.days:g} days "
              "removed")
    return 0


if __name__ == "__main__":
    entry()
