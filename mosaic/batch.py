"""Many images reviewed at once: which to open next, the work of all of them in one stream, and what each came to.

Plain code a thread pool or a Prefect flow drives (flows/batch.py): the driver prepares the images this opens,
asks the work it hands out, settles the answers and writes the reports it says are ready. A few reviews are open
at a time (each holds its plan), so a folder of thousands of photos costs the memory of a few."""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .engine import Review, Work
from .errors import BadOption
from .inbox import IMAGE_SUFFIXES
from .memo import Memo
from .schema import FinalReport, Plan


def batch_images(source: str | list[str]) -> list[Path]:
    """The images of a folder, a glob pattern ('photos/**/*.jpg') or a list of paths, sorted; BadOption when none."""
    if isinstance(source, list):
        paths = [Path(p) for p in source]
    elif Path(source).is_dir():
        paths = [p for p in Path(source).iterdir() if p.is_file()]
    elif glob.has_magic(source):
        paths = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
    elif Path(source).is_file():
        paths = [Path(source)]
    else:
        raise BadOption(f"no such folder, file or pattern: {source}")
    images = sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not images:
        raise BadOption(f"no images in {source} ({', '.join(IMAGE_SUFFIXES)})")
    return images


@dataclass
class ImageJob:
    image: str
    name: str  # unique in the batch, for task names: the file name, or its path relative to the others'
    state: str = "pending"  # pending, opening (being prepared), running, saving (its report), reviewed, failed
    review: Review | None = None
    folder: str | None = None
    report: FinalReport | None = None
    error: str | None = None
    started: float = 0.0
    in_flight: int = 0

    def summary(self) -> dict:
        calls = self.report.calls.model_dump() if self.report else None
        report_dir = self.report.report_dir if self.report else self.folder
        return {"image": self.image, "state": self.state, "report_dir": report_dir, "calls": calls, "error": self.error}


@dataclass
class Batch:
    images: list[Path]
    open_at_once: int = 4
    low_water: int = 8  # work items ready to hand out, below which the next image is prepared ahead
    jobs: list[ImageJob] = field(init=False)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        names = [p.name for p in self.images]
        unique = len(set(names)) == len(names)
        self.jobs = [ImageJob(str(p), p.name if unique else str(p)) for p in self.images]

    @property
    def running(self) -> list[ImageJob]:
        return [j for j in self.jobs if j.state == "running"]

    def to_open(self) -> list[ImageJob]:
        """Pending images to prepare now: while fewer than open_at_once are running, or one ahead when the running
        ones have little work left to hand out (preparing an image takes seconds, and a review waiting on its last
        answers leaves the backend idle meanwhile)."""
        pending = [j for j in self.jobs if j.state == "pending"]
        running = self.running
        opening = sum(j.state == "opening" for j in self.jobs)
        starved = (bool(running) and not opening and sum(j.review.waiting for j in running) < self.low_water
                   and len(running) < 2 * self.open_at_once)
        chosen = pending[:max(0, self.open_at_once - len(running) - opening) or int(starved)]
        for job in chosen:
            job.state = "opening"
        return chosen

    def start(self, job: ImageJob, plan: Plan, folder: str, review: Callable[[Plan], Review]) -> None:
        job.state, job.folder, job.started = "running", folder, time.monotonic()
        job.review = review(plan)

    def failed_to_start(self, job: ImageJob, error: BaseException | str) -> None:
        job.state, job.error = "failed", _one_line(error)

    def next_work(self, limit: int) -> list[tuple[ImageJob, Work]]:
        """Up to `limit` work items, the images opened first first: each image is finished as soon as it can be,
        and the later ones' work fills the slots while the first ones wait on their last answers (in turn, all
        would wait on their last answers together at the end)."""
        handed: list[tuple[ImageJob, Work]] = []
        for job in self.running:
            for work in job.review.next_work(limit - len(handed)):
                job.in_flight += 1
                handed.append((job, work))
        return handed

    def next_groups(self, free: int, slots: int, most: int) -> list[list[tuple[ImageJob, Work]]]:
        """Work for `free` server slots of `slots` in all: per slot a group of ready items asked in turn by one
        task, as many as an even share of what is ready over all the slots (at least one, at most `most`), so a
        slot that frees first does not take the work of the others."""
        waiting = sum(job.review.waiting for job in self.running)
        size = max(1, min(most, -(-waiting // max(slots, 1))))
        groups = []
        for _ in range(free):
            group = self.next_work(size)
            if not group:
                break
            groups.append(group)
        return groups

    def settle(self, job: ImageJob, work: Work, replies: list | None = None, error: BaseException | str | None = None,
               remember: Memo | None = None) -> None:
        """A work item's answers (or its failure). remember: a memo to keep the answers in as well, when they were
        made where this memo is not (workers on other machines)."""
        job.in_flight -= 1
        for call, reply in zip(work.calls, replies or []) if remember is not None else ():
            if not reply.cached:
                remember.put(call.key(), reply.content, reply.usage)
        job.review.settle(work, replies, error)

    def ready(self) -> list[ImageJob]:
        """Running reviews with nothing left to ask: their reports are due (each is handed out once)."""
        due = [j for j in self.running if j.review.finished]
        for job in due:
            job.state = "saving"
        return due

    def finish(self, job: ImageJob, report: FinalReport) -> None:
        """The report written (report.report_dir): the image is reviewed, or failed with the tiles that failed."""
        job.report = report
        job.state = "reviewed" if report.complete else "failed"
        if not report.complete:
            job.error = _one_line(job.review.failure(report.report_dir, None))
        job.review = None  # its plan and answers are in the report folder now

    @property
    def finished(self) -> bool:
        return all(j.state in ("reviewed", "failed") for j in self.jobs)

    def summary(self) -> dict:
        """What `mosaic batch --json` prints: every image with its state, report folder and calls, and totals."""
        images = [j.summary() for j in self.jobs]
        totals = {"images": len(images), "reviewed": sum(j.state == "reviewed" for j in self.jobs),
                  "failed": sum(j.state == "failed" for j in self.jobs)}
        for key in ("planned", "made", "cached", "failed"):
            totals[f"calls_{key}"] = sum(getattr(j.report.calls, key) for j in self.jobs if j.report)
        totals["seconds"] = round(time.monotonic() - self.started, 2)
        return {"images": images, "totals": totals}


def _one_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return (text.splitlines() or [type(error).__name__])[0]
