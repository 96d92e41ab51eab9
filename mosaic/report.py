"""Writing a run's report folder: report.json, report.md and overview.jpg (the photo with the grid drawn on it)."""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .html_report import crop_jpeg, reading_crops, render_comparison_html, render_report_html
from .images import shrink
from .memo import BlobStore, write_atomically
from .pipeline import reading_groups, reading_line, status_of
from .readings import hull
from .schema import ComparedReading, Comparison, FinalReport, Plan, Reading

OVERVIEW_PX = 1600


def write_report(report: FinalReport, plan: Plan, blobs: BlobStore, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    report.report_dir = str(folder)
    write_atomically(folder / "report.json", report.model_dump_json(indent=2).encode())
    write_atomically(folder / "report.md", render_markdown(report).encode())
    overview = overview_jpeg(plan, blobs, report.readings)
    write_atomically(folder / "overview.jpg", overview)
    crops = reading_crops(plan, blobs, report.readings)
    write_atomically(folder / "report.html", render_report_html(report, overview, crops).encode())
    return folder


def render_markdown(report: FinalReport, overview: str = "overview.jpg", message: str = "") -> str:
    """report.md, and the review artifact in Prefect's UI (there the overview is inline, as a data URL, and message
    says how to retry)."""
    calls = report.calls
    lines = [
        f"# Mosaic review: {Path(report.image).name}",
        "",
        f"- Model: `{report.model}`" + (f" at {report.api_base}" if report.api_base else ""),
        f"- Grid: {report.grid} ({report.density}), phases: {', '.join(report.phases)}",
        f"- Calls: {calls.total} answered ({calls.made} made, {calls.cached} from the memo, "
        f"{calls.failed} failed) of {calls.planned} planned; {report.elapsed_s:.1f} s",
    ]
    if report.settings:
        lines += settings_lines(report)
    if report.report_dir:
        lines.append(f"- Report folder: `{Path(report.report_dir).resolve()}` (report.html: open it with `mosaic open "
                     "FOLDER`; report.md, report.json, overview.jpg)")
    if not report.complete:
        failed = f"tiles {', '.join(report.failed_tiles)}" if report.failed_tiles else "the final review"
        lines.append(f"- **Incomplete**: {failed} failed after retries; {message or 'run the same command again to finish.'}")
    lines += [f"- Note: {n}" for n in report.notes]
    lines += ["", f"![the photo with the grid: tile r1c1 is top left]({overview})", ""]
    lines += readings_section(report)
    lines += ["## Review", "", report.review or "_(not written: the run is incomplete)_", "", "## Orientation", "",
              report.orientation, "", "## Tiles", ""]
    for tile in report.tiles:
        lines.append(f"### {tile.tile} — pixels {list(tile.box)}")
        lines.append("")
        lines.append(tile.report)
        if tile.readings:
            lines.append("")
            lines += [reading_line(r) + f" [{', '.join(r.views)}]" for r in tile.readings]
        lines.append("")
    return "\n".join(lines)


def address_without_secrets(address: str) -> str:
    """A server address as a report may show it: no user, password or query (where API keys hide)."""
    from urllib.parse import urlsplit, urlunsplit

    def one(url: str) -> str:
        parts = urlsplit(url.strip())
        return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""), parts.path, "", "")) \
            if parts.hostname else url.strip()

    return ",".join(one(url) for url in address.split(","))


def settings_lines(report: FinalReport) -> list[str]:
    """Which settings made this report: the command that makes it again, and the knobs that are not options."""
    s = report.settings
    command = f"mosaic run {shlex.quote(str(Path(report.image).resolve()))} --model {shlex.quote(s['model'])}"
    command += (f" --api-base {shlex.quote(address_without_secrets(s['api_base']))}" if s.get("api_base") else "")
    command += f" --grid {s['grid']}"
    command += f" --phases {','.join(s['phases'])}" + ("" if s.get("second_look") else " --no-second-look")
    command += "" if s.get("memo", True) else " --no-cache"
    look = s.get("second_look")
    knobs = [f"second look at most {look['calls_cap']} calls ({look['max_share']:g} of the first wave), crops sent at "
             f"{look['zoom_px']} px" if look else "no second look",
             f"structured output {'asked' if s.get('structured_output') else 'off'}",
             f"temperature {s.get('temperature')}", f"max tokens {s.get('max_tokens')}"]
    knobs += [f"num_ctx {s['num_ctx']}"] if s.get("num_ctx") and "ollama" in s["model"] else []
    knobs += [f"{s.get('concurrency')} calls at once", "memo " + ("on" if s.get("memo", True) else "off")]
    return [f"- Made by: `{command}`", f"- Settings: {'; '.join(knobs)}"]


def readings_section(report: FinalReport) -> list[str]:
    """The readings, confirmed ones, then unconfirmed ones, then those probably not in the image, each with its
    tiles, the views that read it and (when not confirmed) why, numbered as on the overview picture."""
    number = {id(r): n for n, r in enumerate(report.readings, 1)}
    # a bullet with the number in it, not an ordered list: Markdown renumbers those from their first number
    line = lambda r: f"- **{number[id(r)]}.**" + reading_line(r)[1:] + f" [{', '.join(r.views)}]"  # noqa: E731
    on = (report.settings.get("witnesses") or {}).get("on")
    witnesses = (f"witnesses asked: {', '.join(on)}" if on else "no independent witness was asked: two views "
                 "reading the same text confirm it") if on is not None else "witnesses not recorded"
    lines = ["## Readings", "", f"Numbers are those of the boxes on the picture; {witnesses}.", ""]
    for title, group in reading_groups(report.readings):
        lines += [f"**{title}** ({len(group)}):", ""] + ([line(r) for r in group] or ["- none"]) + [""]
    return lines


GRID_RGB = (255, 230, 0)  # the tile grid and its labels
GRID_ALPHA = 110  # the grid is translucent: text it crosses stays readable through it
LABEL_BG = (0, 0, 0, 150)  # behind a tile's label, translucent too
CONFIRMED_RGB = (40, 220, 60)  # a confirmed reading's box
UNCONFIRMED_RGB = (255, 140, 0)  # a reading no independent witness confirmed
ABSENT_RGB = (150, 150, 150)  # a reading probably not in the image (no text where it was read)


def overview_jpeg(plan: Plan, blobs: BlobStore, readings: Sequence[Reading] = ()) -> bytes:
    """The photo with the tile grid drawn and each tile labelled, so a finding can be traced to its tile, and a box
    round each reading that says where it lies: green when confirmed, orange when not, numbered 1, 2, … in the order
    of readings (the report's order). Readings without a box get no mark."""
    base = Image.open(io.BytesIO(blobs.get(plan.overview_sha256))).convert("RGB")
    base = shrink(base, OVERVIEW_PX) if max(base.size) > OVERVIEW_PX else base
    if max(base.size) < 800:  # a small photo still gets legible labels
        factor = 800 / max(base.size)
        base = base.resize((round(base.width * factor), round(base.height * factor)), Image.Resampling.LANCZOS)
    sx, sy = base.width / plan.width, base.height / plan.height
    _draw_grid(base, plan, sx, sy)
    _draw_readings(base, readings, plan, sx, sy)
    buf = io.BytesIO()
    # as a PNG this photo took ~150 ms and ~1.4 MB per run; as a JPEG ~3 ms and ~150 KB
    base.save(buf, format="JPEG", quality=90, subsampling=0)
    return buf.getvalue()


def _draw_grid(base: Image.Image, plan: Plan, sx: float, sy: float) -> None:
    """Thin translucent lines between tiles and a label in each tile's top left corner, blended into base in place.
    Only the lines' and labels' own pixels are blended (pasting a whole-photo overlay would double the time)."""
    width = max(1, base.width // 800)
    across: set[tuple[int, int, int, int]] = set()  # boxes (x0, y0, x1, y1), x1 and y1 excluded
    down: set[tuple[int, int, int, int]] = set()
    for view in plan.tiles:
        x0, y0, x1, y1 = (round(view.box[0] * sx), round(view.box[1] * sy), round(view.box[2] * sx),
                          round(view.box[3] * sy))
        # Only a tile's left and top edges: its neighbour draws the others, and the photo's edges need no line.
        if x0 > 0:
            down.add((x0 - width // 2, y0, x0 - width // 2 + width, y1))
        if y0 > 0:
            across.add((x0, y0 - width // 2, x1, y0 - width // 2 + width))
    for x0, y0, x1, y1 in across:
        base.paste(GRID_RGB, (x0, y0, x1, y1), Image.new("L", (x1 - x0, y1 - y0), GRID_ALPHA))
    for x0, y0, x1, y1 in down:  # where a line across was blended already, not again: crossings are no darker
        mask = Image.new("L", (x1 - x0, y1 - y0), GRID_ALPHA)
        holes = ImageDraw.Draw(mask)
        for ax0, ay0, ax1, ay1 in across:
            if ax0 < x1 and x0 < ax1 and ay0 < y1 and y0 < ay1:
                holes.rectangle((max(ax0, x0) - x0, max(ay0, y0) - y0, min(ax1, x1) - 1 - x0, min(ay1, y1) - 1 - y0),
                                fill=0)
        base.paste(GRID_RGB, (x0, y0, x1, y1), mask)
    draw = ImageDraw.Draw(base)
    font = ImageFont.load_default(size=max(12, base.height // 30))
    for view in plan.tiles:
        tx, ty = round(view.box[0] * sx) + 6, round(view.box[1] * sy) + 6
        left, top, right, bottom = draw.textbbox((tx, ty), view.id, font=font)
        back = (max(0, left - 4), max(0, top - 3), min(base.width, right + 5), min(base.height, bottom + 4))
        base.paste(LABEL_BG[:3], back, Image.new("L", (back[2] - back[0], back[3] - back[1]), LABEL_BG[3]))
        draw.text((tx, ty), view.id, fill=GRID_RGB, font=font)


def _draw_readings(base: Image.Image, readings: Sequence[Reading], plan: Plan, sx: float, sy: float) -> None:
    """A box outline just outside each reading's box (so it hides none of the text) and its number just above it."""
    draw = ImageDraw.Draw(base)
    font = ImageFont.load_default(size=max(11, base.height // 45))
    width = max(2, base.width // 500)
    labels: list[tuple[str, tuple[int, int, int, int], tuple[int, int, int]]] = []
    for number, reading in enumerate(readings, 1):
        if reading.box is None:
            continue
        (x0, x1), (y0, y1) = sorted(reading.box[0::2]), sorted(reading.box[1::2])
        x0, x1 = max(0, min(x0, plan.width)), max(0, min(x1, plan.width))
        y0, y1 = max(0, min(y0, plan.height)), max(0, min(y1, plan.height))
        if x1 <= x0 or y1 <= y0:  # nothing of it inside the image
            continue
        outline = (max(0, round(x0 * sx) - width), max(0, round(y0 * sy) - width),
                   min(base.width - 1, round(x1 * sx) - 1 + width), min(base.height - 1, round(y1 * sy) - 1 + width))
        colour = {"confirmed": CONFIRMED_RGB, "probably_absent": ABSENT_RGB}.get(status_of(reading), UNCONFIRMED_RGB)
        draw.rectangle(outline, outline=colour, width=width)
        labels.append((str(number), outline, colour))
    for text, (ox0, oy0, ox1, oy1), colour in labels:  # after every box, so no box crosses a number
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 6, bottom - top + 4
        if oy0 - h >= 0:  # just above the box
            y = oy0 - h
        elif oy1 + 1 + h <= base.height:  # the box is at the top of the photo: just below it
            y = oy1 + 1
        else:  # the box fills the photo's height: inside its top edge
            y = oy0
        x = max(0, min(ox0, base.width - w))
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=colour)
        draw.text((x + 3 - left, y + 2 - top), text, fill=(0, 0, 0), font=font)



# --- a comparison of models ----------------------------------------------------------------------------------

HARD_SPOT_PX = 480  # long side of a hard spot's crop in comparison.md


def rewrite_readings(report: FinalReport, image: Image.Image) -> None:
    """A finished report's report.json, report.md and report.html written again with its readings as now judged (the
    other models of a comparison as witnesses); overview.jpg stays, the crops are cut from the photo (`image`)."""
    folder = Path(report.report_dir or "")
    if not (folder / "report.json").is_file():
        return
    tiles = {t.tile: t.box for t in report.tiles}
    places = {i: r.box or hull(tiles[t] for t in r.tiles if t in tiles) for i, r in enumerate(report.readings)}
    crops = {i: crop_jpeg(image, box) for i, box in places.items() if box}
    overview = folder / "overview.jpg"
    write_atomically(folder / "report.json", report.model_dump_json(indent=2).encode())
    write_atomically(folder / "report.md", render_markdown(report).encode())
    write_atomically(folder / "report.html",
                     render_report_html(report, overview.read_bytes() if overview.is_file() else b"", crops).encode())


def write_comparison(comparison: Comparison, folder: Path, witnessed: Sequence[FinalReport] = ()) -> Path:
    """comparison.json, comparison.md, comparison.html and a crop of every hard spot (where the models read a sign
    differently); each model's report written again with the other models as witnesses (`witnessed`)."""
    from .images import load_image
    from .tiles import cell_label, parse_grid, tile_boxes

    hard = [r for r in comparison.readings if r.hard]
    image = load_image(comparison.image).image if witnessed or hard else None  # decoded once for every crop
    for report in witnessed:
        rewrite_readings(report, image)
    folder.mkdir(parents=True, exist_ok=True)
    comparison.comparison_dir = str(folder)
    crops: dict[int, str] = {}
    jpegs: dict[int, bytes] = {}  # by id() of the hard spot's row
    if hard:
        cols, rows = parse_grid(comparison.grid)
        tiles = {cell_label(cell): b for cell, b in tile_boxes(image.width, image.height, cols, rows).items()}
        (folder / "hard-spots").mkdir(exist_ok=True)
        for n, reading in enumerate(hard, 1):
            box = reading.box or hull(tiles[t] for t in reading.tiles if t in tiles) or (0, 0, *image.size)
            name = f"hard-spots/{n:02d}.jpg"
            jpegs[id(reading)] = crop_jpeg(image, box, HARD_SPOT_PX)
            write_atomically(folder / name, jpegs[id(reading)])
            crops[n] = name
    write_atomically(folder / "comparison.json", comparison.model_dump_json(indent=2).encode())
    write_atomically(folder / "comparison.md", render_comparison(comparison, crops).encode())
    write_atomically(folder / "comparison.html",
                     render_comparison_html(comparison, lambda r: jpegs.get(id(r))).encode())
    return folder


def render_comparison(comparison: Comparison, crops: dict[int, str] | None = None) -> str:
    """comparison.md: the models and their runs, then where they disagree (with a crop), what one model alone read,
    and what they agree on."""
    crops = crops or {}
    labels = [m.label for m in comparison.models if m.state == "completed"]
    lines = [f"# Mosaic comparison: {Path(comparison.image).name}", "",
             f"- Image: {comparison.size[0]}×{comparison.size[1]}, grid {comparison.grid} ({comparison.density}) for "
             f"every model, phases: {', '.join(comparison.phases)}",
             f"- Signs: {comparison.counts.get('readings', 0)}; models disagree on {comparison.counts.get('hard_spots', 0)}, "
             f"one model alone read {comparison.counts.get('single', 0)}, all agree on {comparison.counts.get('exact', 0)}; "
             f"{comparison.counts.get('confirmed', 0)} confirmed "
             f"({comparison.counts.get('confirmed_by_models_only', 0)} by the models' agreement alone); "
             f"{comparison.counts.get('probably_absent', 0)} probably not in the image (no witness found text where "
             "the models read it)", "",
             "| model | family | state | readings | calls (made, from the memo) | time | report |",
             "|---|---|---|---|---|---|---|"]
    for m in comparison.models:
        calls = f"{m.calls.total} ({m.calls.made}, {m.calls.cached})" if m.calls else "—"
        when = f"{m.elapsed_s:.1f} s" if m.elapsed_s is not None else "—"
        where = f"`{m.report_dir}`" if m.report_dir else "—"
        state = m.state if m.state == "completed" else f"**{m.state}**: {_cell(m.error or '')}"
        lines.append(f"| `{m.label}` | {m.family} | {state} | {m.readings} | {calls} | {when} | {where} |")
    if comparison.missing:
        lines += ["", "**Missing from the comparison**: " + ", ".join(f"`{m.label}`" for m in comparison.missing)
                  + ": its readings are not in the rows below."]
    hard = [r for r in comparison.readings if r.hard]
    lines += ["", f"## Hard spots: the models read these differently ({len(hard)})", "",
              "Look at the crop: where independent readers disagree the image is hard there.", ""]
    for n, r in enumerate(hard, 1):
        lines.append(f"### {n}. {', '.join(r.tiles)} — {r.agreement}" + (" (confirmed: " + _who(r) + ")" if r.confirmed else ""))
        lines.append("")
        if n in crops:
            lines += [f"![hard spot {n}]({crops[n]})", ""]
        lines += ["| model | read |", "|---|---|"]
        lines += [f"| `{label}` | {_cell(r.by_model.get(label)) if r.by_model.get(label) else '_nothing_'} |"
                  for label in labels]
        lines.append("")
    single = [r for r in comparison.readings if r.agreement == "single"]
    lines += [f"## Read by one model only ({len(single)})", "", "| text | model | tiles | confirmed in its own views |",
              "|---|---|---|---|"]
    lines += [f"| {_cell(r.text)} | `{next(k for k, v in r.by_model.items() if v)}` | {', '.join(r.tiles)} | "
              f"{'yes' if r.confirmed else 'no, probably not in the image' if r.probably_absent else 'no'} |"
              for r in single]
    agreed = [r for r in comparison.readings if r.agreement == "exact"]
    lines += ["", f"## Read alike by every model that read it ({len(agreed)})", "", "| text | models | tiles | note |",
              "|---|---|---|---|"]
    lines += [f"| {_cell(r.text)} | {', '.join(f'`{m}`' for m in r.agreed)} | {', '.join(r.tiles)} | "
              f"{_agreed_note(r)} |" for r in agreed]
    return "\n".join(lines) + "\n"


def _agreed_note(r: ComparedReading) -> str:
    if r.probably_absent:
        return "probably not in the image: no witness found text where the models read it (a habit they share)"
    return "one family: weaker evidence" if r.same_family else ""


def _who(r: ComparedReading) -> str:
    parts = []
    if r.agreed:
        parts.append(", ".join(f"`{m}`" for m in r.agreed) + (" (one family)" if r.same_family else ""))
    if r.confirmed_in_views:
        parts.append("own views of " + ", ".join(f"`{m}`" for m in r.confirmed_in_views))
    return "; ".join(parts)


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")
