"""Making a review's steps happen, in whatever thread or process a driver puts them: the one place model calls are
made and retried (one policy: attempts, jittered backoff, Retry-After honoured once, failover to the next server
as an attempt, a time limit per step), and the second look's closer crops cut."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from . import evidence, pipeline
from .context import RunContext
from .engine import Outcome, StepsFailed, Work
from .errors import BackendError, BadImage
from .llm import call_model
from .memo import BlobStore
from .schema import Plan, Reading, View
from .second_look import SecondLook, verification_boxes, zoom_boxes
from .settings import load_settings
from .text_regions import text_regions

logger = logging.getLogger("mosaic.steps")


def perform(works: list[Work], ctx: RunContext, addresses: list[str] | None = None,
            carried: dict[str, bytes] | None = None, log: Callable[[str], None] | None = None) -> list[Outcome]:
    """Each step in turn (they share one server slot): its outcome. Raises StepsFailed, carrying every outcome,
    when one failed, so a task running them ends Failed.
    addresses: the server the driver chose, then the others to fail over to. carried: the crops the steps show,
    by sha256, for a worker that does not share this machine's cache folder (it stores them in its own)."""
    if carried is not None:
        if ctx.use_memo:
            ctx = ctx.model_copy(update={"cache_dir": str(load_settings().cache_dir)})
        blobs = ctx.blobs
        for sha, data in carried.items():
            if not blobs.has(sha):
                blobs.put(data)
    local = {"regions": found_regions, "look": witnessed, "evidence": witnessed, "view-witness": witnessed}
    outcomes = [local[w.kind](w, ctx.blobs) if w.kind in local else ask(w, ctx, addresses, log) for w in works]
    if any(not o.ok for o in outcomes):
        raise StepsFailed(outcomes)
    return outcomes


def ask(work: Work, ctx: RunContext, addresses: list[str] | None = None,
        log: Callable[[str], None] | None = None) -> Outcome:
    """A step's calls, one after another, retried as one: a retry asks only the calls still unanswered (the
    answered ones are in the memo too). A failure worth retrying (no answer, 5xx, 429) is tried again after a
    backoff, or at once at the next server; one that is not (a bad request, an unknown model) ends the step."""
    say = log or logger.warning
    memo, blobs, complete = ctx.memo, ctx.blobs, ctx.complete
    servers = addresses or [None]
    replies = [None] * len(work.calls)
    started, waited_as_asked, attempt, troubled = time.monotonic(), False, 0, []
    while True:
        address = servers[attempt % len(servers)]
        errors = []
        for i, call in enumerate(work.calls):
            if replies[i] is None:
                try:
                    replies[i] = call_model(call, blobs, memo, ctx.backend.timeout_s, address, complete)
                except BackendError as e:
                    errors.append(e)
        if not errors:
            return Outcome(replies=replies, retries=attempt, troubled=troubled)
        error = next((e for e in errors if e.retryable), errors[0])
        if error.retryable and address is not None:
            troubled.append(address)
        then = servers[(attempt + 1) % len(servers)]
        wait = retry_wait(error, attempt, ctx.retry_delay_s, failover=then != address, waited_as_asked=waited_as_asked)
        waited_as_asked |= error.retry_after is not None and then == address
        if not error.retryable or attempt >= ctx.retries or time.monotonic() - started + wait > ctx.retry_limit_s:
            return Outcome(replies=replies, error=error, retries=attempt, troubled=troubled)
        attempt += 1
        where = f" at {then}" if then != address else ""
        say(f"{work.name}: {error}; try {attempt + 1} of {ctx.retries + 1}{where} in {wait:.1f} s")
        time.sleep(wait)


def retry_wait(error: BackendError, attempt: int, delay_s: float, failover: bool = False,
               waited_as_asked: bool = False) -> float:
    """Seconds before the next try: none when it goes to another server; the server's Retry-After the first time
    it gives one; else exponential backoff with ±20% jitter (runs that failed together do not retry together)."""
    if failover:
        return 0.0
    if error.retry_after is not None and not waited_as_asked:
        return error.retry_after
    return delay_s * 2**attempt * random.uniform(0.8, 1.2)


def witnessed(work: Work, blobs: BlobStore) -> Outcome:
    """The readings with their independent witnesses (mosaic.evidence) and what those found; looks are kept, so a
    rerun redoes none. The second look plans its views from them: first of the readings worth one more look
    (witnessed first: one probably not in the image is not looked at again), then, within the cap, of text-like
    regions no view read; each crop cut, stored and named (d1, d2, …)."""
    found = dict(work.found)
    try:
        readings = evidence.witness(work.readings, pipeline.original_image(work.plan), work.plan, blobs,
                                    work.witnesses, work.similarity, found)
        if work.kind == "look":
            return Outcome(views=closer_views(work.plan, readings, work.look, work.room, blobs, found), found=found)
        return Outcome(readings=readings, found=found)
    except BadImage as e:  # the file changed or went away since the plan was made
        return Outcome(error=e)


def found_regions(work: Work, blobs: BlobStore) -> Outcome:
    """The image's text-like regions (mosaic.text_regions), found once for the second look while views are asked."""
    found: dict[str, str] = {}
    try:
        text_regions(pipeline.original_image(work.plan), work.plan.image_sha256, blobs, found=found)
    except BadImage as e:
        return Outcome(error=e)
    return Outcome(found=found)


def closer_views(plan: Plan, readings: list[Reading], look: SecondLook, cap: int, blobs: BlobStore,
                 found: dict[str, str] | None = None) -> list[View]:
    tile_side = max(max(t.box[2] - t.box[0], t.box[3] - t.box[1]) for t in plan.tiles)
    boxes = verification_boxes(readings, {v.id: v for v in plan.views}, plan.width, plan.height, tile_side, cap)
    image = pipeline.original_image(plan)
    if look.zoom_unread and len(boxes) < cap:
        regions = text_regions(image, plan.image_sha256, blobs, found=found)
        boxes += zoom_boxes(regions, readings, plan.width, plan.height, tile_side, cap - len(boxes), boxes)
    return pipeline.detail_views(plan, image, boxes, blobs, look.zoom_px)
