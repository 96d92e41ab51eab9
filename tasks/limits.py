"""One concurrency limit per model server, over every run that shares a Prefect server.

Best effort: a server without global concurrency limits (or a hiccup reaching it) logs a warning and calls go on
unlimited across runs; it never fails a run."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

from mosaic.backend import Backend
from mosaic.settings import load_settings

logger = logging.getLogger("mosaic.limits")


@contextmanager
def backend_slot(backend: Backend, address: str | None = None) -> Iterator[None]:
    """Hold one slot of the backend's global concurrency limit (created when missing) around a model call; of the
    server at `address` when the backend has several.

    Only against a shared server (PREFECT_API_URL): each process gets its own temporary server otherwise, where a
    limit would coordinate nothing and still cost a round trip per call. A wait for a slot that other runs hold is
    logged, so a task run's duration can be read."""
    name = backend.limit_name_of(address)
    if name is None or _api_url() == "ephemeral" or not _ensure_limit(name, load_settings().backend_slots, _api_url()):
        yield
        return
    from prefect.concurrency.sync import concurrency

    asked = time.monotonic()
    with concurrency(name, occupy=1, strict=False):
        waited = time.monotonic() - asked
        if waited > SLOW_SLOT_S:
            _run_logger().info("waited %.1f s for a slot of %s (other runs are calling the same backend)", waited, name)
        yield


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


@lru_cache(maxsize=32)
def _ensure_limit(name: str, slots: int, api_url: str) -> bool:
    """Create the limit once per process and server; False (no limiting) if the server cannot."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                    logger.info("created concurrency limit %s with %d slots", name, slots)
                except ObjectAlreadyExists:  # another run created it first
                    pass
        return True
    except Exception as e:  # an old server, a server without the API, a network blip: run unlimited
        logger.warning("no concurrency limit for %s (%s: %s); calls are not limited across runs", name, type(e).__name__, e)
        return False


@contextmanager
def leased_servers(backend: Backend, slots: int, occupy: int | None = None) -> Iterator[None]:
    """`occupy` slots (default: all `slots`) of each of the backend's servers' limits, held for a whole run: the
    run's flow then gives them to its calls itself (a ServerPool of that many slots per server), exactly, wherever
    they run. A slot taken per call costs ~190 ms of round trips to the Prefect server and, with the limit full,
    waits of seconds for slots just released (docs/bench/scale.md, docs/bench/throughput.md). A run that finds the
    slots held by others says so once and waits for them."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        if _api_url() != "ephemeral":
            from prefect.concurrency.sync import concurrency

            for address in backend.addresses or [None]:
                name = backend.limit_name_of(address)
                if name and _ensure_limit(name, slots, _api_url()):
                    take = min(occupy or slots, slots)
                    try:
                        stack.enter_context(concurrency(name, occupy=take, timeout_seconds=SLOW_SLOT_S, strict=False))
                    except TimeoutError:
                        _run_logger().info("waiting for %d slot(s) of %s: other runs are calling the same backend",
                                           take, name)
                        stack.enter_context(concurrency(name, occupy=take, strict=False))
        yield
