"""`mosaic compare`: several models on one image, who read what and where they disagree. Thin: checks, the flow, the
table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mosaic.errors import BackendError, BadOption
from mosaic.schema import DEFAULT_PHASES, PHASES, Comparison, count_calls
from mosaic.checks import checked_backend, checked_phases

from .common import checked_image, command_seconds, connect_prefect, load, quiet_prefect, text_table

EXAMPLES = """examples:
  mosaic compare photo.jpg --model ollama_chat/qwen2.5vl:7b --model ollama_chat/gemma3:4b
  mosaic compare photo.jpg --model openai/qwen2.5-vl --api-base http://127.0.0.1:8080/v1 \\
                           --model ollama_chat/minicpm-v --api-base http://127.0.0.1:11434 --json
Each --api-base belongs to the --model before it; one given before any --model is the default of the models without
their own (else $MOSAIC_API_BASE). Every call is memoized: adding a model later asks nothing again of the others.
"""


class _ModelOption(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        namespace.models = [*(namespace.models or []), {"model": value, "api_base": None}]


class _ApiBaseOption(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        if namespace.models:
            if namespace.models[-1]["api_base"] is not None:
                parser.error(f"--api-base {value}: the model {namespace.models[-1]['model']} has one already")
            namespace.models[-1]["api_base"] = value
        else:
            namespace.default_api_base = value


def register(commands) -> None:
    cmd = commands.add_parser("compare", help="review an image with several models and compare what they read",
                              epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("image", help="the image to review")
    cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show Prefect's logs")
    cmd.add_argument("--model", action=_ModelOption, dest="models", metavar="MODEL",
                     help="a LiteLLM model string (or 'offline'); give two or more")
    cmd.add_argument("--api-base", action=_ApiBaseOption, dest="default_api_base", metavar="URL",
                     help="the address of the --model before it, e.g. http://127.0.0.1:8080/v1")
    cmd.add_argument("--density", default="light", help="quick, light, dense, max, or auto: picked once, for the model "
                     "with the smallest encoder, so every model sees the same tiles (default: light)")
    cmd.add_argument("--grid", help="COLSxROWS for every model, overrides --density")
    cmd.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                     help=f"comma-separated, from {', '.join(PHASES)} (default: {','.join(DEFAULT_PHASES)})")
    cmd.add_argument("--concurrency", type=int, help="calls in flight at once per model (default: $MOSAIC_CONCURRENCY or 2)")
    cmd.add_argument("--input-px", type=int, help="encoder size for --density auto when Mosaic cannot size a model")
    cmd.add_argument("--out", help="folder for report folders (default: ./mosaic-reports)")
    cmd.add_argument("--json", action="store_true", help="print only the comparison as JSON on stdout")
    cmd.add_argument("--no-cache", action="store_true", help="skip the call memo (neither read nor write it)")
    cmd.add_argument("--no-second-look", action="store_true", help="no closer crops: only the models' agreement "
                     "confirms readings")
    cmd.add_argument("--yes", action="store_true", help="make more calls than $MOSAIC_MAX_CALLS in all")
    cmd.set_defaults(func=cmd_compare, models=None, default_api_base=None)


def cmd_compare(args: argparse.Namespace) -> int:
    from mosaic.compare import check_models, reachability, shared_grid, shared_input_px

    settings = load(concurrency=args.concurrency, out_dir=args.out, input_px=args.input_px)
    default_base = args.default_api_base or settings.api_base
    models = [{"model": m["model"], "api_base": m["api_base"] or (default_base if m["model"] != "offline" else None)}
              for m in args.models or []]
    pairs = [(m["model"], m["api_base"]) for m in models]
    phases = checked_phases(args.phases)
    backends = [checked_backend(settings, model, base) for model, base in pairs]
    check_models(backends)
    width, height = checked_image(args.image, settings, lambda line: print(line, file=sys.stderr))
    unreachable = [reachability(b) for b in backends]
    if all(unreachable):
        raise BackendError("no model to compare: " + "; ".join(f"{m}: {u}" for (m, _), u in zip(pairs, unreachable)))
    px = shared_input_px([b for b, u in zip(backends, unreachable) if not u], args.density, settings.input_px)
    try:
        cols, rows, density, px = shared_grid((width, height), backends, args.density, args.grid, px)
    except ValueError as e:
        raise BadOption(str(e)) from None
    planned = count_calls(cols, rows, phases) * len(models)
    if planned > settings.max_calls and not args.yes:
        raise BadOption(f"{len(models)} models on the {cols}×{rows} grid plan {planned:,} calls, more than "
                        f"{settings.max_calls:,}: pass --yes to make them, or choose a coarser --grid or --density")
    print(f"mosaic: {Path(args.image).name} {width}×{height}, {cols}×{rows} grid ({density}) for {len(models)} models, "
          f"phases {','.join(phases)}: at most {count_calls(cols, rows, phases)} calls each", file=sys.stderr)

    quiet_prefect(args.verbose)
    connect_prefect(settings, lambda line: print(line, file=sys.stderr))
    from mosaic_flows.compare import run_compare

    state = run_compare(
        image_path=str(Path(args.image).resolve()), models=models, density=args.density,
        grid=args.grid, phases=phases, out_dir=str(settings.out_dir), use_memo=not args.no_cache,
        concurrency=settings.concurrency, input_px=px, second_look=False if args.no_second_look else None,
        show_progress=True,
    )
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        raise BackendError(f"the comparison failed: {error}")
    result = Comparison.model_validate(state.result())
    if not result.comparison_dir:
        raise BackendError("no model finished: " + "; ".join(f"{m.label}: {m.state}: {m.error}" for m in result.models))
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
    else:
        print(comparison_table(result))
    counts = result.counts
    made = "; ".join(f"{m.label} {m.calls.total} calls ({m.calls.cached} from the memo) in {m.elapsed_s:.1f} s"
                     for m in result.models if m.calls)
    print(f"\n{counts.get('readings', 0)} signs: {counts.get('hard_spots', 0)} read differently, {counts.get('single', 0)} "
          f"by one model only, {counts.get('exact', 0)} alike; {counts.get('confirmed', 0)} confirmed. {made}; whole "
          f"command {command_seconds():.1f} s; comparison: {result.comparison_dir}", file=sys.stderr)
    for m in result.missing:
        print(f"mosaic: {m.label} is missing from the comparison ({m.state}: {m.error})", file=sys.stderr)
    return 3 if result.missing else 0


ABSENT = "probably not there"


def comparison_table(result: Comparison) -> str:
    """Per sign: what each model read, how far they agree, whether it is confirmed; hard spots first."""
    present = [m.label for m in result.models if m.state == "completed"]
    rows = [{"#": n, "agreement": r.agreement, "confirmed": "yes" + (" (one family)" if r.same_family else "")
             if r.confirmed else ABSENT if r.probably_absent else "", "tiles": ",".join(r.tiles),
             **{label: r.by_model.get(label) or "-" for label in present}}
            for n, r in enumerate(result.readings, 1)]
    return text_table(rows, ["#", "agreement", "confirmed", "tiles", *present]) if rows else "no text read by any model"
