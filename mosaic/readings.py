"""Readings of text: the one merge every report uses (tile reports, the whole run, the offline reader's review)."""

from __future__ import annotations

import re

from .schema import Reading


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold()


def merge_readings(readings: list[Reading]) -> list[Reading]:
    """One reading per distinct text, with every view it was read in; a reading contained in a longer one (a sign
    cut by a tile line) is dropped. unclear stays only if every copy was unclear."""
    unique: dict[str, Reading] = {}
    for r in readings:
        key = squash(r.text)
        if not key:
            continue
        if key in unique:
            kept = unique[key]
            kept.views = list(dict.fromkeys([*kept.views, *r.views]))
            kept.unclear = kept.unclear and r.unclear
        else:
            unique[key] = r.model_copy(update={"views": list(r.views)})
    keys = list(unique)
    return [unique[k] for k in keys if not any(k != other and k in other for other in keys)]
