"""`mosaic open RUN|FOLDER`: a report's page (report.html, or comparison.html) in the user's browser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mosaic.errors import BadOption

PAGES = ("report.html", "comparison.html")


def register(commands) -> None:
    cmd = commands.add_parser("open", help="open a report's page (report.html) in the browser")
    cmd.add_argument("target", help="a report folder, its report.html, or a run's id or name on the Prefect server")
    cmd.add_argument("--print", action="store_true", dest="print_only", help="only print the page's path")
    cmd.set_defaults(func=cmd_open)


def page_in(folder: Path) -> Path | None:
    return next((folder / name for name in PAGES if (folder / name).is_file()), None)


def cmd_open(args: argparse.Namespace) -> int:
    target = Path(args.target).expanduser()
    if target.is_file() and target.suffix == ".html":
        page = target
    elif target.is_dir():
        page = page_in(target)
        if page is None:
            raise BadOption(f"{target} holds no report.html or comparison.html: is it a report folder? (an older "
                            "report has none: the same command again writes it, from the memo)")
    else:
        page = _page_of_run(args.target)
    print(page.resolve())
    if not args.print_only:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            print("mosaic: no browser found here; open the page above in one", file=sys.stderr)
    return 0


def _page_of_run(run: str) -> Path:
    """The page of a run on the Prefect server (the one Mosaic's commands use), from its summary's report folder."""
    from .common import connect_prefect, load, quiet_prefect

    quiet_prefect(False)
    connect_prefect(load(), lambda line: print(line, file=sys.stderr))
    from mosaic_flows.server import show

    facts = show(run)
    folder = (facts.get("summary") or {}).get("report_dir")
    if not folder:
        raise BadOption(f"run {run} has no report folder recorded (it did not get as far as writing its report)")
    page = page_in(Path(folder))
    if page is None:
        raise BadOption(f"the report folder of run {run}, {folder}, holds no report.html (moved or removed?)")
    return page
