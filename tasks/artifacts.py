"""What a run shows on a Prefect server: progress, the review, a table of tiles, a summary.

Best effort: a server without artifacts (or a hiccup reaching it) logs a warning and the review goes on."""

from __future__ import annotations

import base64
import io
import logging
import re
import threading
import time
from pathlib import Path

from mosaic.report import render_markdown
from mosaic.schema import FinalReport, Plan

logger = logging.getLogger("mosaic.artifacts")

SUMMARY_PREFIX = "summary-"  # artifact keys: summary-<report folder>, tiles-…, review-…, progress-…
OVERVIEW_THUMB_PX = 960
PROGRESS_EVERY_S = 0.5


# --- artifacts ---------------------------------------------------------------------------------------------------

def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key[:100] or "mosaic"


class RunArtifacts:
    """Progress as tiles finish, then the review (with the overview picture), a table of tiles and a run summary with
    the report's location. Keys name the report folder (image, content, settings), so runs of other images or
    settings do not hide each other's artifacts in the UI's list."""

    def __init__(self, plan: Plan, folder_name: str):
        self.plan = plan
        self.name = artifact_key(folder_name)
        self.total = max(1, len(plan.tiles))
        self.done = 0
        self._lock = threading.Lock()
        self._updated, self._sent = 0.0, 0.0
        self.progress_id = _safe(
            "progress", lambda: _artifacts().create_progress_artifact(
                0.0, key=f"progress-{self.name}",
                description=f"Tiles of {Path(plan.image_path).name} reviewed ({plan.cols}x{plan.rows} grid)"),
        )

    def tiles_done(self, done: int) -> None:
        with self._lock:
            if done == self.done:
                return
            self.done = done
            now = time.monotonic()
            if now - self._updated < PROGRESS_EVERY_S and self.done < self.total:
                return  # a memoized rerun finishes every tile at once: one request, not one per tile
            self._updated = now
        self._send_progress()

    def _send_progress(self) -> None:
        with self._lock:
            progress = round(100.0 * self.done / self.total, 1)
            if progress == self._sent:
                return
            self._sent = progress
        if self.progress_id:
            _safe("progress", lambda: _artifacts().update_progress_artifact(self.progress_id, progress))

    def finish(self, report: FinalReport, folder: str, message: str = "") -> None:
        self._send_progress()  # what the last tiles left unsent
        image = Path(report.image).name
        state = "complete" if report.complete else "partial"
        _safe("summary", lambda: _artifacts().create_table_artifact(
            summary_table(summary_row(report, folder)), key=f"{SUMMARY_PREFIX}{self.name}",
            description=f"Run summary of {image} and where its report is"))
        _safe("tiles", lambda: _artifacts().create_table_artifact(
            tile_rows(report), key=f"tiles-{self.name}", description=f"Tiles of {image} and their key findings"))
        _safe("review", lambda: _artifacts().create_markdown_artifact(
            render_markdown(report, overview_data_url(folder) or "overview.jpg", message), key=f"review-{self.name}",
            description=f"The {state} review of {image}"))


def batch_progress(images: int):
    """A batch's progress artifact (images done of all); returns what updates it from the batch."""
    progress_id = _safe("progress", lambda: _artifacts().create_progress_artifact(
        0.0, description=f"Images of the batch reviewed or failed (of {images})"))

    def update(jobs) -> None:
        done = sum(j.ended for j in jobs)
        if progress_id:
            _safe("progress", lambda: _artifacts().update_progress_artifact(progress_id, round(100.0 * done / images, 1)))

    return update


def batch_summary(summary: dict) -> None:
    """A table of the batch's images: state, calls, report folder."""
    rows = [{"image": Path(i["image"]).name, "state": i["state"], "made": (i["calls"] or {}).get("made", ""),
             "cached": (i["calls"] or {}).get("cached", ""), "report_dir": i["report_dir"] or "",
             "error": _cut(i["error"] or "", 90)} for i in summary["images"]]
    totals = summary["totals"]
    _safe("batch", lambda: _artifacts().create_table_artifact(
        rows, description=f"Batch: {totals['reviewed']} of {totals['images']} images reviewed, {totals['failed']} failed"))
    facts = {"image": f"{totals['images']} images", "state": "complete" if not totals["failed"] else "partial",
             "reviewed": totals["reviewed"], "failed": totals["failed"], "planned": totals["calls_planned"],
             "made": totals["calls_made"], "cached": totals["calls_cached"], "elapsed_s": totals["seconds"]}
    _safe("batch summary", lambda: _artifacts().create_table_artifact(  # what `mosaic history` shows of the run
        summary_table(facts), key=f"{SUMMARY_PREFIX}batch-{_run_id()[:8]}", description="Batch summary"))


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or "run")


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
        "report_html": str((Path(folder) / "report.html").resolve()),  # open it with: mosaic open RUN
    }


def summary_table(row: dict) -> list[dict]:
    """The summary as two columns (what, value): it fits the UI's width, where one wide row was cut off."""
    return [{"what": k, "value": v} for k, v in row.items()]


def summary_from_table(rows: list[dict]) -> dict:
    return {r["what"]: r.get("value") for r in rows if isinstance(r, dict) and "what" in r}


def tile_rows(report: FinalReport) -> list[dict]:
    """Short columns, so the table fits the UI; the whole of each tile is in report.md."""
    rows = [
        {"tile": t.tile, "status": "done", "readings": _cut("; ".join(r.text for r in t.readings), 70),
         "subjects": _cut("; ".join(t.subjects), 50), "report": _first_line(t.report, 90)}
        for t in report.tiles
    ]
    rows += [{"tile": t, "status": "FAILED", "readings": "", "subjects": "", "report": "failed after retries"}
             for t in report.failed_tiles]
    return rows


def overview_data_url(folder: str) -> str | None:
    """The report's overview picture, small enough to sit inside a markdown artifact (the UI shows it inline; an
    image artifact would need a URL the browser can reach)."""
    try:
        from PIL import Image

        with Image.open(Path(folder) / "overview.jpg") as image:
            image.thumbnail((OVERVIEW_THUMB_PX, OVERVIEW_THUMB_PX))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
    except OSError:
        return None


def retry_hint(entrypoint: str = "flows/review.py:review_image") -> str:
    """How to go on from the Prefect run that is running now (entrypoint: its flow's, for Prefect's own retry)."""
    from prefect.context import FlowRunContext
    from prefect.runtime import flow_run

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    run_id = str(run.id) if run else ""
    if run and run.deployment_id:
        return f"retry this run (the UI's Retry, or prefect flow-run retry {run_id})"
    here = (f"mosaic rerun {run_id} (or prefect flow-run retry {run_id} --entrypoint {entrypoint} "
            "from the checkout)")
    parent = flow_run.parent_flow_run_id if run and run.parent_task_run_id else None
    return f"retry the parent run {parent} (the UI's Retry), or this run with {here}" if parent else f"retry it with {here}"


def _first_line(text: str, limit: int) -> str:
    return _cut(next((s.strip() for s in (text or "").splitlines() if s.strip()), ""), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["RunArtifacts", "comparison_artifacts", "retry_hint", "summary_from_table", "SUMMARY_PREFIX"]


def comparison_artifacts(comparison) -> None:
    """The comparison in the UI: comparison.md with its hard-spot crops inline, and a table of the models' runs."""
    from mosaic.report import render_comparison

    folder = Path(comparison.comparison_dir or ".")
    crops = {}
    for n in range(1, INLINE_CROPS + 1):
        path = folder / "hard-spots" / f"{n:02d}.jpg"
        if path.exists():
            crops[n] = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    key = artifact_key("comparison", folder.name)
    image = Path(comparison.image).name
    _safe("summary", lambda: _artifacts().create_table_artifact(
        summary_table({"image": image, "models": ", ".join(m.label for m in comparison.models),
                       "missing": ", ".join(m.label for m in comparison.missing), "grid": comparison.grid,
                       **comparison.counts, "report_dir": str(folder.resolve()),
                       "report_html": str((folder / "comparison.html").resolve())}),
        key=artifact_key(SUMMARY_PREFIX, folder.name), description=f"Models compared on {image}: where it is"))
    _safe("comparison", lambda: _artifacts().create_markdown_artifact(
        render_comparison(comparison, crops), key=key, description=f"Models compared on {image}: where they disagree"))
    _safe("models", lambda: _artifacts().create_table_artifact(
        [{"model": m.label, "state": m.state, "readings": m.readings, "made": m.calls.made if m.calls else "",
          "cached": m.calls.cached if m.calls else "", "elapsed_s": m.elapsed_s or "", "report_dir": m.report_dir or "",
          "error": m.error or ""} for m in comparison.models],
        key=artifact_key("models", folder.name), description=f"Each model's review of {image}"))


INLINE_CROPS = 12  # hard spots shown inline in the UI's artifact; comparison.md in the folder has them all
