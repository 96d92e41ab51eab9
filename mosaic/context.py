"""What every step of a run needs besides its own inputs: where calls go and where the memo lives.

Plain data: it pickles and works in another process. What is local to a process (the memo's database
connection, the semaphore of calls in flight, the completion function) is opened where it is used."""

from __future__ import annotations

import importlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

from .backend import Backend
from .errors import BadOption
from .memo import BlobStore, Memo
from .profiles import Profile, profile_for
from .schema import Plan
from .settings import Settings
from .shaping import plan_options


def model_profile(settings: Settings, model: str) -> Profile:
    """The profile a run of this model uses (settings, else a saved probe, else the table). Raises BadOption for
    an unknown family or convention."""
    try:
        return profile_for(model, settings.profile, settings.box_convention, settings.cache_dir)
    except ValueError as e:
        raise BadOption(str(e)) from None


class RunContext(BaseModel):
    backend: Backend
    cache_dir: str
    use_memo: bool = True  # off: the run keeps its answers and crops in its own scratch folder, removed at the end
    memo_size_mb: int = 2048
    concurrency: int = 2  # calls in flight at the backend
    server_slots: int = 2  # calls in flight at each of several servers
    retries: int = 3  # a step's tries after the first (mosaic.steps.ask)
    retry_delay_s: float = 1.0
    retry_limit_s: float = 600.0
    completion: str | None = None  # "module:factory", see complete
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    def from_settings(cls, settings: Settings, model: str, api_base: str | None, use_memo: bool = True) -> RunContext:
        from .checks import checked_backend

        checked_backend(settings, model, api_base)
        backend = Backend.create(model, api_base, settings.offline_budget, temperature=settings.temperature,
                                 max_tokens=settings.max_tokens, num_ctx=settings.num_ctx, timeout_s=settings.timeout_s,
                                 structured_output=settings.structured_output, same_weights=settings.same_weights)
        backend.profile = model_profile(settings, backend.model)
        concurrency = settings.concurrency
        if backend.servers:  # every server kept busy: at least its slots each
            concurrency = max(concurrency, settings.backend_slots * len(backend.servers))
        return cls(backend=backend, cache_dir=str(settings.cache_dir), use_memo=use_memo,
                   memo_size_mb=settings.cache_size_mb, concurrency=concurrency, server_slots=settings.backend_slots,
                   retries=settings.retries, retry_delay_s=settings.retry_delay_s, retry_limit_s=settings.retry_limit_s,
                   completion=settings.completion)

    @property
    def store_dir(self) -> Path:
        """The memo's folder, or with use_memo off this run's scratch folder."""
        if self.use_memo:
            return Path(self.cache_dir)
        return Path(tempfile.gettempdir()) / f"mosaic-run-{self.run_id}"

    @property
    def memo(self) -> Memo:
        if not self.use_memo:
            return scratch_memo(str(self.store_dir))
        return open_memo(str(self.store_dir), self.memo_size_mb)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.store_dir / "blobs")

    @property
    def complete(self) -> Callable:
        """The completion function (the call seam): `completion` names a factory that, given the Backend, returns
        it (tests and benchmarks); by default the built-in reader for the offline backend, else LiteLLM."""
        return completion_for(self.completion or "", self.backend.model_dump_json())

    def prepare(self, image_path: str, density: str, grid: str | None, phases: list[str], settings: Settings) -> Plan:
        """The one door into a review: the request checked (mosaic.checks), the image cut into its plan, the plan's
        size checked against MOSAIC_MAX_CALLS, before any call."""
        from .checks import checked_call_count, checked_out_dir, checked_phases
        from .images import set_pixel_limit
        from .pipeline import prepare

        phases = checked_phases(phases)
        checked_out_dir(settings.out_dir)
        set_pixel_limit(settings.max_image_mp)
        plan = prepare(image_path, density, grid, phases, self.backend, self.blobs, settings.orientation_px,
                       settings.view_px, settings.skip_blank, settings.input_px, **plan_options(settings, self.backend))
        if not settings.call_budget:  # a budget is planned within, not refused
            checked_call_count(plan.total_calls, plan.cols, plan.rows, settings)
        return plan

    def discard_scratch(self) -> None:
        """Remove a use_memo-off run's scratch folder (a no-op otherwise)."""
        if not self.use_memo:
            with _scratch_lock:
                memo = _scratch_memos.pop(str(self.store_dir), None)
            if memo is not None:
                memo.close()
            shutil.rmtree(self.store_dir, ignore_errors=True)


@lru_cache(maxsize=8)
def open_memo(directory: str, size_mb: int) -> Memo:
    return Memo(Path(directory), size_mb)


_scratch_memos: dict[str, Memo] = {}
_scratch_lock = threading.Lock()


def scratch_memo(directory: str) -> Memo:
    """A use_memo-off run's own memo, open until discard_scratch (one per run: not in open_memo's cache)."""
    with _scratch_lock:
        if directory not in _scratch_memos:
            _scratch_memos[directory] = Memo(Path(directory))
        return _scratch_memos[directory]


@lru_cache(maxsize=16)
def completion_for(factory: str, backend_json: str) -> Callable:
    backend = Backend.model_validate_json(backend_json)
    if factory:
        module, _, name = factory.partition(":")
        return getattr(importlib.import_module(module), name)(backend)
    if backend.is_offline:
        from .offline.reader import OfflineReader

        return OfflineReader(backend.offline_budget)
    from .llm import litellm_completion

    return litellm_completion
