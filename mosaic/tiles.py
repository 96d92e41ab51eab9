"""Tile geometry: pure functions of sizes and grid shapes, returning boxes (x0, y0, x1, y1), end-exclusive."""

from __future__ import annotations

import math
import re

from .backend import budget_in_name

Box = tuple[int, int, int, int]
Cell = tuple[int, int]  # (col, row), 0-based

DENSITY_SIDE = {"quick": 2, "light": 3, "dense": 4, "max": 5}
DENSITIES = (*DENSITY_SIDE, "auto")
MIN_TILE_PX = 64


def cell_label(cell: Cell) -> str:
    """r1c1 is the top-left tile."""
    col, row = cell
    return f"r{row + 1}c{col + 1}"


def parse_grid(text: str) -> tuple[int, int]:
    """'4x2' -> (4 columns, 2 rows)."""
    m = re.fullmatch(r"\s*(\d{1,2})\s*[x×X*]\s*(\d{1,2})\s*", text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"invalid grid {text!r}: use COLSxROWS, e.g. 3x3 or 4x2 (1 to 99 each)")
    return int(m.group(1)), int(m.group(2))


def grid_for_density(width: int, height: int, density: str) -> tuple[int, int]:
    """Columns and rows for a density, shaped to the aspect ratio so tiles stay close to square.

    The density's n×n sets the tile budget; rows = sqrt(n²·H/W) rounded down or up, whichever gives squarer
    tiles, and as many columns as the budget allows (a 2:1 photo at light: 4×2, as in the blog)."""
    side = DENSITY_SIDE[density]
    budget = side * side
    ideal_rows = math.sqrt(budget * height / width)
    best: tuple[float, int, int, int] | None = None
    for rows in {max(1, math.floor(ideal_rows)), max(1, math.ceil(ideal_rows))}:
        rows = min(rows, budget)
        cols = max(1, budget // rows)
        skew = abs(math.log((width / cols) / (height / rows)))
        candidate = (round(skew, 9), -cols * rows, cols, rows)
        best = candidate if best is None or candidate < best else best
    assert best is not None
    return best[2], best[3]


def model_billions(model: str) -> float | None:
    """The parameter count a model's name states ('qwen2.5vl:7b' -> 7.0, 'gemma-3-27b-it' -> 27.0)."""
    name = model.lower().split("/")[-1]
    found = re.findall(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z])", re.sub(r"[-_:]", " ", name))
    return float(found[-1]) if found else None


def auto_density(width: int, height: int, model: str, input_px: int | None) -> str:
    """Blog rule by model size (under 3B quick, up to ~10B light, 20B and up dense), then no finer than the
    model's input size can use: tiles much smaller than what the encoder sees add calls and no detail.

    Never max: it has more tile corners and seams for text to fall on, and read no more than dense at any
    encoder size in the benchmark (docs/benchmark.md) for 1.6× the calls; max stays an explicit choice."""
    billions = model_billions(model)
    if billions is None and input_px:
        wanted = "dense"  # size unknown, encoder known: the input size alone decides (below)
    elif billions is None:
        wanted = "light"
    elif billions < 3:
        wanted = "quick"
    elif billions < 20:
        wanted = "light"
    else:
        wanted = "dense"
    if input_px:
        for density in ("quick", "light", "dense", "max"):
            cols, rows = grid_for_density(width, height, density)
            if max(width / cols, height / rows) <= input_px * 1.5:
                finest_useful = density
                break
        else:
            finest_useful = "max"
        order = list(DENSITY_SIDE)
        if order.index(finest_useful) < order.index(wanted):
            wanted = finest_useful
    return wanted


def split_points(length: int, parts: int) -> list[int]:
    return [round(i * length / parts) for i in range(parts + 1)]


def tile_boxes(width: int, height: int, cols: int, rows: int) -> dict[Cell, Box]:
    """Row-major tiles covering the image exactly, no overlap."""
    xs, ys = split_points(width, cols), split_points(height, rows)
    return {(c, r): (xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)}


def neighbor_pairs(cols: int, rows: int) -> list[tuple[Cell, Cell]]:
    """Each pair of tiles sharing an edge, once: (left, right) and (top, bottom)."""
    pairs: list[tuple[Cell, Cell]] = []
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                pairs.append(((c, r), (c + 1, r)))
            if r + 1 < rows:
                pairs.append(((c, r), (c, r + 1)))
    return pairs


# How far past its tiles' top and bottom a seam crop on a vertical tile line reaches, in tile heights.
CORNER_REACH = 1 / 6


def seam_box(a: Box, b: Box, image_height: int | None = None) -> Box:
    """A window one tile wide, centred on the edge two neighbouring tiles share.

    Anything that crosses that edge and is shorter than a tile reads whole in it. Given the image height, a window
    on a vertical line also reaches CORNER_REACH of a tile's height past the tiles' top and bottom: text is short
    in that direction, so a sign on a point where four tiles meet (cut in all four tiles and in the window on the
    horizontal line) reads whole there; on tiles at least 4:3 wide the window is still no longer than a tile is wide."""
    if a[2] == b[0] and (a[1], a[3]) == (b[1], b[3]):  # b is right of a
        half = ((a[2] - a[0]) + (b[2] - b[0])) // 4
        reach = round((a[3] - a[1]) * CORNER_REACH) if image_height else 0
        return (max(a[0], a[2] - half), max(0, a[1] - reach), min(b[2], a[2] + half),
                min(image_height or a[3], a[3] + reach))
    if a[3] == b[1] and (a[0], a[2]) == (b[0], b[2]):  # b is below a
        half = ((a[3] - a[1]) + (b[3] - b[1])) // 4
        return (a[0], max(a[1], a[3] - half), a[2], min(b[3], a[3] + half))
    raise ValueError(f"tiles {a} and {b} do not share an edge")


def check_grid_fits(width: int, height: int, cols: int, rows: int, min_px: int = MIN_TILE_PX) -> None:
    tw, th = width // cols, height // rows
    if tw < min_px or th < min_px:
        raise ValueError(
            f"the image ({width}×{height}) is too small for a {cols}×{rows} grid: it needs at least "
            f"{cols * min_px}×{rows * min_px} px (tiles of {min_px} px); choose a coarser --grid, or leave --grid out"
        )


def fit_grid(width: int, height: int, cols: int, rows: int, min_px: int = MIN_TILE_PX) -> tuple[int, int]:
    """The grid, made coarser until tiles are at least min_px (used by automatic choices, never by --grid)."""
    return max(1, min(cols, width // min_px)), max(1, min(rows, height // min_px))


def coarsened_note(width: int, height: int, density: str, cols: int, rows: int) -> str | None:
    """One line when a named density's grid was made coarser to fit a small image (choose_grid), else None."""
    if density not in DENSITY_SIDE or grid_for_density(width, height, density) == (cols, rows):
        return None
    wanted = "×".join(map(str, grid_for_density(width, height, density)))
    return (f"the image ({width}×{height}) is too small for {density}'s {wanted} grid (tiles under {MIN_TILE_PX} px): "
            f"reviewed as {cols}×{rows}")


# Long side each model's image encoder works at, where known. The offline reader's is its budget.
KNOWN_INPUT_PX = {
    "gemma3": 896, "gemma-3": 896, "qwen2.5vl": 1024, "qwen2.5-vl": 1024, "qwen2-vl": 1024, "qwen3-vl": 1024,
    "llava": 336, "llava-phi3": 336, "bakllava": 336, "moondream": 378, "minicpm-v": 448, "internvl": 448,
    "llama3.2-vision": 560, "granite3.2-vision": 384, "smolvlm": 512, "pixtral": 1024, "mistral-small3.1": 1024,
}


def input_px_for(model: str, offline_budget: int | None = None, stated: int | None = None,
                 reported: int | None = None) -> int | None:
    """The model's encoder size: as stated by the user, else the in-process offline reader's budget
    (offline_budget, None for other backends), else as a served offline reader names it, else as the backend
    reported it, else from the table."""
    if stated:
        return stated
    if offline_budget:
        return offline_budget
    name = model.lower()
    if budget_in_name(name):
        return budget_in_name(name)
    if reported:
        return reported
    family = name.split("/")[-1]
    matches = [px for key, px in KNOWN_INPUT_PX.items() if family.startswith(key)]
    return matches[0] if matches else None


def choose_grid(width: int, height: int, density: str, grid: str | None, model: str,
                input_px: int | None = None) -> tuple[int, int, str]:
    """(cols, rows, density label). --grid wins, or is an error when it leaves tiles under MIN_TILE_PX; a density's
    grid is made coarser (down to 1×1) to fit a small image (coarsened_note says so); under MIN_TILE_PX a side is
    an error."""
    if width < MIN_TILE_PX or height < MIN_TILE_PX:
        raise ValueError(f"the image ({width}×{height}) is too small: Mosaic needs at least {MIN_TILE_PX} px on each side")
    if grid:
        cols, rows = parse_grid(grid)
        check_grid_fits(width, height, cols, rows)
        return cols, rows, "custom"
    if density not in DENSITIES:
        raise ValueError(f"invalid density {density!r}: choose one of {', '.join(DENSITIES)}")
    if density == "auto":
        chosen = auto_density(width, height, model, input_px)
        cols, rows = fit_grid(width, height, *grid_for_density(width, height, chosen))
        return cols, rows, f"auto:{chosen}"
    cols, rows = fit_grid(width, height, *grid_for_density(width, height, density))
    return cols, rows, density
