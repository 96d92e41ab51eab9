"""Turn the benchmark's results (docs/bench/run-*.json, system.json) into docs/benchmark.md and PNG plots.

    python -m bench.report            # rewrite the page and plots from the committed results

Plots are drawn with Pillow (no plotting dependency)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
COLORS = {"one-shot": (120, 120, 120), "grid": (230, 140, 30), "sahi": (200, 60, 60), "blog": (140, 90, 200),
          "mosaic": (30, 110, 200), "mosaic-inspect": (40, 170, 170), "mosaic-auto": (20, 150, 60),
          "mosaic-text": (90, 90, 200)}


def load(out_dir: Path) -> tuple[list[dict], dict]:
    runs = [json.loads(p.read_text()) for p in sorted(out_dir.glob("run-*.json"))]
    runs.sort(key=lambda r: -(r.get("budget") or 10**6))
    system = json.loads((out_dir / "system.json").read_text()) if (out_dir / "system.json").exists() else {}
    return runs, system


# ------------------------------------------------------------------------------------------------ targets

def method(run: dict, name: str) -> dict | None:
    return next((m for m in run["methods"] if m["method"] == name), None)


def best_density(run: dict) -> dict | None:
    """The Mosaic density (all phases) with the highest report recall; fewer calls break a tie."""
    ms = [m for m in run["methods"] if m["family"] == "mosaic"]
    return max(ms, key=lambda m: (m["recall_report"] or 0, -m["calls"])) if ms else None


def blog_comparison(run: dict) -> list[dict]:
    """For each blog-design run: the cheapest Mosaic run (any variant) that reads at least as much."""
    out = []
    mosaic = [m for m in run["methods"] if m["family"].startswith("mosaic")]
    for blog in (m for m in run["methods"] if m["family"] == "blog"):
        ok = [m for m in mosaic if (m["recall_report"] or 0) >= (blog["recall_report"] or 0)]
        if ok:
            best = min(ok, key=lambda m: m["calls"])
            out.append({"blog": blog["method"], "blog_calls": blog["calls"], "blog_recall": blog["recall_report"],
                        "mosaic": best["method"], "mosaic_calls": best["calls"], "mosaic_recall": best["recall_report"],
                        "ratio": round(best["calls"] / blog["calls"], 3)})
        else:
            out.append({"blog": blog["method"], "blog_calls": blog["calls"], "blog_recall": blog["recall_report"],
                        "mosaic": None, "ratio": None})
    return out


def targets(runs: list[dict], system: dict) -> list[dict]:
    t = []

    def add(name, measured, goal, ok, note=""):
        t.append({"target": name, "measured": measured, "goal": goal,
                  "met": None if ok is None else bool(ok), "note": note})

    for run in runs:
        b = run.get("budget")
        label = run["label"]
        light = method(run, "mosaic light")
        if b and b >= 600 and light:
            add(f"{label}: Mosaic light, recall overall", light["recall_report"], "≥ 0.95", light["recall_report"] >= 0.95)
            add(f"{label}: Mosaic light, recall straddling a tile line", light["recall_straddling"], "≥ 0.95",
                (light["recall_straddling"] or 0) >= 0.95)
        best = best_density(run)
        if b and b < 600 and best:
            add(f"{label}: Mosaic best density ({best['method']}), recall overall", best["recall_report"], "≥ 0.92",
                best["recall_report"] >= 0.92)
        auto = method(run, "mosaic auto")
        if auto and best:
            share = round((auto["recall_report"] or 0) / (best["recall_report"] or 1), 3)
            add(f"{label}: --density auto vs best density", f"{share} of {best['method']}'s recall, "
                f"{auto['calls']} vs {best['calls']} calls", "≥ 0.95, no more calls",
                share >= 0.95 and auto["calls"] <= best["calls"])
        ratios = [(m["method"], round((m["recall_review"] or 0) / m["recall_report"], 3))
                  for m in run["methods"] if m["family"].startswith("mosaic") and m["recall_report"]]
        if ratios:
            worst = min(ratios, key=lambda x: x[1])
            add(f"{label}: final review keeps the report's readings (worst method)", f"{worst[1]} ({worst[0]})",
                "≥ 0.95", worst[1] >= 0.95)
        comp = [c for c in blog_comparison(run) if c["ratio"] is not None]
        if comp:
            worst = max(comp, key=lambda c: c["ratio"])
            add(f"{label}: calls at equal recall vs the blog design (worst pair)",
                f"{worst['ratio']} ({worst['mosaic']} {worst['mosaic_calls']} vs {worst['blog']} {worst['blog_calls']})",
                "≤ 0.60", worst["ratio"] <= 0.60)
        if "memo_rerun" in run:
            m = run["memo_rerun"]
            add(f"{label}: fully memoized rerun", f"{m['rerun_made']} calls made, {m['share']} of the first run's time "
                f"({m['rerun_wall_s']} s vs {m['first_wall_s']} s)", "0 calls, ≤ 0.10",
                m["rerun_made"] == 0 and m["share"] <= 0.10)
    s = system.get("scheduling")
    if s:
        add(f"busy span vs lower bound, L={s['latency_s']} s, C={s['slots']}, `--concurrency {s.get('concurrency', s['slots'])}` (median of 3 runs)",
            f"{s['span_over_bound']} ({s['busy_span_s']} s vs {s['lower_bound_s']} s)", "≤ 1.15", s["span_over_bound"] <= 1.15)
        add(f"orchestration overhead share of the L={s['latency_s']} s run (instant backend, per call)",
            f"{s['overhead_share']} ({s['overhead_per_call_ms']} ms per call)", "≤ 0.05", s["overhead_share"] <= 0.05)
    if system.get("memory"):
        m = system["memory"]
        add("peak RSS of prepare on a 100-MP image / decoded size", f"{m['peak_over_decoded']} ({m['peak_rss_mb']} MB vs "
            f"{m['decoded_mb']} MB decoded)", "< 4", m["peak_over_decoded"] < 4)
    return t


# -------------------------------------------------------------------------------------------------- plots

def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def plot_recall_vs_calls(run: dict, path: Path) -> None:
    W, H, L, R, T, B = 1200, 900, 80, 220, 50, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    f, fs = _font(16), _font(13)
    ms = [m for m in run["methods"]]
    per_scene = [m["calls_per_scene"] for m in ms]
    xmax = 10 ** math.ceil(math.log10(max(per_scene) * 1.1))
    xmin = 1

    def X(c):
        return L + (W - L - R) * math.log10(max(c, xmin) / xmin) / math.log10(xmax / xmin)

    def Y(r):
        return H - B - (H - T - B) * r

    d.text((L, 12), f"Recall of sign texts against calls per scene - {run['label']}", fill="black", font=f)
    for r in (0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0):
        d.line((L, Y(r), W - R, Y(r)), fill=(225, 225, 225))
        d.text((L - 40, Y(r) - 8), f"{r:.1f}", fill="black", font=fs)
    c = 1
    while c <= xmax:
        for k in (1, 2, 5):
            if c * k <= xmax:
                d.line((X(c * k), T, X(c * k), H - B), fill=(235, 235, 235))
                d.text((X(c * k) - 6, H - B + 6), str(c * k), fill="black", font=fs)
        c *= 10
    d.rectangle((L, T, W - R, H - B), outline="black")
    d.text((L + (W - L - R) / 2 - 80, H - 30), "calls per scene (log scale)", fill="black", font=fs)
    fams: dict[str, list[dict]] = {}
    placed: list[tuple[float, float, str, tuple]] = []
    for m in ms:
        fams.setdefault(m["family"], []).append(m)
    for fam, group in fams.items():
        col = COLORS.get(fam, (0, 0, 0))
        pts = sorted((X(m["calls_per_scene"]), Y(m["recall_report"] or 0), m) for m in group)
        if fam in ("mosaic", "blog", "mosaic-inspect") and len(pts) > 1:
            d.line([(x, y) for x, y, _ in pts], fill=col, width=2)
        for x, y, m in pts:
            d.ellipse((x - 5, y - 5, x + 5, y + 5), fill=col)
            placed.append((x, y, m["method"].replace(" +20%", ""), col))
    placed.sort(key=lambda p: (p[1], p[0]))
    taken: list[tuple[float, float]] = []
    for x, y, text, col in placed:  # labels nudged down until they clear the ones already placed
        ly = y - 16
        while any(abs(ly - ty) < 15 and abs(x - tx) < 120 for tx, ty in taken):
            ly += 15
        taken.append((x, ly))
        if abs(ly - (y - 16)) > 1:
            d.line((x, y, x + 7, ly + 8), fill=col)
        d.text((x + 8, ly), text, fill=col, font=fs)
    for i, (fam, col) in enumerate((k, v) for k, v in COLORS.items() if k in fams):
        y = T + 10 + i * 22
        d.ellipse((W - R + 20, y, W - R + 30, y + 10), fill=col)
        d.text((W - R + 38, y - 3), fam, fill="black", font=fs)
    img.save(path, optimize=True)


def plot_misses(runs: list[tuple[str, dict]], scenes: list[dict], path: Path) -> None:
    """Where the signs are, per scene: read (green dot) or missed (red cross), with the method's tile lines."""
    cell_h, pad = 170, 16
    widths = [int(cell_h * s["size"][0] / s["size"][1]) for s in scenes]
    W = sum(widths) + pad * (len(scenes) + 1) + 160
    H = (cell_h + pad * 2 + 10) * len(runs) + 20
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    fs = _font(13)
    for row, (title, m) in enumerate(runs):
        y0 = 10 + row * (cell_h + pad * 2 + 10)
        d.text((pad, y0), title, fill="black", font=fs)
        x0 = pad
        for sc, w, grid in zip(scenes, widths, m["grids"]):
            top = y0 + pad + 4
            d.rectangle((x0, top, x0 + w, top + cell_h), outline=(120, 120, 120), fill=(248, 248, 248))
            if grid:
                cols, rows = (int(v) for v in grid.split("x"))
                for i in range(1, cols):
                    d.line((x0 + w * i / cols, top, x0 + w * i / cols, top + cell_h), fill=(190, 190, 230))
                for j in range(1, rows):
                    d.line((x0, top + cell_h * j / rows, x0 + w, top + cell_h * j / rows), fill=(190, 190, 230))
            for p in (p for p in m["points"] if p["seed"] == sc["seed"]):
                px, py = x0 + p["x"] * w, top + p["y"] * cell_h
                if p["report"]:
                    d.ellipse((px - 3, py - 3, px + 3, py + 3), fill=(40, 160, 60))
                else:
                    d.line((px - 5, py - 5, px + 5, py + 5), fill=(210, 30, 30), width=2)
                    d.line((px - 5, py + 5, px + 5, py - 5), fill=(210, 30, 30), width=2)
            x0 += w + pad
        read = sum(p["report"] for p in m["points"])
        d.text((x0 + 4, y0 + pad + cell_h / 2), f"{read}/{len(m['points'])} read", fill="black", font=fs)
    img.save(path, optimize=True)


# --------------------------------------------------------------------------------------------------- page

def _f(v, nd=2):
    if v is None:
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def table(run: dict) -> list[str]:
    lines = ["| method | grid | calls / scene | recall (report) | recall (review) | straddling | smallest third | CJK | dim | "
             "readings not in image | backend calls made | wall s | backend s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in run["methods"]:
        grids = ", ".join(dict.fromkeys(g or "whole" for g in m["grids"]))
        lines.append(
            f"| {m['method']} | {grids} | {m['calls_per_scene']} | {_f(m['recall_report'])} | {_f(m['recall_review'])} | "
            f"{_f(m['recall_straddling'])} ({m['straddling_n']}) | {_f(m['recall_smallest_third'])} | {_f(m['recall_cjk'])} | "
            f"{_f(m['recall_dim'])} | {m['invented']} of {m['readings']} | {_f(m['made'])} | {_f(m['wall_s'], 1)} | "
            f"{_f(m['backend_s'], 1)} |")
    return lines


def write_all(out_dir: Path, md_path: Path) -> None:
    out_dir, md_path = Path(out_dir), Path(md_path)
    runs, system = load(out_dir)
    if not runs:
        return
    for run in runs:
        plot_recall_vs_calls(run, out_dir / f"recall-vs-calls-{run.get('budget') or 'model'}.png")
    miss_rows = []
    for run in runs:
        light = method(run, "mosaic light")
        best = best_density(run)
        for m in dict.fromkeys(x["method"] for x in (light, best) if x):
            miss_rows.append((f"{method(run, m)['method']} - {run['label']}", method(run, m)))
    scenes = runs[0]["scenes"]
    plot_misses(miss_rows, scenes, out_dir / "misses.png")
    md_path.write_text(page(runs, system, out_dir, md_path), encoding="utf-8")


def page(runs: list[dict], system: dict, out_dir: Path, md_path: Path) -> str:
    rel = Path(os.path.relpath(out_dir, md_path.parent))  # the plots, as the page links them
    first = runs[0]
    n_signs = sum(s["signs"] for s in first["scenes"])
    sizes = ", ".join(f"{s['size'][0]}×{s['size'][1]}" for s in first["scenes"])
    L = ["# Detail-recall benchmark", "",
         "What Mosaic finds and what it costs, against its peers, on generated street scenes whose small signs are "
         "known exactly (`testkit/scenes.py`). Regenerate everything on this page (figures, plots) with:", "",
         "```sh", f"{first['command']} --cold      # ~40 min on 2 cores; the memo makes a rerun take minutes",
         "python -m bench.run --budgets 448 --skip scheduling,memory,memo   # one budget only",
         "python -m bench.report                           # this page from docs/bench/*.json", "```", "",
         "Against your own backend (what Mosaic gains with your model): "
         "`python -m bench.run --model openai/<name> --api-base http://127.0.0.1:8080/v1` "
         "(or `--model ollama_chat/qwen2.5vl:7b`; add `--input-px 896` for a model Mosaic's size table lacks). Its "
         "results and page go to `./bench-results/`. Backend time is then not measured (wall time only).", "",
         f"**Scenes**: the `standard` set, seed 0 (not tuned): {sizes}; {n_signs} signs in all, 24 per scene: Latin "
         "pseudo-words, phone-like digit strings, CJK words; text 0.5–2% of the image height (never under 10 px); a third "
         "centred on a tile line of a 2×2…5×5 grid; a quarter dim (low contrast, shadow or both).", "",
         "**Backend**: the built-in offline reader (RapidOCR on each image shrunk to the budget, standing in for a small "
         "VLM's encoder), called in process through Mosaic's call seam, the product's own path (`--model offline:<px>`). "
         "Mosaic runs through `mosaic_flows.review.run_review` (Prefect, concurrency 2); peers call `mosaic.llm.call_model` with "
         "Mosaic's own text question on crops cut in `bench/baselines.py`, the same budget and the same 1280-px crop cap. "
         "Each method has its own memo and a new reader (an empty OCR cache) through `MOSAIC_COMPLETION`, so each pays for "
         "its own reading.", "",
         "**Scoring** (`testkit/score.py`): text normalised by removing whitespace and casefolding; a sign counts as read "
         "if its text appears in the report (review, merged readings and tile readings) — the *review* column looks at "
         "the final review only. *Straddling*: signs cut by the method's own tile lines (one-shot: by any grid; count in "
         "brackets). *Smallest third*: the third of signs with the smallest text height relative to the image. "
         "*Readings not in the image*: readings that equal no sign text, are no piece of one and hold none "
         "(a hallucination proxy; OCR fragments of scenery count here). Peers have no review: both columns are "
         "their readings.", "",
         "**Methods**: *one-shot*: the whole image, one call. *grid CxR*: tiles alone. *sahi CxR +20%*: CxR slices with "
         "20% overlap, edge slices kept full size, plus the whole image (SAHI's default). *blog D*: the blog's design at "
         "density D — each tile alone and each neighbour pair (both tiles in one image) asked from both sides, "
         "1 + T + 2P + T + 1 calls (the two calls of a pair see the same pixels, so one reading stands for both). "
         "*mosaic D*: Mosaic at density D with the three phases (text, subjects, characteristics); *inspect*: one "
         "all-in-one call per view; *auto*: `--density auto`. Mosaic's views: every tile, one tile-sized crop per shared "
         "edge (each pair once; on a vertical line it reaches a sixth of a tile past each corner); tile syntheses only when "
         "there are several phases to merge.", "",
         "**Trust** (which readings to believe, against stand-in models that invent, misread, answer in prose and drop "
         "readings, with RapidOCR or Tesseract behind them): [trust.md](bench/trust.md), made by "
         "`python -m bench.trust --cold`.", ""]
    for run in runs:
        L += [f"## {run['label']}", "", *table(run), "",
              f"![recall against calls]({rel}/recall-vs-calls-{run.get('budget') or 'model'}.png)", ""]
        comp = blog_comparison(run)
        if comp:
            L += ["Calls at equal recall against the blog design:", ""]
            for c in comp:
                if c["ratio"] is None:
                    L.append(f"- {c['blog']} ({c['blog_calls']} calls, recall {c['blog_recall']}): no Mosaic run reads as much")
                else:
                    L.append(f"- {c['blog']} ({c['blog_calls']} calls, recall {c['blog_recall']}) → {c['mosaic']} "
                             f"({c['mosaic_calls']} calls, recall {c['mosaic_recall']}): {c['ratio']} of the calls")
            L.append("")
    L += ["## Where the misses are", "",
          "Each sign of each scene, read (green) or missed (red), with the method's tile lines.", "",
          f"![misses]({rel}/misses.png)", ""]
    if system:
        L += ["## Scheduling, overhead, memory", ""]
        if system.get("prefect_start"):
            p = system["prefect_start"]
            L.append(f"- Prefect's temporary server, once per process: first flow run {p['first_run_s']} s, the same run "
                     f"again {p['second_run_s']} s: **{p['server_start_s']} s** of one-time start.")
        s = system.get("scheduling")
        if s:
            L.append(f"- Scheduling: {s['calls_made']} calls (3×3, three phases) against a backend with L = {s['latency_s']} s, "
                     f"C = {s['slots']} slots (a stand-in server in its own process), Mosaic `--concurrency "
                     f"{s.get('concurrency', s['slots'])}` over HTTP: busy span "
                     f"{s['busy_span_s']} s (median of {', '.join(map(str, s.get('busy_spans_s', [s['busy_span_s']])))}) "
                     f"vs lower bound {s['lower_bound_s']} s = **{s['span_over_bound']}×**; at most "
                     f"{s['max_in_flight']} calls held a backend slot at once"
                     + (f". With `--concurrency {s['slots']}` (no call waiting at the server): "
                        f"{s['span_over_bound_at_slots']}× (median of {', '.join(map(str, s['busy_spans_at_slots_s']))} s)"
                        if "span_over_bound_at_slots" in s else "") + f". Instant backend: {s['instant_backend_wall_s']} s for the run, "
                     f"{s['prepare_s']} s of it cutting the image, so **{s['overhead_per_call_ms']} ms** orchestration "
                     f"per call, **{s['overhead_share']}** of the L = {s['latency_s']} s run"
                     + (f" (until the first call {s['instant_parts_s']['to_first_call_s']} s, the {s['calls']} calls "
                        f"{s['instant_parts_s']['calls_s']} s, after the last {s['instant_parts_s']['after_last_call_s']} s)"
                        if "instant_parts_s" in s else "")
                     + (f"; CPU in that run: Mosaic's process {s['instant_cpu_s']['mosaic']} s, the temporary Prefect "
                        f"server {s['instant_cpu_s'].get('prefect_server', '–')} s" if "instant_cpu_s" in s else "")
                     + (f"; a Prefect flow run that does nothing takes {s['empty_flow_run_ms']} ms"
                        if "empty_flow_run_ms" in s else "")
                     + (f"; of a call's cost, a Prefect task alone is {s['prefect_task_ms']} ms and the LiteLLM client "
                        f"call of one view {s['client_call_ms']} ms" if "prefect_task_ms" in s else "")
                     + (f" ({s['client_call_cpu_ms']} ms of CPU; the same request from a plain HTTP client "
                        f"{s['plain_http_call_cpu_ms']} ms)" if "client_call_cpu_ms" in s else "") + ".")
        if system.get("memory"):
            m = system["memory"]
            L.append(f"- Memory: `prepare` on a {m['megapixels']}-MP JPEG ({m['size'][0]}×{m['size'][1]}, {m['grid']}): peak RSS "
                     f"{m['peak_rss_mb']} MB = **{m['peak_over_decoded']}×** the decoded size ({m['decoded_mb']} MB; "
                     f"{m['rss_after_imports_mb']} MB of it is the interpreter and imports); {m['prepare_s']} s. "
                     "`python -m bench.memory`.")
        L.append("")
    startup = _startup(out_dir)
    if startup:
        r, first, imports, start = (startup["memoized_rerun"], startup["first_run"], startup["imports_s"],
                                    startup["server_start_s"])
        L += ["## Start-up of the command", "",
              f"`python -m bench.startup` ([startup.md]({rel}/startup.md)), real commands against a loopback server: "
              f"imports {imports['mosaic_cli.main']} s (the command) + {imports.get('mosaic_flows.review', imports.get('flows.review'))} s (Prefect and the flow; "
              f"LiteLLM's {imports['litellm']} s only when a call reaches a backend); Mosaic's local Prefect server starts "
              f"in {start['fresh_database']} s on a fresh database, {start['again']} s later; first run "
              f"{first['s']} s (its first call at {first['first_call_s']} s); **memoized rerun {r['median_s']} s**, whole "
              f"command, = {r['share_of_first_run']} of the first run (with a temporary server per command "
              f"{startup['memoized_rerun_temporary_server']['median_s']} s).", ""]
    compared = _kept(out_dir, "compare.json")
    if compared:
        pair = compared["pair"]
        best = max(m["recall"] for m in pair["models"].values())
        L += ["## Comparing models", "",
              f"`python -m bench.compare` ([compare.md]({rel}/compare.md)): `mosaic compare` with two stand-in models "
              f"on loopback servers (RapidOCR over the OpenAI API, Tesseract over Ollama's, both inventing and "
              f"misreading), {pair['scenes']} scenes, {pair['signs']} signs, no second look. Rows both models read "
              f"alike are real **{pair['agreed_real']}** ({pair['agreed_rows']} rows), rows of one model only "
              f"**{pair['single_real']}** ({pair['single_rows']}); the comparison's union recalls {pair['union_recall']}, "
              f"the better model alone {best}. Agreement only within one family (a third model, A's clone sharing its "
              f"misreads): real {compared['trio'].get('same_family_agreed_real')}, against "
              f"{compared['trio'].get('independent_agreed_real')} across families.", ""]
    L += ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    if compared:
        L.append(f"| compare: rows two models read alike are real more often than rows of one model | "
                 f"{pair['agreed_real']} vs {pair['single_real']} | higher | "
                 f"{'yes' if pair['agreed_real'] > pair['single_real'] else 'no'} |")
        L.append(f"| compare: the union's recall against the better model's alone | {pair['union_recall']} vs {best} | "
                 f"≥ | {'yes' if pair['union_recall'] >= best else 'no'} |")
    if startup:
        r = startup["memoized_rerun"]
        L.append(f"| memoized rerun of one image, whole command, local server up | {r['median_s']} s (median of "
                 f"{len(r['runs'])}) | ≤ 3 s | {'yes' if r['median_s'] <= 3 else 'no'} |")
        L.append(f"| memoized rerun against the first run | {r['share_of_first_run']} | ≤ 0.08 | "
                 f"{'yes' if r['share_of_first_run'] <= 0.08 else 'no'} |")
    for t in targets(runs, system):
        L.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {'yes' if t['met'] else 'no' if t['met'] is not None else '–'} |")
    notes = (out_dir / "notes.md")
    if notes.exists():
        L += ["", notes.read_text(encoding="utf-8").strip()]
    return "\n".join(L) + "\n"


def _startup(out_dir: Path) -> dict | None:
    return _kept(out_dir, "startup.json")


def _kept(out_dir: Path, name: str) -> dict | None:
    path = out_dir / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    write_all(ROOT / "docs" / "bench", ROOT / "docs" / "benchmark.md")
    print(ROOT / "docs" / "benchmark.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
