"""One concurrency limit per model server, over every run that shares a Prefect server.

Best effort: a server without global concurrency limits (or a hiccup reaching it) logs a warning and calls go on
unlimited across runs; it never fails a run."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from mosaic.backend import Backend

logger = logging.getLogger("mosaic.limits")


SLOW_SLOT_S = 1.0


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except Exception:  # outside a run
        return logger


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "ephemeral"


def _ensure_limit(name: str, slots: int, api_url: str) -> int:
    """The limit's slots, created with `slots` when missing; 0 (no limiting) if the server cannot."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                return client.read_global_concurrency_limit_by_name(name).limit
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                    logger.info("created concurrency limit %s with %d slots", name, slots)
                except ObjectAlreadyExists:  # another run created it first
                    pass
                return client.read_global_concurrency_limit_by_name(name).limit
    except Exception as e:  # an old server, a server without the API, a network blip: run unlimited
        logger.warning("no concurrency limit for %s (%s: %s); calls are not limited across runs", name, type(e).__name__, e)
        return 0


@contextmanager
def leased_servers(backend: Backend, slots: int, say=None) -> Iterator[int]:
    """`slots` of each of the backend's servers' limits (created with that many when missing), held for a whole
    run: the run's driver then gives them to its calls itself, exactly, wherever they run. Yields the slots held
    per server: fewer than asked when the shared limit is lower, which is said (say) once. A slot taken per call
    costs ~190 ms of round trips to the Prefect server (docs/bench/scale.md). A run that finds the slots held by
    others says so once and waits for them. On a temporary server (nothing shared) nothing is leased."""
    from contextlib import ExitStack

    say = say or _run_logger().info
    held = slots
    with ExitStack() as stack:
        if _api_url() != "ephemeral":
            from prefect.concurrency.sync import concurrency

            for address in backend.addresses or [None]:
                name = backend.limit_name_of(address)
                limit = _ensure_limit(name, slots, _api_url()) if name else 0
                if not limit:
                    continue
                take = min(slots, limit)
                if take < held:
                    held = take
                    say(f"{slots} calls in flight asked, {take} allowed by the shared limit {name} of every run on "
                        f"this Prefect server (raise it: prefect gcl update {name} --limit {slots})")
                try:
                    stack.enter_context(concurrency(name, occupy=take, timeout_seconds=SLOW_SLOT_S, strict=False))
                except TimeoutError:
                    _run_logger().info("waiting for %d slot(s) of %s: other runs are calling the same backend",
                                       take, name)
                    stack.enter_context(concurrency(name, occupy=take, strict=False))
        yield held
