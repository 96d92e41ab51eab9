"""Prefect's temporary server (SubprocessASGIServer), for a process with no PREFECT_API_URL: started at once with a
clear message, its address handed to a local Dask cluster's workers, stopped before a process leaves at once."""

from __future__ import annotations

from mosaic.errors import BackendError


def start_temporary_server(say=print) -> None:
    """With no PREFECT_API_URL: start Prefect's temporary server now, saying so and for how long it is waited for
    (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS), so a slow start is not a traceback in the middle of a run."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if PREFECT_API_URL.value() or SubprocessASGIServer().running:
        return
    limit = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    say(f"mosaic: starting Prefect's temporary server (waiting up to {limit} s; set PREFECT_API_URL to use a running one)")
    try:
        SubprocessASGIServer().start(timeout=limit)
    except RuntimeError as e:
        SubprocessASGIServer().stop()
        reason = str(e).split(". ")[0].split(" stdout:")[0]
        raise BackendError(f"Prefect's temporary server did not start within {limit} s ({reason}): raise "
                           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a server (prefect server start) "
                           "and set PREFECT_API_URL", retryable=False) from None


def stop_temporary_servers() -> None:
    """Stop the temporary servers this process started (Prefect does it at exit; a process leaving at once must)."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()  # one that never answered too: its process is still there


def temporary_server_env() -> dict[str, str]:
    """For a local cluster's worker processes: the address of this process's temporary Prefect server, which is not
    in PREFECT_API_URL (without it each worker would start a temporary server of its own)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return {}
    start_temporary_server(lambda line: None)
    return {"PREFECT_API_URL": SubprocessASGIServer().api_url}
