"""Several servers of one model: each call goes to the server with the fewest calls in flight that has a free slot
and is not cooling down after a failure.

Measured against LiteLLM's Router on two loopback servers of 2 slots each (docs/bench/scale.md): the Router's
least-busy and simple-shuffle choose without knowing the servers' slots, so a third call sometimes queues at a
busy server while the other is idle (1.32-1.35x the span's bound); choosing by free slot: 1.11x. The slots are per
process; across processes each server's limit in the Prefect server holds (tasks/limits.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache


class ServerPool:
    def __init__(self, addresses: list[str], slots: int, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if not addresses:
            raise ValueError("a server pool needs at least one address")
        self.addresses = list(dict.fromkeys(addresses))
        self.slots, self.cooldown_s, self.clock = slots, cooldown_s, clock
        self.in_flight = {a: 0 for a in self.addresses}
        self.calls = {a: 0 for a in self.addresses}
        self.failures = {a: 0 for a in self.addresses}
        self.cool_until = {a: 0.0 for a in self.addresses}
        self._changed = threading.Condition(threading.RLock())

    def choose(self) -> str | None:
        """The server the next call goes to, or None when every usable one is full. A server cooling down is used
        only when all are (the one whose cooldown ends first), so a run never waits on a cooldown alone."""
        now = self.clock()
        warm = [a for a in self.addresses if self.cool_until[a] <= now]
        usable = warm or [min(self.addresses, key=self.cool_until.get)]
        free = [a for a in usable if self.in_flight[a] < self.slots]
        return min(free, key=lambda a: (self.in_flight[a], self.calls[a])) if free else None

    def acquire(self) -> str:
        """A slot of one server (waits for one); give it back with release."""
        with self._changed:
            while (address := self.try_acquire()) is None:
                self._changed.wait(timeout=1.0)  # a cooldown may end without a release
            return address

    def try_acquire(self) -> str | None:
        """A slot of one server, or None at once when none is free."""
        with self._changed:
            address = self.choose()
            if address is not None:
                self.in_flight[address] += 1
                self.calls[address] += 1
            return address

    def failover_order(self, first: str) -> list[str]:
        """The chosen server, then the others (least recently failed first): where a call goes when one is down."""
        return [first] + sorted((a for a in self.addresses if a != first), key=self.cool_until.get)

    def release(self, address: str, error: BaseException | None = None) -> None:
        """A failure that says the server is down or overloaded (no answer, a timeout, 5xx, 429) cools it down, so
        the retry goes to another."""
        with self._changed:
            self.in_flight[address] -= 1
            if error is not None and server_trouble(error):
                self.failures[address] += 1
                self.cool_until[address] = self.clock() + self.cooldown_s
            elif error is None:
                self.failures[address] = 0
            self._changed.notify()

    @contextmanager
    def hold(self) -> Iterator[str]:
        """A slot of one server, around one call."""
        address = self.acquire()
        error = None
        try:
            yield address
        except Exception as e:
            error = e
            raise
        finally:
            self.release(address, error)


def server_trouble(error: Exception) -> bool:
    """The server, not the request: no HTTP status (refused, reset, timed out), 5xx or 429."""
    if hasattr(error, "retryable"):  # already classified (mosaic.llm.classify)
        return bool(error.retryable)
    status = getattr(error, "status_code", None)
    return not isinstance(status, int) or status >= 500 or status == 429


@lru_cache(maxsize=16)
def server_pool(addresses: tuple[str, ...], slots: int) -> ServerPool:
    """One per set of servers in a process: every run of the process shares its slots."""
    return ServerPool(list(addresses), slots)
