"""Scoring of the detail-recall benchmark: which ground-truth sign texts a report holds, and which readings
match nothing in the image. Pure functions, tested in tests/test_bench.py."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from testkit.scenes import Sign, straddled_grids


def norm(text: str) -> str:
    """Whitespace removed, casefolded: how a reading is compared with a sign."""
    return re.sub(r"\s+", "", text or "").casefold()


def recalled(signs: Sequence[Sign], texts: str | Sequence[str]) -> list[bool]:
    """Per sign: does its text appear (normalised) within one of `texts`? Each text is searched on its own, so two
    separate readings ("0312-" and "5567") never join into a sign's text."""
    hays = [norm(t) for t in ([texts] if isinstance(texts, str) else texts)]
    return [bool(norm(s.text)) and any(norm(s.text) in h for h in hays) for s in signs]


def invented(readings: Iterable[str], truths: Iterable[str]) -> list[str]:
    """Readings that are not in the image: they equal no ground-truth string nor a piece of one (a sign cut by a
    tile line is read in parts), and hold none whole (a sign read with a stray mark around it is still read)."""
    keys = [norm(t) for t in truths if norm(t)]
    out = []
    for r in readings:
        k = norm(r)
        if k and not any(k in t or t in k for t in keys):
            out.append(r)
    return out


def straddles(sign: Sign, width: int, height: int, grid: str | None) -> bool:
    """Is the sign cut by the tile lines of `grid` ("CxR")? With no grid (one-shot): by any grid the generator
    checked."""
    if grid is None:
        return bool(sign.straddles)
    return bool(straddled_grids(sign.box, width, height, [grid]))


def small_cut(rel_heights: Sequence[float]) -> float:
    """The relative height at or below which a sign is in the smallest third."""
    ordered = sorted(rel_heights)
    if not ordered:
        return 0.0
    return ordered[max(0, (len(ordered) + 2) // 3 - 1)]


def rate(hits: Sequence[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def score_method(rows: Sequence[dict], cut: float) -> dict:
    """Aggregate per-sign rows ({'review': bool, 'report': bool, 'straddles': bool, 'rel_h': float,
    'script': str}) into the benchmark's figures."""
    def pick(f):
        return [r for r in rows if f(r)]

    out = {
        "signs": len(rows),
        "recall_review": rate([r["review"] for r in rows]),
        "recall_report": rate([r["report"] for r in rows]),
    }
    for name, f in (("straddling", lambda r: r["straddles"]), ("smallest_third", lambda r: r["rel_h"] <= cut),
                    ("cjk", lambda r: r["script"] == "cjk"), ("dim", lambda r: r.get("dim", False))):
        sel = pick(f)
        out[f"{name}_n"] = len(sel)
        out[f"recall_{name}"] = rate([r["report"] for r in sel])
    return out
