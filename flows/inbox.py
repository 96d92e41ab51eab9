"""`review-inbox`: review every new image in a folder, the report of each into an outbox. Meant to be scheduled."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, tags

from mosaic_flows.batch import review_batch_with
from mosaic_flows.review import review_image
from mosaic.backend import Backend
from mosaic.errors import BadOption, RunFailed
from mosaic.images import set_pixel_limit
from mosaic.inbox import (check_grid_options, claim, clear_failures, count_failure, file_sha256, inbox_images, reject,
                          review_marker, unreviewable, write_marker)
from mosaic.schema import DEFAULT_PHASES
from mosaic.settings import load_settings
from mosaic_tasks.artifacts import retry_hint


RUNNERS = ("images", "threads", "dask")


def _run_name() -> str:
    from prefect.runtime import flow_run

    folder = Path(str((flow_run.parameters or {}).get("inbox", "inbox"))).name or "inbox"
    return f"inbox-{folder}-{datetime.now():%Y%m%d-%H%M%S}"


@flow(name="review-inbox", flow_run_name=_run_name, persist_result=False, log_prints=False)
def review_inbox(
    inbox: str = "inbox",
    outbox: str = "outbox",
    model: str = "offline",
    api_base: str | None = None,
    density: str = "light",
    grid: str | None = None,
    phases: list[str] = list(DEFAULT_PHASES),
    runner: str = "images",
    dask_address: str | None = None,
) -> dict:
    """Review each image in the inbox not yet reviewed with the same settings; write its report to the outbox.

    Args:
        inbox: Folder watched for images (jpg, png, webp, tiff, bmp, gif), relative to the worker's directory or absolute.
        outbox: Folder the report folders go to; it also remembers which images were reviewed with which settings.
        model: LiteLLM model string (e.g. ollama_chat/qwen2.5vl:7b, openai/<name>) or 'offline' for the built-in reader.
        api_base: Address of the model server, e.g. http://127.0.0.1:8080/v1; empty for the provider's default.
        density: Grid density: quick 2x2, light 3x3, dense 4x4, max 5x5, or auto (by model size).
        grid: Exact COLSxROWS grid, e.g. 4x2; overrides density when set.
        phases: Questions asked of each tile, from text, subjects, characteristics (or inspect: all in one call).
        runner: images: one review-image run per image, in turn (each with its own artifacts and retry). threads or
            dask: the new images in one mosaic-batch run, their calls in one stream, on this worker's threads or on
            a Dask cluster (several servers in api_base, comma-separated, share the calls).
        dask_address: With runner dask: the scheduler, e.g. tcp://10.0.0.5:8786; empty starts a local cluster.
    """
    logger = get_run_logger()
    config = load_settings()
    backend = Backend.create(model, api_base, config.offline_budget)
    set_pixel_limit(config.max_image_mp)
    settings = {"model": backend.model, "api_base": backend.api_base, "density": density, "grid": grid or None,
                "phases": list(phases)}
    reviewed, skipped, failed, rejected = [], [], [], []
    if not Path(inbox).is_dir():
        Path(inbox).mkdir(parents=True)
        logger.info("created the inbox folder %s: put images there", Path(inbox).resolve())
    if runner not in RUNNERS:
        raise BadOption(f"runner must be one of {', '.join(RUNNERS)}, not {runner!r}")
    check_grid_options(density, grid)
    images = inbox_images(inbox)
    new: list[tuple[Path, Path]] = []
    parameters = {"model": model, "api_base": api_base or None, "density": density, "grid": grid or None,
                  "phases": list(phases)}

    def set_aside(image: Path, reason: str) -> None:  # said once: the file leaves the inbox
        where = reject(image, outbox, reason)
        rejected.append(image.name)
        logger.warning("%s cannot be reviewed, set aside as %s: %s", image.name, where, reason)

    def record(image: Path, marker: Path, report_dir: str | None, error: str | None) -> None:
        if error is None:
            write_marker(marker, {"image": image.name, "settings": settings, "report_dir": report_dir})
            clear_failures(outbox, image)
            reviewed.append(image.name)
            logger.info("%s reviewed: %s", image.name, report_dir)
        elif count_failure(outbox, image, error) >= config.inbox_max_failures:
            set_aside(image, f"failed in {config.inbox_max_failures} sweeps, last: {error}")
        else:  # one image's failure does not stop the others; the next sweep tries it again
            failed.append(f"{image.name} ({error})")

    with ExitStack() as held, tags(*backend.tags(model)):
        for image in images:
            if not held.enter_context(claim(outbox, image)) or not image.exists():
                continue  # another sweep has it (or had it and is done)
            try:
                marker = review_marker(outbox, file_sha256(image), settings)
            except OSError as e:
                set_aside(image, f"cannot read {image.name}: {e.strerror or e}")
                continue
            if marker.exists():
                skipped.append(image.name)
            elif reason := unreviewable(image, density, grid):
                set_aside(image, reason)
            else:
                new.append((image, marker))
        if runner == "images":
            for image, marker in new:
                record(image, marker, *_review_alone(image, outbox, parameters))
        else:
            outcomes = _review_together([image for image, _ in new], outbox, parameters, runner, dask_address)
            for (image, marker), outcome in zip(new, outcomes):
                record(image, marker, *outcome)
    logger.info("inbox %s: %d reviewed, %d already reviewed, %d set aside, %d failed", inbox, len(reviewed),
                len(skipped), len(rejected), len(failed))
    if failed:
        raise RunFailed(f"{len(failed)} of {len(images)} images failed: " + "; ".join(failed),
                        retry=f"the next sweep tries them again, or {retry_hint('flows/inbox.py:review_inbox')}")
    return {"reviewed": reviewed, "skipped": skipped, "rejected": rejected, "outbox": str(Path(outbox).resolve())}


def _review_alone(image: Path, outbox: str, parameters: dict) -> tuple[str | None, str | None]:
    """One review-image run: (report folder, None), or (None, what failed)."""
    state = review_image(image_path=str(image.resolve()), out_dir=outbox, return_state=True, **parameters)
    if state.is_completed():
        return state.result()["report_dir"], None
    error = state.result(raise_on_failure=False)
    tiles = getattr(error, "failed_tiles", None)
    return None, f"tiles {', '.join(tiles)}" if tiles else (state.message or state.type.value)


def _review_together(images: list[Path], outbox: str, parameters: dict, runner: str,
                     dask_address: str | None) -> list[tuple[str | None, str | None]]:
    """One mosaic-batch run of all the images, on threads or a Dask cluster: per image (report folder, error)."""
    if not images:
        return []
    with tags(f"runner:{runner}"):
        summary = review_batch_with(runner, dask_address)(
            images=[str(image.resolve()) for image in images], out_dir=outbox, carry_images=bool(dask_address),
            **parameters)
    by_image = {str(Path(outcome["image"]).resolve()): outcome for outcome in summary["images"]}
    outcomes = [by_image[str(image.resolve())] for image in images]
    return [(o["report_dir"], None) if o["state"] == "reviewed" else (None, o["error"]) for o in outcomes]
