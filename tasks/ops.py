"""What a run shows on a Prefect server: artifacts, and one concurrency limit per model server over every run.

Both are best effort: a server without artifacts or global concurrency limits (or a hiccup reaching it) logs a
warning and the review goes on; neither ever fails a run.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from mosaic.ops import artifact_key, backend_limit_name
from mosaic.settings import load_settings
from mosaic.schema import Backend, FinalReport, Plan

logger = logging.getLogger("mosaic.ops")

SUMMARY_KEY = "mosaic-run-summary"
TILES_KEY = "mosaic-tiles"


# --- one model server, several runs ------------------------------------------------------------------------------

@contextmanager
def backend_slot(backend: Backend) -> Iterator[None]:
    """Hold one slot of the backend's global concurrency limit (created when missing) around a model call.

    Only against a shared server (PREFECT_API_URL): each process gets its own temporary server otherwise, where a
    limit would coordinate nothing and still cost a round trip per call."""
    name = backend_limit_name(backend.model, backend.api_base)
    if name is None or _api_url() == "ephemeral" or not _ensure_limit(name, load_settings().backend_slots, _api_url()):
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, strict=False):
        yield


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


# --- artifacts ---------------------------------------------------------------------------------------------------

class RunArtifacts:
    """Progress as tiles finish, then the review, a table of tiles and a run summary with the report's location."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.total = max(1, len(plan.tiles))
        self.done = 0
        self._lock = threading.Lock()
        self.progress_id = _safe(
            "progress", lambda: _artifacts().create_progress_artifact(
                0.0, key=artifact_key("progress", Path(plan.image_path).stem),
                description=f"Tiles of {Path(plan.image_path).name} reviewed ({plan.cols}x{plan.rows} grid)"),
        )

    def tile_done(self) -> None:
        with self._lock:
            self.done += 1
            progress = round(100.0 * self.done / self.total, 1)
        if self.progress_id:
            _safe("progress", lambda: _artifacts().update_progress_artifact(self.progress_id, progress))

    def finish(self, report: FinalReport, folder: str, message: str = "") -> None:
        image = Path(report.image).name
        state = "complete" if report.complete else "partial"
        _safe("summary", lambda: _artifacts().create_table_artifact(
            [summary_row(report, folder)], key=SUMMARY_KEY, description=f"Run summary of {image} and where its report is"))
        _safe("tiles", lambda: _artifacts().create_table_artifact(
            tile_rows(report), key=TILES_KEY, description=f"Tiles of {image} and their key findings"))
        _safe("review", lambda: _artifacts().create_markdown_artifact(
            review_markdown(report, folder, message), key=artifact_key("review", Path(report.image).stem),
            description=f"The {state} review of {image}"))


def _artifacts():
    import prefect.artifacts

    return prefect.artifacts


def _safe(what: str, make):
    try:
        return make()
    except Exception as e:
        logger.warning("could not write the %s artifact: %s: %s", what, type(e).__name__, e)
        return None


def summary_row(report: FinalReport, folder: str) -> dict:
    calls = report.calls
    return {
        "image": Path(report.image).name, "model": report.model, "api_base": report.api_base or "",
        "density": report.density, "grid": report.grid, "phases": ",".join(report.phases),
        "state": "complete" if report.complete else "partial", "planned": calls.planned, "made": calls.made,
        "cached": calls.cached, "failed": calls.failed, "failed_tiles": ",".join(report.failed_tiles),
        "elapsed_s": report.elapsed_s, "report_dir": str(Path(folder).resolve()),
    }


def tile_rows(report: FinalReport) -> list[dict]:
    rows = [
        {
            "tile": t.tile, "box": " ".join(map(str, t.box)), "status": "done",
            "readings": "; ".join(r.text for r in t.readings[:8]) + (" …" if len(t.readings) > 8 else ""),
            "subjects": "; ".join(t.subjects[:6]), "characteristics": _first_line(t.characteristics, 80),
            "report": _first_line(t.report, 160),
        }
        for t in report.tiles
    ]
    rows += [{"tile": t, "box": "", "status": "FAILED after retries", "readings": "", "subjects": "",
              "characteristics": "", "report": ""} for t in report.failed_tiles]
    return rows


def review_markdown(report: FinalReport, folder: str, message: str = "") -> str:
    calls = report.calls
    head = [
        f"# Review of `{Path(report.image).name}`", "",
        f"- model `{report.model}`" + (f" at `{report.api_base}`" if report.api_base else ""),
        f"- grid {report.grid} ({report.density}), phases {', '.join(report.phases)}",
        f"- calls: {calls.made} made, {calls.cached} from the memo, {calls.failed} failed, of {calls.planned} planned",
        f"- report folder: `{Path(folder).resolve()}`", "",
    ]
    if not report.complete:
        head += [f"**Partial: tiles {', '.join(report.failed_tiles)} failed after retries.** "
                 "Retry this run (UI *Retry*, `prefect flow-run retry`, or `mosaic rerun`): only the missing calls are made.",
                 "", message, ""]
        return "\n".join(head)
    return "\n".join(head + ["## Review", "", report.review])


def _first_line(text: str, limit: int) -> str:
    line = next((s.strip() for s in (text or "").splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


__all__ = ["RunArtifacts", "backend_slot", "SUMMARY_KEY", "TILES_KEY"]
