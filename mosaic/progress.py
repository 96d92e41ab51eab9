"""A one-line progress bar on stderr: tiles and calls done."""

from __future__ import annotations

import sys
import threading


class Progress:
    def __init__(self, total_calls: int, total_tiles: int, enabled: bool = True, stream=None):
        self.total_calls, self.total_tiles = total_calls, total_tiles
        self.calls = self.cached = self.tiles = self.failed = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = False  # calls the memo answers while the review is set up are counted, drawn after the plan

    @property
    def total_calls(self) -> int:
        return self._total_calls

    @total_calls.setter
    def total_calls(self, value: int) -> None:
        """Never lowered: a bar whose total shrinks (or jumps back) says less than it knows."""
        self._total_calls = max(value, getattr(self, "_total_calls", 0))

    def announce(self, text: str) -> None:
        """The plan's line; the bar is drawn from here on."""
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._started = True

    def call_done(self, cached: bool = False, failed: bool = False) -> None:
        with self._lock:
            self.calls += 1
            self.cached += int(cached)
            self.failed += int(failed)
        # a log file gets a line per finished tile and per tenth of the calls, not one per call: with the second
        # look no tile is finished before the whole first wave is in
        if self._tty or self.calls % max(1, self.total_calls // 10) == 0:
            self._draw()

    def show(self, review) -> None:
        """Where a review stands (mosaic.engine.Review): its calls answered and failed, its tiles reported."""
        stats = review.stats
        with self._lock:
            tenth = max(1, self.total_calls // 10)
            crossed = (stats.total + stats.failed) // tenth != self.calls // tenth or len(review.reports) != self.tiles
            self.calls, self.cached, self.failed = stats.total + stats.failed, stats.cached, stats.failed
            self.tiles = len(review.reports)
            self.total_calls = max(self.total_calls, stats.planned)
        if self._tty or crossed:
            self._draw()

    def _draw(self) -> None:
        if not self.enabled or not self._started:
            return
        width = 24
        filled = width * self.calls // max(1, self.total_calls)
        bar = "#" * filled + "." * (width - filled)
        extra = f", {self.cached} from memo" if self.cached else ""
        extra += f", {self.failed} failed" if self.failed else ""
        self.stream.write(("\r" if self._tty else "") + f"[{bar}] tiles {self.tiles}/{self.total_tiles}  calls {self.calls}/{self.total_calls}{extra} " + ("" if self._tty else "\n"))
        self.stream.flush()

    def close(self) -> None:
        """The last line: the calls made, of the calls planned (the second look's cap is an upper bound, not a
        promise: fewer may have been needed)."""
        self._started = True
        self._draw()
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()
