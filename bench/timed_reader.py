"""The offline reader as the benchmark calls it: through Mosaic's call seam (MOSAIC_COMPLETION=bench.timed_reader:
timed_reader), each answer timed, a new reader (an empty OCR cache) per method. A module of its own, so `python -m
bench.run` and the flow it runs share one TIMINGS list (bench.run runs as __main__, a second copy of itself)."""

from __future__ import annotations

import time

TIMINGS: list[tuple[float, float]] = []  # (start, end) of every answer the reader computed
READERS: dict[int, object] = {}  # the current method's reader, by budget


def timed_reader(backend):
    """For the offline backend; any other (the scheduling part's HTTP stand-in) goes through LiteLLM as usual."""
    from mosaic.llm import litellm_completion
    from mosaic.offline.reader import OfflineReader

    if not backend.is_offline:
        return litellm_completion

    def complete(call, messages, api_key=None, timeout_s=0.0):
        reader = READERS.setdefault(backend.offline_budget, OfflineReader(backend.offline_budget))
        started = time.monotonic()
        try:
            return reader(call, messages, api_key, timeout_s)
        finally:
            TIMINGS.append((started, time.monotonic()))

    return complete


def new_readers() -> None:
    """The next method reads everything afresh."""
    READERS.clear()
