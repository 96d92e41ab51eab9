"""`mosaic server`, `serve`, `history`, `show`, `rerun`: Mosaic as Prefect operations. Prefect is imported only when run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from mosaic.errors import BackendError, BadOption
from mosaic.schema import DEFAULT_PHASES
from mosaic.checks import checked_phases

from .common import connect_prefect, load, quiet_prefect, text_table
from .local_server import LocalServer, NotStarted, configured_api_url

OPS_EXAMPLES = """examples:
  mosaic server status                                   # Mosaic's local Prefect server (the first run starts it)
  eval "$(mosaic server env)"; prefect flow-run ls        # Prefect's CLI on it (the profile 'mosaic' does it too)
  mosaic serve --inbox ~/inbox --outbox ~/outbox --cron '*/10 * * * *' --model openai/qwen2.5-vl --api-base http://127.0.0.1:8080/v1
  prefect deployment run review-inbox/inbox              # a run now, besides the schedule
  mosaic history
  mosaic show RUN
  mosaic rerun RUN                                       # only the calls that had not completed are made
"""


def register(commands) -> None:
    fmt = dict(epilog=OPS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    server = commands.add_parser("server", help="Mosaic's local Prefect server: start, stop or status", **fmt)
    server.add_argument("action", choices=["start", "stop", "status", "env"],
                        help="start: start it (a run starts it too, when no PREFECT_API_URL is set); stop; status; "
                             "env: the export line that points Prefect's CLI at it")
    server.set_defaults(func=cmd_server)
    serve = commands.add_parser("serve", help="serve the recurring review-inbox deployment on a Prefect server", **fmt)
    serve.add_argument("--name", default="inbox", help="deployment name: review-inbox/NAME (default: inbox)")
    serve.add_argument("--inbox", required=True, help="folder watched for new images")
    serve.add_argument("--outbox", required=True, help="folder the reports go to")
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron schedule, e.g. '*/10 * * * *' (default: every --every minutes)")
    when.add_argument("--every", type=float, help="interval in minutes (default: 10 when no --cron)")
    serve.add_argument("--no-schedule", action="store_true", help="register without a schedule (runs only when triggered)")
    serve.add_argument("--paused", action="store_true", help="register the schedule paused")
    serve.add_argument("--model", help="default model of the deployment (default: $MOSAIC_MODEL or offline)")
    serve.add_argument("--api-base", help="default backend address, several servers of one model comma-separated "
                                           "(default: $MOSAIC_API_BASE)")
    serve.add_argument("--density", default="light", help="default density (default: light)")
    serve.add_argument("--grid", help="default COLSxROWS grid (overrides density)")
    serve.add_argument("--phases", default=",".join(DEFAULT_PHASES), help="default phases")
    serve.add_argument("--runner", choices=["images", "threads", "dask"], default="images",
                       help="images: one review-image run per image (default); threads or dask: the new images in one "
                            "mosaic-batch run, on the worker's threads or a Dask cluster")
    serve.add_argument("--dask-address", help="with --runner dask: the scheduler (tcp://HOST:8786); default: a local "
                                              "cluster per run")
    serve.set_defaults(func=cmd_serve)

    hist = commands.add_parser("history", help="recent review runs on the Prefect server")
    hist.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    hist.add_argument("--inbox", action="store_true", help="list review-inbox and mosaic-batch runs too")
    hist.add_argument("--json", action="store_true", help="one JSON list on stdout")
    hist.set_defaults(func=cmd_history)

    show = commands.add_parser("show", help="a run's state, review and report folder")
    show.add_argument("run", help="flow run id or name")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.set_defaults(func=cmd_show)

    rerun = commands.add_parser("rerun", help="run a failed run again; completed calls come from the memo")
    rerun.add_argument("run", help="flow run id or name")
    rerun.add_argument("--wait", type=float, default=600, help="for a deployment's run: seconds to wait for it (0: don't)")
    rerun.set_defaults(func=cmd_rerun)


def _need_server(quiet: bool = True, lasting: bool = False) -> None:
    """The configured Prefect server, else Mosaic's local one (started when not up), else a temporary one - unless
    the command needs a server that outlives it (lasting: `serve`).
    quiet: Prefect's console logging off (one-line errors from Mosaic); `serve` keeps it, as a worker does."""
    if quiet:
        quiet_prefect(False)
    else:
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = load()
    if lasting and settings.prefect_server == "temporary" and not configured_api_url():
        raise BadOption("a deployment needs a Prefect server that stays up: set PREFECT_API_URL, or unset "
                        "MOSAIC_PREFECT_SERVER=temporary to use Mosaic's local server")
    how = connect_prefect(settings, lambda line: print(line, file=sys.stderr))
    if lasting and how == "temporary":
        raise BadOption("Mosaic's local Prefect server did not start, and a deployment needs one that stays up: "
                        "start one (prefect server start) and set PREFECT_API_URL")


def cmd_server(args: argparse.Namespace) -> int:
    settings = load()
    server = LocalServer(settings.server_port)
    configured = configured_api_url() if configured_api_url() != server.api_url else None
    if args.action == "env":
        print(server.env_line())
        return 0
    if args.action == "stop":
        stopped = server.stop()
        print(f"mosaic: stopped the local Prefect server at {server.url}" if stopped
              else "mosaic: the local Prefect server was not running", file=sys.stderr)
        return 0
    if args.action == "start":
        try:
            server.ensure(settings.server_wait_s, lambda line: print(line, file=sys.stderr))
        except NotStarted as e:
            raise BackendError(f"Mosaic's local Prefect server did not start: {e}", retryable=False) from None
    state = server.state() if server.running() else None
    if state:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state["started"]))
        print(f"running: {server.url} (UI; API {server.api_url}), pid {state['pid']}, since {since}, "
              f"database in {server.home}, log {server.log_path}")
    else:
        print(f"not running (port {server.port}); the next `mosaic run` starts it")
    if configured:
        print(f"note: PREFECT_API_URL is set ({configured}): Mosaic's commands use that server, not this one")
    return 0 if state else 1


def cmd_serve(args: argparse.Namespace) -> int:
    _need_server(quiet=False, lasting=True)
    settings = load(model=args.model, api_base=args.api_base)
    phases = checked_phases(args.phases)
    if args.every is not None and args.every <= 0:
        raise BadOption("--every must be a positive number of minutes")
    if args.dask_address and args.runner != "dask":
        raise BadOption("--dask-address needs --runner dask")
    from mosaic.inbox import inbox_images

    inbox_images(args.inbox)  # exists?
    parameters = {"inbox": os.path.abspath(args.inbox), "outbox": os.path.abspath(args.outbox), "model": settings.model,
                  "api_base": settings.api_base, "density": args.density, "grid": args.grid, "phases": phases,
                  "runner": args.runner, "dask_address": args.dask_address}
    cron, every = (None, None) if args.no_schedule else (args.cron, None if args.cron else (args.every or 10))
    from mosaic_flows.server import serve_inbox

    serve_inbox(args.name, parameters, cron, every, paused=args.paused, say=lambda line: print(line, file=sys.stderr))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    _need_server()
    from mosaic_flows.server import BATCH_FLOW, INBOX_FLOW, REVIEW_FLOW, history

    rows = history(args.limit, (REVIEW_FLOW, INBOX_FLOW, BATCH_FLOW) if args.inbox else (REVIEW_FLOW,))
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no review runs yet", file=sys.stderr)
    else:
        print(text_table(rows, ["started", "run", "image", "model", "backend", "density", "state", "calls", "cached",
                                "duration", "failed tiles", "id"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _need_server()
    from mosaic_flows.server import show

    info = show(args.run)
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    print(f"{info['run']} ({info['id']}): {info['state']}" + (f" - {info['message']}" if info["message"] else ""))
    _print_review(info)
    for child in info["children"]:
        print(f"\n{'batch' if child.get('images') else 'image'} run {child['run']} ({child['id']}): {child['state']}")
        _print_review(child)
    return 0


def _print_review(info: dict) -> None:
    if info["review"]:
        print("\n" + info["review"].strip())
    if info["summary"].get("report_dir"):
        print(f"\nreport: {info['summary']['report_dir']}")
    for image in info.get("images", []):
        print(f"{image['image']}: {image['state']}, {image['made']} calls made, {image['cached']} from the memo"
              + (f"; report: {image['report_dir']}" if image["report_dir"] else "")
              + (f" ({image['error']})" if image.get("error") else ""))


def cmd_rerun(args: argparse.Namespace) -> int:
    _need_server()
    from mosaic_flows.server import rerun

    out = rerun(args.run, args.wait)
    if out["how"] == "scheduled":
        print(f"mosaic: run {out['run']} ({out['id']}) scheduled for retry on its deployment"
              + (f"; it ended {out['state']}" + (f": {out['message']}" if out.get("message") else "") if out.get("state") else ""),
              file=sys.stderr)
        return 0 if out.get("state", "Completed") == "Completed" else 1
    calls = out.get("calls") or {}
    print(f"mosaic: reran {out['run']}: {out['state']}"
          + (f"; {calls['made']} calls made, {calls['cached']} from the memo; report: {out['report_dir']}" if calls else ""),
          file=sys.stderr)
    return 0
