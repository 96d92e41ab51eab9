"""Readings of text: where a view says it read one, what a prose answer still tells, and the grouping of what
several views read into one reading with its evidence (the tiles it lies in, its variants, whether it is
confirmed). Pure functions."""

from __future__ import annotations

import json
import re

from .schema import Reading
from .tiles import Box


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold()


FRAME_MARKS = " \t\n|\\_~`"  # what a reader makes of a sign's frame or a board's edge at the ends of a line


def sign_text(text: str) -> str:
    """A reading's text without the frame marks at its ends ('\\SUJA |' → 'SUJA'); marks inside are kept."""
    return text.strip(FRAME_MARKS)


def merge_readings(readings: list[Reading]) -> list[Reading]:
    """One reading per distinct text, with every view it was read in; a reading contained in a longer one (a sign
    cut by a tile line) is dropped. unclear stays only if every copy was unclear. (The offline reader's review.)"""
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


# --- where a reading lies ------------------------------------------------------------------------------------

def box_in_image(value, view_box: Box) -> Box | None:
    """A box a view gave ([x0, y0, x1, y1] in thousandths of the crop, or fractions of it) in image pixels; None
    for anything else."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    scale = 1.0 if max(x0, y0, x1, y1) <= 1.0 else 1000.0
    if not (0 <= x0 < x1 <= scale and 0 <= y0 < y1 <= scale):
        return None
    vx0, vy0, vx1, vy1 = view_box
    w, h = vx1 - vx0, vy1 - vy0
    return (round(vx0 + x0 / scale * w), round(vy0 + y0 / scale * h),
            round(vx0 + x1 / scale * w), round(vy0 + y1 / scale * h))


_THIRDS = {"top": 0, "upper": 0, "bottom": 2, "lower": 2, "left": 0, "right": 2, "middle": 1, "centre": 1,
           "center": 1}


def place_box(words: str | None, view_box: Box) -> Box | None:
    """The third of the crop a place in words names ("top left", "bottom", "middle right"), in image pixels."""
    found = re.findall(r"top|upper|bottom|lower|left|right|middle|centre|center", (words or "").lower())
    if not found:
        return None
    row = next((_THIRDS[w] for w in found if w in ("top", "upper", "bottom", "lower")), 1)
    col = next((_THIRDS[w] for w in found if w in ("left", "right")), 1)
    x0, y0, x1, y1 = view_box
    w, h = (x1 - x0) / 3, (y1 - y0) / 3
    return (round(x0 + col * w), round(y0 + row * h), round(x0 + (col + 1) * w), round(y0 + (row + 1) * h))


def area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def intersection(a: Box, b: Box) -> Box:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def hull(boxes) -> Box | None:
    """The smallest box holding all of them; None for none."""
    boxes = list(boxes)
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


# A reading lies in a tile when at least this share of its box does; in two or more: it is on a tile line.
IN_TILE_SHARE = 0.15


def tiles_of(box: Box, tiles: dict[str, Box]) -> tuple[list[str], bool]:
    """(the tiles a box lies in, whether it crosses a tile line)."""
    own = max(1, area(box))
    inside = [t for t, b in tiles.items() if area(intersection(box, b)) / own >= IN_TILE_SHARE]
    if not inside:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        inside = [t for t, b in tiles.items() if b[0] <= cx < b[2] and b[1] <= cy < b[3]][:1]
    return inside, len(inside) > 1


# --- prose answers -------------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"([^"\n]{1,160})"|“([^”\n]{1,160})”|「([^」\n]{1,160})」|«([^»\n]{1,160})»')
_PLACE_AFTER = re.compile(r"\s*[(\[]([^)\]\n]{1,40})[)\]]")
_LISTED = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.+?)\s*$|^\s*(?:visible )?text(?: read)?\s*:\s*(.+?)\s*$", re.I | re.M)
_NOTHING = re.compile(r"\b(no|none|not any|cannot|can't|unable|unreadable|illegible|blurr\w*|legible|visible)\b"
                      r"|^\s*(none|n/a)\s*$", re.I)
_JSON_TEXT = re.compile(r'"text"\s*:\s*"((?:[^"\\]|\\.)*)"')


def readings_in_prose(answer: str, lists: bool = True) -> list[tuple[str, str | None]]:
    """(text, place in words or None) for the text an answer that is not JSON names. Broken JSON (cut off at the
    token limit): its "text" values. Prose: what it quotes, else (lists: a text-only question) what it lists."""
    if answer.lstrip().startswith(("{", "```")) or '"readings"' in answer:
        return [(json.loads(f'"{m.group(1)}"'), None) for m in _JSON_TEXT.finditer(answer) if m.group(1).strip()]
    found = []
    for m in _QUOTED.finditer(answer):
        text = next(g for g in m.groups() if g is not None).strip()
        place = _PLACE_AFTER.match(answer, m.end())
        if text:
            found.append((text, place.group(1) if place else None))
    if found or not lists:
        return found
    for m in _LISTED.finditer(answer):
        item = (m.group(1) or m.group(2) or "").strip()
        place = re.search(r"\s*[(\[]([^)\]]{1,40})[)\]]\s*$", item)
        text = item[: place.start()].strip() if place else item
        text = text.strip(" .,;:'")
        if text and not _NOTHING.search(text) and len(text) <= 80:
            found.append((text, place.group(1) if place else None))
    return found


# --- grouping ------------------------------------------------------------------------------------------------

def one_apart(a: str, b: str) -> bool:
    """Edit distance of at most one (a character changed, added or dropped)."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def alike(a: str, b: str) -> bool:
    """Two grouping keys that may be one sign read twice: equal, one a part of the other, or (from three
    characters on: 出口 and 入口 are two signs) a character apart."""
    if a == b:
        return True
    shorter = min(len(a), len(b))
    return shorter >= 2 and (a in b or b in a) or shorter >= 3 and one_apart(a, b)


def group_key(text: str) -> str:
    """What grouping compares: no spaces, case or punctuation ("OPEN." is "OPEN" read again)."""
    return "".join(ch for ch in squash(text) if ch.isalnum())


def _same_place(a: Reading, b: Reading) -> bool:
    if a.box and b.box:
        return area(intersection(grown(a.box), grown(b.box))) > 0
    return bool(set(a.tiles) & set(b.tiles))


def grown(box: Box, share: float = 0.25) -> Box:
    """The box with a share of its size added on each side."""
    dx, dy = (box[2] - box[0]) * share, (box[3] - box[1]) * share
    return (round(box[0] - dx), round(box[1] - dy), round(box[2] + dx), round(box[3] + dy))


def is_tile_view(view_id: str) -> bool:
    return re.fullmatch(r"r\d+c\d+", view_id) is not None


def group_readings(readings: list[Reading], tiles: dict[str, Box]) -> list[Reading]:
    """One reading per sign: what the views read at one place, alike in text, grouped. Its text is the one most
    views read (the longer when as many: a whole sign over its parts), the others are its variants; it is confirmed
    when two or more views read that same text (until mosaic.evidence asks witnesses independent of the model).
    Where no view said where, the tile views that read it name its tiles; read only in a crop across a tile line,
    it lies on that line."""
    items = [r for r in readings if group_key(r.text)]
    keys = [group_key(r.text) for r in items]
    linked = lambda i, j: alike(keys[i], keys[j]) and _same_place(items[i], items[j])  # noqa: E731
    return [_one_reading([items[i] for i in members], tiles) for members in clusters(len(items), linked)]


def clusters(count: int, linked) -> list[list[int]]:
    """The indexes 0..count-1 in groups: linked(i, j) for j < i joins i's group and j's (union-find), in first-seen
    order."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(count):
        for j in range(i):
            if linked(i, j):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _one_reading(members: list[Reading], tiles: dict[str, Box]) -> Reading:
    by_text: dict[str, list[Reading]] = {}
    for r in members:
        by_text.setdefault(group_key(r.text), []).append(r)
    whole = [k for k in by_text if not any(k != other and k in other for other in by_text)]

    def views_of(k: str) -> list[str]:
        return list(dict.fromkeys(v for r in by_text[k] for v in r.views))

    main = max(whole, key=lambda k: (len(views_of(k)), not all(r.unclear for r in by_text[k]), len(k)))
    first = by_text[main]
    boxes = [r.box for r in first if r.box] or [r.box for r in members if r.box]
    box = hull(boxes)
    views = list(dict.fromkeys(v for r in members for v in r.views))
    if box:
        where, on_line = tiles_of(box, tiles)
    else:
        where = list(dict.fromkeys(v for v in views if is_tile_view(v)))
        on_line = len(where) > 1
        if not where:  # read only in crops across tile lines
            where = list(dict.fromkeys(t for r in members for t in r.tiles))
            on_line = len(where) > 1
    return Reading(
        text=first[0].text, romanized=next((r.romanized for r in first if r.romanized), None),
        translation=next((r.translation for r in first if r.translation), None),
        unclear=all(r.unclear for r in first), views=views, tiles=where, on_tile_line=on_line, box=box,
        confirmed=len(views_of(main)) >= 2,
        variants=list(dict.fromkeys(by_text[k][0].text for k in by_text if k != main)),
        source="json" if any(r.source == "json" for r in first) else "prose",
    )


def in_reading_order(readings: list[Reading], tile_order: list[str]) -> list[Reading]:
    """Confirmed first, then the rest; each part by its first tile, top left to bottom right."""
    rank = {t: i for i, t in enumerate(tile_order)}
    return sorted(readings, key=lambda r: (not r.confirmed, min((rank.get(t, len(rank)) for t in r.tiles),
                                                                default=len(rank)), r.box or (0, 0, 0, 0), r.text))
