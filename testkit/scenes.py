"""Deterministic street scenes with small signs and exact ground truth.

The detail-recall benchmark needs images whose small details are known exactly:
``make_scene(seed, ...)`` paints a plausible city street (sky, buildings with
windows, ground, road, vehicles, poles, trees, texture and sensor noise) and puts
``n_signs`` small sign boards on it.  Every board carries one text:

* ``latin``  - an uppercase pseudo-word of 5-9 letters from random consonant/vowel
  patterns (no dictionary word, so a model cannot guess it from context);
* ``digits`` - a phone-like number such as ``0312-5567``;
* ``cjk``    - a word of 2-4 common Han characters (same glyph in Chinese and
  Japanese).

About a third of the signs (``straddle_frac``) are centred on a tile line of one of
``straddle_grids``, so that a tiler cuts them in two; the rest are placed anywhere
free (preferring spots that no tile line crosses).  A fraction (``dim_frac``) are
dim: low contrast or in a shadow.

Geometry conventions (shared with the tiler): a grid "CxR" has C columns and R
rows; its tile lines are ``x = round(i * W / C)`` for ``0 < i < C`` and
``y = round(j * H / R)`` for ``0 < j < R`` (Python's ``round``).  A box
``(x0, y0, x1, y1)`` is half-open like ``PIL.Image.crop``: it covers pixels
``x0 <= x < x1``.  A line at ``x = L`` separates pixels ``< L`` from pixels
``>= L``, so the box is cut by it iff ``x0 < L < x1``.

Everything is seeded: the same arguments give a byte-identical image on the same
Pillow/FreeType build.

Fonts: Latin and digits use Pillow's built-in scalable font
(``ImageFont.load_default(size=...)``, Aileron Regular, ships inside Pillow).
CJK uses Noto Sans CJK (SIL OFL 1.1) from the PyPI package ``manimgx-fonts-cjk``
(``pip install manimgx-fonts-cjk==2026.9.26.post1``); Debian's ``fonts-noto-cjk``
or a path in ``$MOSAIC_CJK_FONT`` also works.

Regenerate the bundled sample with::

    python -m testkit.scenes --seed 7 --size 3000x2000 --signs 16 \\
        --out mosaic/samples/street.jpg --quality 90
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Sign",
    "Scene",
    "FontMissingError",
    "make_scene",
    "straddled_grids",
    "grid_lines",
    "grid_name",
    "scene_set",
    "signs_from_ground_truth",
    "dump_ground_truth",
    "CJK_FONT_PACKAGE",
]

SCRIPTS = ("latin", "digits", "cjk")
DEFAULT_GRIDS: tuple[tuple[int, int], ...] = ((2, 2), (3, 3), (4, 4), (5, 5))

#: pip requirement that provides the CJK font.
CJK_FONT_PACKAGE = "manimgx-fonts-cjk==2026.9.26.post1"
#: Debian alternative.
CJK_FONT_APT = "fonts-noto-cjk"
#: Text is never rendered smaller than this many pixels (ink height), whatever
#: ``min_height_frac`` says: below ~10 px even full-resolution OCR cannot read it.
MIN_TEXT_PX = 10

# Letters that OCR engines confuse with digits (I, O) and the rare Q are left out.
_CONSONANTS = "BCDFGHJKLMNPRSTVWXZ"
_VOWELS = "AEUY"
_CLUSTERS = ("BR", "DR", "FR", "GR", "KR", "PR", "TR", "VR", "ZV", "BL", "KL", "PL",
             "SK", "SN", "ST", "SV", "ZN", "TS", "KS", "NK", "MP", "ND", "RT", "LV")

# Common Han characters whose glyph is the same in Simplified Chinese and Japanese,
# avoiding the simplest strokes (一 二 三 十 口 人 八 ...) that look like Latin marks.
_CJK_CHARS = (
    "山川中大小日月火水木金土本田石花白天光明王目手上下左右文生正方元友米竹年早"
    "春夏秋冬雨雪青赤林森村市学校京店食茶酒肉百千万安高新古名回海池星空羊牛犬"
    "虫玉足美音和平公西南北"
)


class FontMissingError(RuntimeError):
    """A font the scene generator needs is not installed."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Sign:
    text: str  # exact ground-truth string
    script: str  # "latin" | "digits" | "cjk"
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the rendered text (half-open)
    straddles: tuple[str, ...]  # grids ("3x3", "4x2", ...) whose tile lines cross the box
    dim: bool  # low contrast or in shadow

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        d["straddles"] = list(self.straddles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sign":
        return cls(
            text=str(d["text"]),
            script=str(d["script"]),
            box=tuple(int(v) for v in d["box"]),  # type: ignore[arg-type]
            straddles=tuple(str(s) for s in d["straddles"]),
            dim=bool(d["dim"]),
        )


@dataclass
class Scene:
    seed: int
    width: int
    height: int
    signs: list[Sign]
    image: Image.Image  # RGB
    grids: tuple[tuple[int, int], ...] = field(default=DEFAULT_GRIDS)
    blanks: list[tuple[int, int, int, int]] = field(default_factory=list)  # boards with no text (their text area)

    def ground_truth(self) -> dict[str, Any]:
        """JSON-safe ground truth: seed, size, the grids checked, and the signs."""
        return {
            "seed": self.seed,
            "size": [self.width, self.height],
            "grids": [grid_name(g) for g in self.grids],
            "signs": [s.to_dict() for s in self.signs],
        } | ({"blanks": [list(b) for b in self.blanks]} if self.blanks else {})


def scene_on_disk(folder: Path, seed: int, width: int, height: int, suffix: str = "", **options) -> dict:
    """A generated scene saved once under folder (image and ground truth), as the benchmarks use it: seed, size,
    path, truth (the ground truth's path) and signs. options: make_scene's (n_blanks, ...), named by suffix."""
    path = Path(folder) / f"scene-{seed}-{width}x{height}{suffix}.png"
    truth = path.with_suffix(".json")
    if not (path.exists() and truth.exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        scene = make_scene(seed, width, height, **options)
        scene.image.save(path, compress_level=1)
        truth.write_text(dump_ground_truth(scene.ground_truth()), encoding="utf-8")
    return {"seed": seed, "width": width, "height": height, "path": str(path), "truth": str(truth),
            "signs": signs_from_ground_truth(truth)}


def signs_from_ground_truth(gt: dict[str, Any] | str | os.PathLike) -> list[Sign]:
    """Signs back from a ``ground_truth()`` dict or a JSON file holding one."""
    if not isinstance(gt, dict):
        gt = json.loads(Path(gt).read_text(encoding="utf-8"))
    return [Sign.from_dict(d) for d in gt["signs"]]


# ------------------------------------------------------------------------ geometry


def grid_name(grid: tuple[int, int] | str) -> str:
    if isinstance(grid, str):
        return grid
    c, r = grid
    return f"{int(c)}x{int(r)}"


def _parse_grid(grid: tuple[int, int] | str) -> tuple[int, int]:
    if isinstance(grid, str):
        c, _, r = grid.lower().partition("x")
        return int(c), int(r)
    c, r = grid
    return int(c), int(r)


def grid_lines(width: int, height: int, grid: tuple[int, int] | str) -> tuple[list[int], list[int]]:
    """Interior tile lines of a C x R grid: (xs, ys), ``round(i*W/C)``, ``round(j*H/R)``."""
    c, r = _parse_grid(grid)
    xs = [round(i * width / c) for i in range(1, c)]
    ys = [round(j * height / r) for j in range(1, r)]
    return xs, ys


def straddled_grids(
    box: Sequence[int],
    width: int,
    height: int,
    grids: Iterable[tuple[int, int] | str] = DEFAULT_GRIDS,
) -> tuple[str, ...]:
    """Names ("CxR") of the grids, in the given order, with a tile line that cuts ``box``.

    ``box`` is half-open ``(x0, y0, x1, y1)``; a vertical line ``x = L`` cuts it iff
    ``x0 < L < x1`` (pixels on both sides), likewise horizontally.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    out = []
    for g in grids:
        xs, ys = grid_lines(width, height, g)
        if any(x0 < x < x1 for x in xs) or any(y0 < y < y1 for y in ys):
            out.append(grid_name(g))
    return tuple(out)


def _overlaps(a: Sequence[int], b: Sequence[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=None)
def _latin_font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise FontMissingError(
            "Pillow has no FreeType support, so its scalable default font is unavailable; "
            "install a standard Pillow wheel: pip install 'pillow>=11'"
        )
    return font


def _cjk_font_candidates() -> list[Path]:
    paths: list[Path] = []
    env = os.environ.get("MOSAIC_CJK_FONT")
    if env:
        paths.append(Path(env))
    try:
        import manimgx_fonts_cjk  # type: ignore[import-not-found]

        paths.append(Path(manimgx_fonts_cjk.__file__).with_name("NotoSansCJK-VF.otf.ttc"))
    except ImportError:
        pass
    for p in (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    ):
        paths.append(Path(p))
    return paths


@functools.lru_cache(maxsize=None)
def _cjk_font_source() -> tuple[str, int]:
    """(path, face index) of an installed Noto Sans CJK, preferring the SC face."""
    for path in _cjk_font_candidates():
        if not path.is_file():
            continue
        best = 0
        for idx in range(16):
            try:
                name = ImageFont.truetype(str(path), 20, index=idx).getname()[0] or ""
            except OSError:
                break
            if name.endswith(" SC"):
                best = idx
                break
        return str(path), best
    raise FontMissingError(
        "No CJK font found for the scene generator. Install one with "
        f"`pip install {CJK_FONT_PACKAGE}` (Noto Sans CJK, SIL OFL 1.1), or "
        f"`apt-get install {CJK_FONT_APT}`, or set MOSAIC_CJK_FONT to a .ttc/.otf path."
    )


@functools.lru_cache(maxsize=None)
def _cjk_font(size: int) -> ImageFont.FreeTypeFont:
    path, index = _cjk_font_source()
    font = ImageFont.truetype(path, size, index=index, layout_engine=ImageFont.Layout.BASIC)
    try:  # variable font: pick a sign-like medium weight (the default instance is Thin)
        axes = font.get_variation_axes()
        if axes:
            lo, hi = axes[0]["minimum"], axes[0]["maximum"]
            font.set_variation_by_axes([max(lo, min(hi, 500))])
    except OSError:
        pass  # static font
    return font


def _font(script: str, size: int) -> ImageFont.FreeTypeFont:
    return _cjk_font(size) if script == "cjk" else _latin_font(size)


def _ink_height_ratio(script: str, text: str) -> float:
    l, t, r, b = _font(script, 200).getbbox(text)
    return max(1, b - t) / 200.0


# --------------------------------------------------------------------------- texts


def _latin_word(rng: random.Random) -> str:
    n = rng.randint(5, 9)
    s = ""
    want_vowel = rng.random() < 0.3
    while len(s) < n:
        if want_vowel:
            s += rng.choice(_VOWELS)
        elif rng.random() < 0.3 and len(s) + 2 <= n:
            s += rng.choice(_CLUSTERS)
        else:
            s += rng.choice(_CONSONANTS)
        want_vowel = not want_vowel
    return s[:n]


def _digit_string(rng: random.Random) -> str:
    pattern = rng.choice(("dddd-dddd", "ddd-dddd", "dd-dddd-dddd", "0ddd-dd-dddd", "ddd-ddd-ddd"))
    out = []
    for ch in pattern:
        out.append(str(rng.randrange(10)) if ch == "d" else ch)
    return "".join(out)


def _cjk_word(rng: random.Random) -> str:
    n = rng.randint(2, 4)
    return "".join(rng.sample(_CJK_CHARS, n))


_TEXT_MAKERS = {"latin": _latin_word, "digits": _digit_string, "cjk": _cjk_word}


def _unique_texts(rng: random.Random, scripts: Sequence[str]) -> list[str]:
    texts: list[str] = []
    for script in scripts:
        for _ in range(1000):
            t = _TEXT_MAKERS[script](rng)
            if all(t not in o and o not in t for o in texts):
                texts.append(t)
                break
        else:  # pragma: no cover - astronomically unlikely
            raise RuntimeError("could not draw a unique sign text")
    return texts


# -------------------------------------------------------------------------- scenery


def _jitter(rng: random.Random, color: Sequence[int], amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c) + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _paint_street(img: Image.Image, rng: random.Random) -> None:
    W, H = img.size
    s = H / 1000.0  # scale unit: 1/1000 of the height
    d = ImageDraw.Draw(img)

    # Sky: vertical gradient, painted with numpy then pasted.
    top = np.array(_jitter(rng, (62, 118, 190), 15), dtype=np.float32)
    bot = np.array(_jitter(rng, (190, 210, 228), 12), dtype=np.float32)
    horizon = int(H * rng.uniform(0.42, 0.55))
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    column = (top * (1 - t) + bot * t).astype(np.uint8)[:, None, :]  # (h, 1, 3)
    sky = Image.fromarray(np.ascontiguousarray(column)).resize((W, horizon), Image.Resampling.NEAREST)
    img.paste(sky, (0, 0))

    # Clouds.
    for _ in range(rng.randint(3, 7)):
        cx, cy = rng.uniform(0, W), rng.uniform(0.03, 0.3) * H
        for _ in range(rng.randint(3, 6)):
            rx, ry = rng.uniform(40, 120) * s, rng.uniform(15, 40) * s
            ox, oy = rng.uniform(-100, 100) * s, rng.uniform(-15, 15) * s
            c = _jitter(rng, (236, 240, 245), 6)
            d.ellipse((cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry), fill=c)

    ground_y = int(H * rng.uniform(0.70, 0.78))

    # Far skyline (pale), then near buildings with windows.
    x = -rng.uniform(0, 60) * s
    while x < W:
        w = rng.uniform(60, 200) * s
        top_y = horizon - rng.uniform(40, 260) * s
        d.rectangle((x, top_y, x + w, ground_y), fill=_jitter(rng, (150, 160, 175), 12))
        x += w
    x = -rng.uniform(0, 100) * s
    while x < W:
        w = rng.uniform(120, 420) * s
        top_y = max(0.06 * H, horizon - rng.uniform(-60, 330) * s)
        facade = _jitter(rng, rng.choice([(150, 120, 100), (120, 125, 135), (185, 175, 155),
                                          (95, 100, 110), (170, 140, 120), (205, 200, 190)]), 18)
        d.rectangle((x, top_y, x + w, ground_y), fill=facade)
        edge = tuple(max(0, c - 35) for c in facade)
        d.rectangle((x, top_y, x + w, top_y + 6 * s), fill=edge)  # cornice
        ww, wh = rng.uniform(10, 22) * s, rng.uniform(14, 30) * s
        gx, gy = ww * rng.uniform(0.6, 1.2), wh * rng.uniform(0.5, 0.9)
        ncols = max(1, int((w - gx) // (ww + gx)))
        margin = (w - ncols * (ww + gx) + gx) / 2
        wy = top_y + 14 * s
        while wy + wh < ground_y - 40 * s:
            for i in range(ncols):
                wx = x + margin + i * (ww + gx)
                lit = rng.random() < 0.15
                wc = _jitter(rng, (235, 215, 140) if lit else (55, 70, 90), 12)
                d.rectangle((wx, wy, wx + ww, wy + wh), fill=wc)
            wy += wh + gy
        # ground-floor door / shop window
        dx = x + rng.uniform(0.1, 0.6) * w
        d.rectangle((dx, ground_y - 34 * s, dx + rng.uniform(14, 40) * s, ground_y), fill=_jitter(rng, (60, 50, 45), 10))
        x += w + rng.uniform(0, 25) * s

    # Ground: sidewalk, curb, road with lane markings.
    walk_h = rng.uniform(0.035, 0.06) * H
    d.rectangle((0, ground_y, W, ground_y + walk_h), fill=_jitter(rng, (178, 174, 166), 8))
    for px in np.arange(0, W, 30 * s):  # paving joints
        d.line((px, ground_y, px - 10 * s, ground_y + walk_h), fill=(158, 154, 147), width=max(1, int(s)))
    curb = ground_y + walk_h
    d.rectangle((0, curb, W, curb + 4 * s), fill=(205, 203, 198))
    d.rectangle((0, curb + 4 * s, W, H), fill=_jitter(rng, (78, 80, 84), 6))
    lane_y = curb + (H - curb) * rng.uniform(0.45, 0.6)
    dash = rng.uniform(50, 90) * s
    for lx in np.arange(-rng.uniform(0, dash), W, dash * 2):
        d.rectangle((lx, lane_y, lx + dash, lane_y + 4 * s), fill=(225, 222, 205))

    # Trees and poles on the sidewalk.
    for _ in range(rng.randint(2, 6)):
        tx = rng.uniform(0, W)
        th = rng.uniform(90, 200) * s
        d.rectangle((tx - 4 * s, ground_y + walk_h * 0.5 - th, tx + 4 * s, ground_y + walk_h * 0.5), fill=(80, 60, 40))
        for _ in range(5):
            rx, ry = rng.uniform(25, 55) * s, rng.uniform(25, 50) * s
            cx = tx + rng.uniform(-30, 30) * s
            cy = ground_y + walk_h * 0.5 - th + rng.uniform(-20, 30) * s
            d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_jitter(rng, (60, 110, 55), 20))
    for _ in range(rng.randint(3, 7)):
        px = rng.uniform(0, W)
        ph = rng.uniform(220, 420) * s
        base = ground_y + walk_h * 0.8
        d.rectangle((px - 2.5 * s, base - ph, px + 2.5 * s, base), fill=(52, 54, 58))
        d.rectangle((px - 2.5 * s, base - ph, px + 35 * s, base - ph + 4 * s), fill=(52, 54, 58))
        d.ellipse((px + 28 * s, base - ph, px + 42 * s, base - ph + 9 * s), fill=(240, 235, 200))

    # Vehicles on the road.
    for _ in range(rng.randint(3, 7)):
        vw, vh = rng.uniform(140, 260) * s, rng.uniform(50, 80) * s
        vx = rng.uniform(-0.05, 1.0) * W
        vy = rng.uniform(curb + 10 * s, H - vh - 20 * s)
        body = _jitter(rng, rng.choice([(180, 30, 35), (30, 60, 140), (225, 225, 225), (40, 40, 44),
                                        (200, 170, 40), (120, 125, 130)]), 15)
        d.rounded_rectangle((vx, vy + vh * 0.35, vx + vw, vy + vh), radius=10 * s, fill=body)
        d.rounded_rectangle((vx + vw * 0.18, vy, vx + vw * 0.78, vy + vh * 0.45), radius=12 * s, fill=body)
        d.rectangle((vx + vw * 0.24, vy + vh * 0.08, vx + vw * 0.72, vy + vh * 0.35), fill=(70, 90, 110))
        for wx in (vx + vw * 0.2, vx + vw * 0.8):
            r = vh * 0.2
            d.ellipse((wx - r, vy + vh - r, wx + r, vy + vh + r), fill=(25, 25, 25))


def _finish(arr: np.ndarray, nrng: np.random.Generator, sigma: float) -> np.ndarray:
    """Low-frequency shading plus per-pixel sensor noise, in row bands (bounded memory)."""
    H, W, _ = arr.shape
    field_small = nrng.normal(1.0, 0.05, size=(6, 8)).astype(np.float32)
    shade = np.asarray(
        Image.fromarray(field_small, mode="F").resize((W, H), Image.Resampling.BICUBIC), dtype=np.float32
    )
    out = np.empty_like(arr)
    band = 256
    for y in range(0, H, band):
        sl = slice(y, min(H, y + band))
        chunk = arr[sl].astype(np.float32) * shade[sl, :, None]
        chunk += nrng.standard_normal(size=chunk.shape, dtype=np.float32) * sigma
        np.clip(chunk, 0, 255, out=chunk)
        out[sl] = chunk.astype(np.uint8)
    return out


# ---------------------------------------------------------------------------- signs

# (board, text) colour pairs with strong contrast.
_PAIRS = (
    ((250, 250, 245), (20, 20, 25)),
    ((20, 70, 150), (250, 250, 250)),
    ((20, 110, 60), (250, 250, 250)),
    ((190, 30, 35), (255, 255, 250)),
    ((245, 200, 30), (15, 15, 15)),
    ((25, 25, 30), (245, 240, 220)),
)


@dataclass
class _Plan:
    text: str
    script: str
    size: int
    ink: tuple[int, int, int, int]  # getbbox at origin
    w: int
    h: int
    dim: bool
    straddle: bool
    dim_mode: str = ""  # "", "contrast", "shadow" or "both"


def _plan_signs(
    rng: random.Random, W: int, H: int, n: int, min_frac: float, max_frac: float,
    straddle_frac: float, dim_frac: float,
) -> list[_Plan]:
    n_latin = round(n * 0.4)
    n_cjk = round(n * 0.3)
    scripts = ["latin"] * n_latin + ["cjk"] * n_cjk + ["digits"] * (n - n_latin - n_cjk)
    rng.shuffle(scripts)
    texts = _unique_texts(rng, scripts)
    n_straddle = round(n * straddle_frac)
    n_dim = round(n * dim_frac)
    straddle_ix = set(rng.sample(range(n), n_straddle))
    dim_ix = set(rng.sample(range(n), n_dim))
    plans = []
    lo, hi = min_frac * H, max_frac * H
    for i, (script, text) in enumerate(zip(scripts, texts)):
        # log-uniform height: as many small signs as large ones per octave
        target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        target = max(float(MIN_TEXT_PX), target)
        size = max(6, round(target / _ink_height_ratio(script, text)))
        ink = _font(script, size).getbbox(text)
        dim_mode = ""
        if i in dim_ix:
            u = rng.random()
            dim_mode = "contrast" if u < 0.45 else "shadow" if u < 0.85 else "both"
        plans.append(_Plan(text, script, size, ink, ink[2] - ink[0], ink[3] - ink[1],
                           i in dim_ix, i in straddle_ix, dim_mode))
    return plans


def _reserve(box: Sequence[int], h: int) -> tuple[int, int, int, int]:
    """Board plus a clear margin around the text box, used for non-overlap."""
    px, py = max(3, round(0.45 * h)), max(3, round(0.4 * h))
    m = max(2, round(0.3 * h))
    return (box[0] - px - m, box[1] - py - m, box[2] + px + m, box[3] + py + m)


def _place(
    rng: random.Random, plan: _Plan, W: int, H: int, grids: Sequence[tuple[int, int]],
    taken: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int]:
    y_lo, y_hi = int(0.06 * H), int(0.97 * H)

    def fits(box: tuple[int, int, int, int]) -> bool:
        r = _reserve(box, plan.h)
        if r[0] < 0 or r[1] < y_lo or r[2] > W or r[3] > y_hi:
            return False
        return not any(_overlaps(r, t) for t in taken)

    fallback = None
    for attempt in range(4000):
        if plan.straddle and grids:
            g = rng.choice(list(grids))
            xs, ys = grid_lines(W, H, g)
            vertical = bool(xs) and (not ys or rng.random() < 0.5)
            if vertical:
                L = rng.choice(xs)
                x0 = L - plan.w // 2
                y0 = rng.randint(y_lo, max(y_lo, y_hi - plan.h))
            else:
                L = rng.choice(ys)
                y0 = L - plan.h // 2
                x0 = rng.randint(0, max(0, W - plan.w))
            box = (x0, y0, x0 + plan.w, y0 + plan.h)
            if fits(box) and straddled_grids(box, W, H, grids):
                return box
        else:
            x0 = rng.randint(0, max(0, W - plan.w))
            y0 = rng.randint(y_lo, max(y_lo, y_hi - plan.h))
            box = (x0, y0, x0 + plan.w, y0 + plan.h)
            if fits(box):
                if not straddled_grids(box, W, H, grids):
                    return box
                if fallback is None:
                    fallback = box
                if attempt >= 300:  # no clean spot found quickly: accept a cut one
                    return fallback
    if fallback is not None:
        return fallback
    raise ValueError(
        f"could not place sign {plan.text!r} ({plan.w}x{plan.h} px) in a {W}x{H} scene; "
        "use fewer signs or smaller max_height_frac"
    )


def _draw_board(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], h: int, bg: tuple[int, int, int]) -> None:
    """A sign board (with its shadow and border) around a text box of height h."""
    px, py = max(3, round(0.45 * h)), max(3, round(0.4 * h))
    board = (box[0] - px, box[1] - py, box[2] + px - 1, box[3] + py - 1)
    sh = max(1, round(0.12 * h))
    d.rectangle((board[0] + sh, board[1] + sh, board[2] + sh, board[3] + sh), fill=(35, 35, 38))
    border = tuple(max(0, c - 60) for c in bg) if sum(bg) > 300 else tuple(min(255, c + 70) for c in bg)
    d.rectangle(board, fill=bg, outline=border, width=max(1, round(0.08 * h)))


def _draw_sign(img: Image.Image, rng: random.Random, plan: _Plan, box: tuple[int, int, int, int]) -> None:
    d = ImageDraw.Draw(img)
    bg, fg = rng.choice(_PAIRS)
    if plan.dim_mode in ("contrast", "both"):
        # Low contrast: text colour moved most of the way towards the board colour.
        k = rng.uniform(0.55, 0.7)
        fg = tuple(round(b + (f - b) * (1 - k)) for b, f in zip(bg, fg))
    _draw_board(d, box, plan.h, bg)
    font = _font(plan.script, plan.size)
    d.text((box[0] - plan.ink[0], box[1] - plan.ink[1]), plan.text, font=font, fill=fg)


def _shade(arr: np.ndarray, rng: random.Random, box: Sequence[int], h: int) -> None:
    """Cast a soft-edged shadow over a sign (in place)."""
    H, W, _ = arr.shape
    m = round(rng.uniform(1.0, 2.5) * h)
    x0, y0 = max(0, box[0] - m), max(0, box[1] - m)
    x1, y1 = min(W, box[2] + m), min(H, box[3] + m)
    factor = rng.uniform(0.35, 0.5)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    # Soft edges all round, and a slanted top edge cast by something above; the
    # slant stays inside the margin so the whole text lies in the dark part.
    feather = max(1.0, 0.3 * m)
    border = np.minimum.reduce([xx - x0, x1 - 1 - xx, yy - y0, y1 - 1 - yy])
    u = (xx - x0) / max(1, x1 - x0)
    top = (u if rng.random() < 0.5 else 1.0 - u) * 0.6 * m
    soft = np.clip(np.minimum(border, yy - y0 - top) / feather, 0.0, 1.0)
    mult = 1.0 - (1.0 - factor) * soft
    region = arr[y0:y1, x0:x1].astype(np.float32) * mult[:, :, None]
    arr[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- scene


def make_scene(
    seed: int,
    width: int = 4000,
    height: int = 3000,
    n_signs: int = 24,
    straddle_grids: Sequence[tuple[int, int]] = DEFAULT_GRIDS,
    min_height_frac: float = 0.005,
    max_height_frac: float = 0.02,
    *,
    straddle_frac: float = 1 / 3,
    dim_frac: float = 0.25,
    noise: float = 3.0,
    n_blanks: int = 0,
) -> Scene:
    """Paint a street scene with ``n_signs`` small signs and return it with ground truth.

    Sign text ink height is log-uniform in ``[min_height_frac, max_height_frac] * height``
    (never under ``MIN_TEXT_PX``).  ``round(n_signs * straddle_frac)`` signs are centred on
    a tile line of one of ``straddle_grids``; ``round(n_signs * dim_frac)`` are dim. ``n_blanks`` sign boards
    carry no text at all (Scene.blanks): a model that reads something there invents it.
    """
    if width < 64 or height < 64:
        raise ValueError("scene must be at least 64x64")
    if not 0 < min_height_frac <= max_height_frac:
        raise ValueError("need 0 < min_height_frac <= max_height_frac")
    if n_signs < 0:
        raise ValueError("n_signs must be >= 0")
    grids = tuple(_parse_grid(g) for g in straddle_grids)
    rng = random.Random(seed)
    nrng = np.random.Generator(np.random.PCG64(seed))

    img = Image.new("RGB", (width, height), (128, 128, 128))
    _paint_street(img, rng)

    plans = _plan_signs(rng, width, height, n_signs, min_height_frac, max_height_frac,
                        straddle_frac, dim_frac)
    # Place the big ones first: they are the hardest to fit.
    order = sorted(range(len(plans)), key=lambda i: -(plans[i].w * plans[i].h))
    boxes: dict[int, tuple[int, int, int, int]] = {}
    taken: list[tuple[int, int, int, int]] = []
    for i in order:
        box = _place(rng, plans[i], width, height, grids, taken)
        boxes[i] = box
        taken.append(_reserve(box, plans[i].h))

    shadowed = []
    for i, p in enumerate(plans):
        _draw_sign(img, rng, p, boxes[i])
        if p.dim_mode in ("shadow", "both"):
            shadowed.append(i)
    blanks = _blank_boards(img, rng, n_blanks, width, height, min_height_frac, max_height_frac, taken)

    arr = np.asarray(img).copy()
    for i in shadowed:
        _shade(arr, rng, boxes[i], plans[i].h)
    arr = _finish(arr, nrng, noise)
    image = Image.fromarray(arr, mode="RGB")

    signs = [
        Sign(
            text=p.text,
            script=p.script,
            box=boxes[i],
            straddles=straddled_grids(boxes[i], width, height, grids),
            dim=p.dim,
        )
        for i, p in enumerate(plans)
    ]
    return Scene(seed=seed, width=width, height=height, signs=signs, image=image, grids=grids, blanks=blanks)


def _blank_boards(img: Image.Image, rng: random.Random, n: int, W: int, H: int, min_frac: float, max_frac: float,
                  taken: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """n sign boards with no text (plain coloured rectangles, sized like the signs' boards), where nothing else is;
    the box of each is where its text would be. Drawn after the signs, so a scene without them is unchanged."""
    boxes = []
    for _ in range(n):
        h = max(MIN_TEXT_PX, round(math.exp(rng.uniform(math.log(min_frac * H), math.log(max_frac * H)))))
        plan = _Plan("", "latin", 0, (0, 0, 0, 0), round(h * rng.uniform(3, 7)), h, False, False)
        box = _place(rng, plan, W, H, (), taken)
        taken.append(_reserve(box, h))
        _draw_board(ImageDraw.Draw(img), box, h, rng.choice(_PAIRS)[0])
        boxes.append(box)
    return boxes


# ------------------------------------------------------------------------ scene sets

_SETS: dict[str, tuple[tuple[int, int], ...]] = {
    # 2 small scenes, for tests.
    "smoke": ((1200, 900), (900, 1200)),
    # Modest in total pixels (~42 MP), for a 2-core benchmark run.
    "standard": ((4000, 3000), (3000, 4000), (8000, 2000), (1732, 1155)),
    # Everything, including a 24 MP and a 50 MP frame.
    "full": ((4000, 3000), (3000, 4000), (8000, 2000), (1732, 1155), (6000, 4000), (8660, 5773)),
}


def scene_set(kind: str = "standard", seed: int = 0) -> list[tuple[int, int, int]]:
    """(seed, width, height) specs of a named set; scene seeds are ``seed * 100 + index``.

    kinds: ``smoke`` (2 small scenes), ``standard`` (4:3 landscape 4000x3000, portrait
    3000x4000, 4:1 panorama 8000x2000, a 2 MP 1732x1155), ``full`` (standard plus
    6000x4000 and a 50 MP 8660x5773).
    """
    try:
        sizes = _SETS[kind]
    except KeyError:
        raise ValueError(f"unknown scene set {kind!r}; choose from {sorted(_SETS)}") from None
    return [(seed * 100 + i, w, h) for i, (w, h) in enumerate(sizes)]


# ------------------------------------------------------------------------------ CLI


def dump_ground_truth(gt: dict[str, Any]) -> str:
    """JSON text of a ground-truth dict, one sign per line (diff-friendly)."""
    head = {k: v for k, v in gt.items() if k != "signs"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    signs = [json.dumps(d, ensure_ascii=False) for d in gt.get("signs", [])]
    lines.append(' "signs": [')
    lines.extend(f"  {t}," for t in signs[:-1])
    if signs:
        lines.append(f"  {signs[-1]}")
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def make_photo(path: Path, size=(1200, 800), mode="RGB", fmt=None, **save) -> Path:
    """A photo with texture everywhere, so no tile or seam is blank (blank views are not asked anything)."""
    noise = np.random.default_rng(size[0] * 7 + size[1]).integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(noise + np.array([60, 90, 120], dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for i in range(0, size[0], 97):
        draw.rectangle((i, size[1] // 3, i + 60, size[1] // 3 + 80), fill=(200, 180 - i % 50, 40))
    img = img.convert(mode) if mode != "RGB" else img
    img.save(path, format=fmt, **save)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write one benchmark scene (JPEG/PNG) and its ground truth JSON.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", default="3000x2000", help="WIDTHxHEIGHT")
    ap.add_argument("--signs", type=int, default=16)
    ap.add_argument("--out", required=True, help="image path (.jpg or .png); JSON is written beside it")
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    scene = make_scene(a.seed, w, h, n_signs=a.signs)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".jpg", ".jpeg"):
        scene.image.save(out, quality=a.quality, optimize=True, subsampling=0)
    else:
        scene.image.save(out)
    gt = scene.ground_truth()
    gt["generator"] = (
        f"python -m testkit.scenes --seed {a.seed} --size {w}x{h} --signs {a.signs} "
        f"--out {out.name}" + (f" --quality {a.quality}" if out.suffix.lower() in (".jpg", ".jpeg") else "")
    )
    out.with_suffix(".json").write_text(dump_ground_truth(gt), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes) and {out.with_suffix('.json')}: {len(scene.signs)} signs")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
