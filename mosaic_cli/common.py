"""What the `mosaic` commands share: settings with one-line errors, Prefect kept quiet, option checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mosaic.checks import checked_out_dir
from mosaic.errors import BadOption
from mosaic.settings import Settings

_IMPORTED = time.monotonic()

# Prefect's temporary server takes 6-17 s to start on a loaded 2-core machine, and Prefect gives up after 20 s.
TEMPORARY_SERVER_WAIT_S = "120"


def load(**overrides) -> Settings:
    """Settings from the environment and the options given, or exit 2 with one line naming the bad one."""
    from pydantic import ValidationError

    from mosaic.settings import load_settings

    try:
        return load_settings(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        name = ".".join(map(str, first["loc"]))
        raise BadOption(f"invalid setting {name} (MOSAIC_{name.upper()}): {first['msg']}") from None


def checked_image(path: str, settings: Settings, say) -> tuple[int, int]:
    """The image's size once it is known to load (its notes said), and the report folder known to be usable."""
    from mosaic.images import load_image, set_pixel_limit

    checked_out_dir(settings.out_dir)
    set_pixel_limit(settings.max_image_mp)
    loaded = load_image(path)
    for note in loaded.notes:
        say(f"mosaic: note: {note}")
    return loaded.size


def quiet_prefect(verbose: bool) -> None:
    """Prefect logs each failed try with a traceback; the user gets one line from us instead."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no internet: its telemetry only logs errors
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", TEMPORARY_SERVER_WAIT_S)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(Path(__file__).with_name("quiet-logging.yml")))


def connect_prefect(settings: Settings, say) -> str:
    """Point this process at a Prefect server before Prefect is imported: the configured one (PREFECT_API_URL, in
    the environment or the Prefect profile), else Mosaic's local server (started when it is not up), else - when
    MOSAIC_PREFECT_SERVER=temporary or the local one cannot start here - Prefect's temporary server.
    Returns which: "configured", "local" or "temporary"."""
    from .local_server import LocalServer, NotStarted, configured_api_url

    local = LocalServer(settings.server_port)
    if configured_api_url() and configured_api_url() != local.api_url:  # Mosaic's own is started when it is down
        return "configured"
    if settings.prefect_server == "local":
        try:
            os.environ["PREFECT_API_URL"] = local.ensure(settings.server_wait_s, say)
            return "local"
        except NotStarted as e:
            say(f"mosaic: note: Mosaic's local Prefect server did not start ({e}); this command uses a temporary one")
    if os.environ.get("PREFECT_API_URL") == local.api_url:  # the temporary server stands in for Mosaic's own
        del os.environ["PREFECT_API_URL"]
    if configured_api_url() == local.api_url:  # from the profile `mosaic`
        os.environ["PREFECT_PROFILE"] = "ephemeral"
    from mosaic_flows.temporary_server import start_temporary_server

    start_temporary_server(say)
    return "temporary"


def command_seconds() -> float:
    """Seconds since this process started (interpreter start-up and imports included), as the user waited."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def one_line(error: object) -> str:
    return next((s for s in str(error).splitlines() if s.strip()), "")


def text_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max([_width(c)] + [_width(str(r.get(c, ""))) for r in rows]) for c in columns}

    def pad(text: str, width: int) -> str:
        return text + " " * (width - _width(text))

    lines = ["  ".join(pad(c, widths[c]) for c in columns)]
    lines += ["  ".join(pad(str(r.get(c, "")), widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _width(text: str) -> int:
    """Columns a text takes in a terminal: wide (CJK) characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
