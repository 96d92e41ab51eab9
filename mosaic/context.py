"""What every step of a run needs besides its own inputs: where calls go and where the memo lives."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, PrivateAttr

from .memo import BlobStore, Memo, RunMemo
from .schema import Backend


class RunContext(BaseModel):
    backend: Backend
    cache_dir: str
    use_memo: bool = True
    memo_size_mb: int = 2048
    concurrency: int = 2  # calls in flight at the backend; the task pool is larger, so orchestration overlaps them
    _run_memo: RunMemo = PrivateAttr(default_factory=RunMemo)

    @property
    def in_flight(self) -> threading.BoundedSemaphore:
        return in_flight_limit(self.backend.model, self.backend.api_base, self.concurrency)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(Path(self.cache_dir) / "blobs")

    @property
    def memo(self) -> Memo | RunMemo:
        """The shared memo, or with use_memo off only this run's own answers."""
        return open_memo(self.cache_dir, self.memo_size_mb) if self.use_memo else self._run_memo


@lru_cache(maxsize=8)
def open_memo(cache_dir: str, size_mb: int) -> Memo:
    return Memo(Path(cache_dir), size_mb)


@lru_cache(maxsize=32)
def in_flight_limit(model: str, api_base: str | None, calls: int) -> threading.BoundedSemaphore:
    """One per backend and limit in a process: runs of the same process share it."""
    return threading.BoundedSemaphore(calls)
