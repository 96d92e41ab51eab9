"""report.html and comparison.html: one self-contained page each (pictures inline as data URLs, CSS and a few lines of
script in the page, nothing fetched), so they open offline and from a mail attachment.

The review page: the photo with the grid and a numbered box where each reading lies (hover or click: its crop, the
views that read it; click a tile: its report), the readings table (confirmed first), the review, the orientation,
each tile's characteristics, the run's numbers."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from .images import shrink
from .memo import BlobStore
from .pipeline import status_of
from .readings import hull
from .schema import Comparison, ComparedReading, FinalReport, Plan, Reading, View
from .tiles import Box

CROP_PX = 360  # long side of a reading's crop on the page

STYLE = """
:root { --ok: #1e9e3a; --check: #e07800; --ink: #1d2430; --soft: #5d6b7e; --line: #d9dee6; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "IPAGothic", sans-serif; color: var(--ink);
       margin: 0; background: #f6f7f9; }
header, main > section { max-width: 1400px; margin: 0 auto; padding: 12px 20px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 18px 0 8px; }
.numbers { color: var(--soft); margin: 0; } .numbers b { color: var(--ink); }
.layout { display: grid; grid-template-columns: minmax(0, 3fr) minmax(280px, 1fr); gap: 16px; align-items: start; }
.photo { position: relative; line-height: 0; border: 1px solid var(--line); background: #fff; }
.photo img { width: 100%; height: auto; display: block; }
.photo a { position: absolute; display: block; }
.photo a.tile { z-index: 1; } .photo a.tile:hover { background: rgba(255, 230, 0, .12); }
.photo a.box { z-index: 2; border: 2px solid transparent; }
.photo a.box:hover, .photo a.box.shown { border-color: #000; box-shadow: 0 0 0 2px #fff; }
.photo a.pin { z-index: 2; width: 14px; height: 14px; margin: 4px; border-radius: 7px; background: var(--check);
               border: 2px solid #fff; }
.photo a.pin.confirmed { background: var(--ok); }
#detail { position: sticky; top: 10px; background: #fff; border: 1px solid var(--line); padding: 10px 12px;
          min-height: 120px; }
.panel { display: none; } .panel.shown, .panel:target { display: block; }
#detail .hint { color: var(--soft); }
.panel img { max-width: 100%; height: auto; border: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr.confirmed td.state { color: var(--ok); font-weight: 600; } tr.unconfirmed td.state { color: var(--check); }
tr.probably_absent td.state, tr.probably_absent td.text { color: var(--soft); text-decoration: line-through; }
tr[data-reading] { cursor: pointer; } tr[data-reading]:hover { background: #fffbe0; }
.tag { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; background: #eef1f5; }
.tag.ok { background: #d9f2de; } .tag.check { background: #fde7cc; } .tag.absent { background: #e4e4e4; }
pre.text { white-space: pre-wrap; font: inherit; background: #fff; border: 1px solid var(--line); padding: 10px; }
@media (max-width: 900px) { .layout { grid-template-columns: 1fr; } #detail { position: static; } }
"""

# Hover or click on a box, a pin or a table row shows that reading's panel; a tile shows its report.
SCRIPT = """
function show(id) {
  document.querySelectorAll('.panel.shown, a.shown').forEach(function (e) { e.classList.remove('shown'); });
  var panel = document.getElementById(id);
  if (!panel) return;
  panel.classList.add('shown');
  document.querySelectorAll('a[href="#' + id + '"]').forEach(function (e) { e.classList.add('shown'); });
  var hint = document.getElementById('hint'); if (hint) hint.style.display = 'none';
}
document.querySelectorAll('[data-show]').forEach(function (e) {
  if (e.classList.contains('box') || e.classList.contains('pin')) {
    e.addEventListener('mouseenter', function () { show(e.dataset.show); });
  }
  e.addEventListener('click', function (ev) { ev.preventDefault(); show(e.dataset.show); });
});
// report.html#reading-3 or report.html?show=tile-r1c2 opens with that panel shown
var wanted = new URLSearchParams(location.search).get('show') || location.hash.slice(1);
if (wanted) show(wanted);
var overview = document.getElementById('overview');  // its decoded width, on the page: the picture loaded
function measured() { document.body.dataset.overviewPx = overview.naturalWidth; }
if (overview) { if (overview.complete) measured(); else overview.addEventListener('load', measured); }
"""


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def crop_jpeg(image: Image.Image, box: Box, px: int = CROP_PX) -> bytes:
    """The box with room round it (its own size again on each side, at least 40 px), at most px on its long side."""
    x0, y0, x1, y1 = box
    mx, my = max(40, x1 - x0), max(40, y1 - y0)
    crop = image.crop((max(0, x0 - mx), max(0, y0 - my), min(image.width, x1 + mx), min(image.height, y1 + my)))
    out = io.BytesIO()
    shrink(crop, px).save(out, "JPEG", quality=88)
    return out.getvalue()


def reading_crops(plan: Plan, blobs: BlobStore, readings: Sequence[Reading]) -> dict[int, bytes]:
    """A crop of every reading (by its index), cut from the smallest stored view that holds its box (or its tiles):
    the views are already at hand, so a rerun decodes no photo."""
    opened: dict[str, Image.Image] = {}
    tiles = {t.id: t.box for t in plan.tiles}
    crops = {}
    for i, r in enumerate(readings):
        box = r.box or hull(tiles[t] for t in r.tiles if t in tiles)
        view = _smallest_view_holding(plan.views, box) if box else None
        if view is None:
            continue
        if view.image_sha256 not in opened:
            try:
                opened[view.image_sha256] = Image.open(io.BytesIO(blobs.get(view.image_sha256))).convert("RGB")
            except (OSError, KeyError, FileNotFoundError):
                continue
        image = opened[view.image_sha256]
        vx0, vy0, vx1, vy1 = view.box
        sx, sy = image.width / max(1, vx1 - vx0), image.height / max(1, vy1 - vy0)
        crops[i] = crop_jpeg(image, (round((box[0] - vx0) * sx), round((box[1] - vy0) * sy),
                                     round((box[2] - vx0) * sx), round((box[3] - vy0) * sy)))
    return crops


def _smallest_view_holding(views: Sequence[View], box: Box) -> View | None:
    def holds(v: View) -> bool:
        return v.box[0] <= box[0] and v.box[1] <= box[1] and v.box[2] >= box[2] and v.box[3] >= box[3]

    holding = [v for v in views if holds(v)]
    if not holding:  # a box past every view (a tile line's corner): the tile view its centre lies in
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        holding = [v for v in views if v.kind == "tile" and v.box[0] <= cx < v.box[2] and v.box[1] <= cy < v.box[3]]
    return min(holding, key=lambda v: (v.box[2] - v.box[0]) * (v.box[3] - v.box[1]), default=None)


# --- the review page -----------------------------------------------------------------------------------------

def e(text: object) -> str:
    return html.escape("" if text is None else str(text))


def _pct(box: Box, width: int, height: int) -> str:
    x0, y0, x1, y1 = box
    return (f"left:{100 * x0 / width:.3f}%;top:{100 * y0 / height:.3f}%;"
            f"width:{100 * (x1 - x0) / width:.3f}%;height:{100 * (y1 - y0) / height:.3f}%")


TAGS = {"confirmed": ("ok", "confirmed"), "unconfirmed": ("check", "not confirmed: check it in the picture"),
        "probably_absent": ("absent", "probably not in the image")}


def witness_lines(r: Reading) -> str:
    """What each witness independent of the model said about a reading."""
    w = r.witnesses
    if w is None:
        return ""
    said = []
    if w.detector:
        said.append("detector: " + ("text-like detail here" if w.detector == "text" else "no text here"))
    if w.reader:
        said.append(f"reader ({w.reader.name}): " + (f"“{w.reader.text}”" + (" (agrees)" if w.reader.agrees else
                                                                                 " (reads it differently)")
                                                      if w.reader.text else "reads nothing here"))
    if w.models:
        said += [f"{m}: " + (f"“{t}”" if t else "read nothing here") for m, t in w.models.items()]
    return "".join(f"<p>{e(line)}</p>" for line in said)


def render_report_html(report: FinalReport, overview: bytes, crops: dict[int, bytes]) -> str:
    """The review page. overview: the photo with grid and numbered boxes (report.overview_jpeg); crops: a JPEG per
    reading index (reading_crops)."""
    width, height = report.size
    tiles = {t.tile: t for t in report.tiles}
    calls = report.calls
    marks, panels, rows = [], [], []
    for n, r in enumerate(report.readings, 1):
        state = status_of(r)
        rid = f"reading-{n}"
        title = e(f"{n}. {r.text}")
        if r.box:
            marks.append(f'<a class="box {state}" href="#{rid}" data-show="{rid}" data-reading="{n}" title="{title}" '
                         f'style="{_pct(r.box, width, height)}"></a>')
        else:  # no box: a pin in the corner of its first tile
            tile = tiles.get(r.tiles[0]) if r.tiles else None
            if tile:
                x0, y0 = tile.box[0], tile.box[1]
                marks.append(f'<a class="pin {state}" href="#{rid}" data-show="{rid}" data-reading="{n}" '
                             f'title="{title}" style="left:{100 * x0 / width:.3f}%;top:{100 * y0 / height:.3f}%;'
                             f'transform:translate({18 * (n % 6)}px, 22px)"></a>')
        crop = crops.get(n - 1)
        panels.append(
            f'<section class="panel" id="{rid}" data-reading-panel="{n}"><h3>{n}. {e(r.text)}</h3>'
            + (f'<img alt="crop of reading {n}" src="{data_url(crop)}">' if crop else "")
            + f'<p><span class="tag {TAGS[state][0]}">{TAGS[state][1]}</span>'
            + (" <span class=tag>unclear</span>" if r.unclear else "") + "</p>"
            + (f"<p>Romanized: {e(r.romanized)}</p>" if r.romanized else "")
            + (f"<p>Translation: {e(r.translation)}</p>" if r.translation else "")
            + f"<p>Tiles: {e(', '.join(r.tiles) or '?')}" + (" (on a tile line)" if r.on_tile_line else "") + "</p>"
            + (f"<p>Why: {e(r.reason)}</p>" if r.reason else "")
            + f"<p>Read in {len(r.views)} view(s) of the model: {e(', '.join(r.views))}</p>"
            + witness_lines(r)
            + (f"<p>Also read as: {e(', '.join(r.variants))}</p>" if r.variants else "")
            + (f"<p>Box: pixels {list(r.box)}</p>" if r.box else "") + "</section>")
        rows.append(
            f'<tr class="{state}" data-reading="{n}" data-show="{rid}"><td>{n}</td><td class="text">{e(r.text)}</td>'
            f"<td>{e(r.romanized)}</td><td>{e(r.translation)}</td><td>{e(', '.join(r.tiles))}</td>"
            f'<td class="state">{TAGS[state][1]}</td><td>{e(r.reason)}</td><td>{e(", ".join(r.variants))}</td>'
            f"<td>{e(', '.join(r.views))}</td></tr>")
    for t in report.tiles:
        tid = f"tile-{t.tile}"
        marks.append(f'<a class="tile" href="#{tid}" data-show="{tid}" title="tile {t.tile}" '
                     f'style="{_pct(t.box, width, height)}"></a>')
        panels.append(
            f'<section class="panel" id="{tid}"><h3>Tile {t.tile}</h3><p>Pixels {list(t.box)}</p>'
            f'<pre class="text">{e(t.report)}</pre>'
            + (f"<p>Readings: {e('; '.join(r.text for r in t.readings))}</p>" if t.readings else "")
            + (f"<p>Subjects: {e('; '.join(t.subjects))}</p>" if t.subjects else "")
            + (f"<p>Characteristics: {e(t.characteristics)}</p>" if t.characteristics else "") + "</section>")
    confirmed = sum(1 for r in report.readings if r.confirmed)
    numbers = (f"<b>{len(report.readings)}</b> readings, <b>{confirmed}</b> confirmed · grid {e(report.grid)} "
               f"({e(report.density)}), phases {e(', '.join(report.phases))} · <b>{calls.total}</b> calls "
               f"({calls.made} made, {calls.cached} from the memo, {calls.second_look} for the second look, "
               f"{calls.failed} failed) · {report.elapsed_s:.1f} s · model <code>{e(report.model)}</code>"
               + (f" at <code>{e(report.api_base)}</code>" if report.api_base else ""))
    characteristics = "".join(f"<tr><td>{e(t.tile)}</td><td>{e(t.characteristics)}</td></tr>"
                              for t in report.tiles if t.characteristics)
    body = f"""
<header><h1>Mosaic review: {e(Path(report.image).name)}</h1><p class="numbers" id="numbers">{numbers}</p>
{"" if report.complete else '<p><b>Incomplete</b>: tiles ' + e(', '.join(report.failed_tiles)) + ' failed.</p>'}</header>
<main>
<section class="layout"><div class="photo" id="photo"><img id="overview" alt="the photo with the grid and a box
where each reading lies" src="{data_url(overview)}">{"".join(marks)}</div>
<aside id="detail"><p class="hint" id="hint">Point at a box on the photo (or a row below) to see what was read there;
click a tile for its report. Green: confirmed (a witness independent of the model read the same text there);
orange: check it.</p>{"".join(panels)}</aside>
</section>
<section><h2>Readings ({len(report.readings)}: confirmed, then unconfirmed, then probably not in the image)</h2>
<table id="readings"><thead><tr><th>#</th><th>text</th><th>romanized</th><th>translation</th><th>tiles</th>
<th>status</th><th>why</th><th>variants</th><th>views</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>
<section><h2>Review</h2><pre class="text" id="review">{e(report.review or "(not written: the run is incomplete)")}</pre>
<h2>Orientation</h2><pre class="text">{e(report.orientation)}</pre>
{"<h2>Characteristics</h2><table><tr><th>tile</th><th>characteristics</th></tr>" + characteristics + "</table>"
 if characteristics else ""}</section>
</main>"""
    return page(f"Mosaic review: {Path(report.image).name}", body)


def page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{e(title)}</title><style>{STYLE}</style></head>'
            f"<body>{body}<script>{SCRIPT}</script></body></html>\n")


# --- the comparison page -------------------------------------------------------------------------------------

def render_comparison_html(comparison: Comparison, crops: Callable[[ComparedReading], bytes | None]) -> str:
    """Models side by side, one row per sign, where they disagree first, each hard spot with its crop."""
    done = [m for m in comparison.models if m.state == "completed"]
    head = "".join(f"<th>{e(m.label)}</th>" for m in done)
    models = "".join(
        f"<tr><td><code>{e(m.label)}</code></td><td>{e(m.family)}</td><td>{e(m.state)}"
        + (f": {e(m.error)}" if m.error else "") + f"</td><td>{m.readings}</td><td>"
        + (f"{m.calls.total} ({m.calls.made} made, {m.calls.cached} from the memo)" if m.calls else "–")
        + f"</td><td>{'' if m.elapsed_s is None else f'{m.elapsed_s:.1f} s'}</td><td>"
        + (f'<a href="{e(Path(m.report_dir).resolve().as_uri())}/report.html">report</a>' if m.report_dir else "")
        + "</td></tr>" for m in comparison.models)
    rows = []
    for n, r in enumerate(comparison.readings, 1):
        crop = crops(r) if r.hard else None
        cells = "".join(f"<td>{e(r.by_model.get(m.label)) if r.by_model.get(m.label) else '<i>nothing</i>'}</td>"
                        for m in done)
        note = (("confirmed" + (" (one family: weaker)" if r.same_family else "")) if r.confirmed else
                "probably not in the image: no witness found text there" if r.probably_absent else "")
        rows.append(f'<tr class="{r.agreement}" data-agreement="{r.agreement}"><td>{n}</td>'
                    f"<td>{e(r.agreement)}</td><td>{e(', '.join(r.tiles))}</td>{cells}<td>{e(note)}</td><td>"
                    + (f'<img alt="hard spot {n}" src="{data_url(crop)}">' if crop else "") + "</td></tr>")
    c = comparison.counts
    body = f"""
<header><h1>Mosaic comparison: {e(Path(comparison.image).name)}</h1>
<p class="numbers">{comparison.size[0]}×{comparison.size[1]}, grid {e(comparison.grid)} ({e(comparison.density)}) for
every model · <b>{c.get('readings', 0)}</b> signs: <b>{c.get('hard_spots', 0)}</b> read differently,
{c.get('single', 0)} by one model only, {c.get('exact', 0)} alike · {c.get('confirmed', 0)} confirmed</p></header>
<main><section><h2>Models</h2><table><tr><th>model</th><th>family</th><th>state</th><th>readings</th><th>calls</th>
<th>time</th><th>report</th></tr>{models}</table></section>
<section><h2>Signs, where the models disagree first</h2><table id="signs"><thead><tr><th>#</th><th>agreement</th>
<th>tiles</th>{head}<th>confirmed</th><th>crop</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section></main>"""
    return page(f"Mosaic comparison: {Path(comparison.image).name}", body)
