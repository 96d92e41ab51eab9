"""Several models on one image: the same grid for all, their readings aligned sign by sign, where they disagree.

Disagreement is signal: where independent readers read one sign differently the image is hard there and a person
(or another model) should look; where they agree, that is evidence the reading is real, weaker when the models are
of one family (they share mistakes). Plain code: `flows/compare.py` drives it with Prefect subflows, `compare_image()`
with threads.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .backend import Backend
from .errors import BadOption, MosaicError, RunFailed
from .readings import alike, area, clusters, group_key, grown, hull, intersection, one_apart
from .schema import Agreement, ComparedReading, Comparison, FinalReport, ModelRun, Reading, canonical_sha256
from .tiles import Box

# Families by the start of a model's name (without provider and organisation): models of one family are trained
# alike and share errors ("Hidden Clones", arXiv 2603.17111), so their agreement is weaker evidence.
FAMILIES = {
    "qwen": "qwen", "qvq": "qwen", "gemma": "gemma", "paligemma": "gemma", "medgemma": "gemma", "llava": "llava",
    "bakllava": "llava", "llama": "llama", "minicpm": "minicpm", "internvl": "internvl", "moondream": "moondream",
    "phi": "phi", "granite": "granite", "smolvlm": "smolvlm", "idefics": "smolvlm", "pixtral": "mistral",
    "mistral": "mistral", "ministral": "mistral", "deepseek": "deepseek", "glm": "glm", "molmo": "molmo",
    "florence": "florence", "kimi": "kimi", "ovis": "ovis", "aya": "aya", "cogvlm": "glm", "yi": "yi",
}


def model_family(model: str) -> str:
    """The family a model belongs to: qwen for ollama_chat/qwen2.5vl:7b and openai/Qwen/Qwen2.5-VL-3B. An unknown
    name's family is the name without its size and tag (two unknown names are of one family when only those differ)."""
    name = model.rsplit("/", 1)[-1].lower()
    for prefix in sorted(FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            return FAMILIES[prefix]
    return re.split(r"[:\d]", name, maxsplit=1)[0].strip("-_.") or name


def family_of(label: str, families: dict[str, str]) -> str:
    """A compared model's family: as given, else from its label (the model string, with @address when one model is
    compared on two servers)."""
    return families.get(label) or model_family(label.rsplit("@", 1)[0] if "@" in label else label)


def labels_for(models: Sequence[tuple[str, str | None]]) -> list[str]:
    """What names each model in a comparison: its model string, with @address when it is compared on two servers."""
    names = [m for m, _ in models]
    return [m if names.count(m) == 1 else f"{m}@{base or 'default'}" for m, base in models]


def check_models(backends: Sequence[Backend]) -> None:
    """Two or more models, none given twice (the same model at one address, however the address is written)."""
    if len(backends) < 2:
        raise BadOption("compare needs at least two models: --model A [--api-base X] --model B [--api-base Y]")
    seen = set()
    for b in backends:
        where = b.network_address or ("offline" if b.is_offline else None)
        where = where and where.rstrip("/").replace("//localhost", "//127.0.0.1")
        if (b.model, where) in seen:
            raise BadOption(f"model {b.model!r}" + (f" at {where}" if where else "") + " is given twice")
        seen.add((b.model, where))


def server_groups(backends: Sequence[Backend]) -> list[list[int]]:
    """Indexes of the models, one group per server: models on one server are reviewed one after another (they share
    its slots), groups on different servers at once."""
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(backends):
        address = b.network_address or ("offline" if b.is_offline else f"in-process:{b.model}")
        groups.setdefault(address, []).append(i)
    return list(groups.values())


def shared_grid(size: tuple[int, int], backends: Sequence[Backend], density: str, grid: str | None,
                stated_px: int | None) -> tuple[int, int, str, int | None]:
    """(cols, rows, density label, encoder px) of the one grid every model gets: --grid, the density named, or what
    density auto picks for the smallest model (by the size in its name) at the smallest encoder among them."""
    from .tiles import choose_grid, model_billions

    px = shared_input_px(backends, density, stated_px)
    smallest = min(backends, key=lambda b: model_billions(b.model) or float("inf"))
    cols, rows, label = choose_grid(size[0], size[1], density, grid, smallest.model, px)
    return cols, rows, label, px


def image_size(path: str) -> tuple[int, int]:
    """Width and height as a viewer shows the image (EXIF rotation applied), from its header."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(0x0112) in (5, 6, 7, 8):
            width, height = height, width
    return width, height


def shared_input_px(backends: Sequence[Backend], density: str, stated: int | None) -> int | None:
    """The encoder size the grid is chosen for: the smallest model's (the one that sees least), so one grid suits all
    and every model's views line up."""
    from .pipeline import encoder_px

    sizes = [px for px in (encoder_px(b, density, stated) for b in backends) if px]
    return min(sizes) if sizes else None


# --- aligning what the models read ---------------------------------------------------------------------------

# Two readings lie at one place, whatever they read, when their boxes overlap by this share of the smaller one and
# the smaller is at least SAME_SIZE_SHARE of the larger (a vague box, "the top third", holds several signs).
SAME_PLACE_SHARE = 0.5
SAME_SIZE_SHARE = 0.25


def near(a: str, b: str) -> bool:
    """Two grouping keys of one place a character apart or one a part of the other (from two characters on: 橋本 and
    桶本 at one place are one sign read two ways)."""
    if a == b:
        return True
    shorter = min(len(a), len(b))
    return shorter >= 2 and (a in b or b in a or one_apart(a, b))


def _overlap_of_smaller(a: Box, b: Box) -> float:
    return area(intersection(a, b)) / max(1, min(area(a), area(b)))


def same_sign(a: Reading, b: Reading) -> bool:
    """Boxes of a size that overlap much are one sign whatever the text; otherwise texts alike (readings.alike: 出口
    beside 入口 are two signs) at touching boxes, or (where a model gave no box) alike texts in a shared tile."""
    if a.box and b.box and _overlap_of_smaller(a.box, b.box) >= SAME_PLACE_SHARE and (
            min(area(a.box), area(b.box)) >= SAME_SIZE_SHARE * max(area(a.box), area(b.box))):
        return True
    if not alike(group_key(a.text), group_key(b.text)):
        return False
    if a.box and b.box:
        return area(intersection(grown(a.box), grown(b.box))) > 0
    return bool(set(a.tiles) & set(b.tiles))


def align(readings_by_model: dict[str, list[Reading]], families: dict[str, str] | None = None,
          tile_order: Sequence[str] = ()) -> list[ComparedReading]:
    """One row per sign over every model's readings: what each model read there, how far they agree, whether that is
    confirmed (never where every model that read the text had its own witnesses find no text there: a habit shared,
    not evidence). A model whose readings split one sign (two fragments) has them joined left to right."""
    families = families or {}
    rows = [_row(members, list(readings_by_model), families) for members in sign_groups(readings_by_model)]
    rank = {t: i for i, t in enumerate(tile_order)}
    order = {"different": 0, "near": 1, "single": 2, "exact": 3}
    return sorted(rows, key=lambda r: (order[r.agreement], min((rank.get(t, len(rank)) for t in r.tiles),
                                                               default=len(rank)), r.box or (0, 0, 0, 0), r.text))


def sign_groups(readings_by_model: dict[str, list[Reading]]) -> list[list[tuple[str, Reading]]]:
    """Every model's readings grouped by sign: by place, and by text where a model gave no place."""
    items = [(label, r) for label, readings in readings_by_model.items() for r in readings if group_key(r.text)]
    links = set()
    for i, (label, reading) in enumerate(items):
        # a reading with no box is linked to one reading of each other model at most: read twice elsewhere, the same
        # text is two signs, not one
        linked_to: set[str] = set()
        for j, (other, candidate) in enumerate(items):
            if other == label or (reading.box and not candidate.box) or (reading.box and j > i):
                continue  # boxed pairs are judged once; a box-less reading's links are judged from its side
            if not reading.box and other in linked_to:
                continue
            if same_sign(reading, candidate):
                links.add((max(i, j), min(i, j)))
                linked_to.add(other)
    return [[items[i] for i in members] for members in clusters(len(items), lambda i, j: (i, j) in links)]


def read_by_model(members: Sequence[tuple[str, Reading]]) -> dict[str, str]:
    """What each model read at one sign, its fragments joined left to right."""
    mine: dict[str, list[Reading]] = {}
    for label, r in members:
        mine.setdefault(label, []).append(r)
    return {label: " ".join(r.text for r in sorted(rs, key=lambda r: (r.box or (0, 0, 0, 0))[:2]))
            for label, rs in mine.items()}


def with_models_witness(readings_by_model: dict[str, list[Reading]],
                        families: dict[str, str] | None = None) -> dict[str, list[Reading]]:
    """Every model's readings with the other models as witnesses (witnesses.models: what each read at the same place,
    None for nothing). A model of another family reading the same text is an independent witness: the reading is
    confirmed, unless the detector found no text there (a habit two models share is not evidence). Models of one
    family share mistakes: their agreement confirms nothing. A different text another family read there becomes a
    variant. Confirmed readings come first, as in a report."""
    from .evidence import STATUS_ORDER, verdict
    from .schema import Witnesses

    families = families or {}
    read_at: dict[int, dict[str, str]] = {}
    for members in sign_groups(readings_by_model):
        read = read_by_model(members)
        for _, r in members:
            read_at[id(r)] = read
    out = {}
    for label, readings in readings_by_model.items():
        mine = family_of(label, families)
        judged = []
        for r in readings:
            read = read_at.get(id(r), {})
            others = {m: read.get(m) for m in readings_by_model if m != label}
            witnesses = (r.witnesses or Witnesses(views=list(r.views))).model_copy(update={"models": others})
            update: dict = {"witnesses": witnesses}
            independent = {m: t for m, t in others.items() if t and family_of(m, families) != mine}
            agreeing = [m for m, t in independent.items() if group_key(t) == group_key(r.text)]
            different = [t for t in independent.values() if group_key(t) != group_key(r.text)]
            if different:
                update["variants"] = list(dict.fromkeys([*r.variants, *different]))
            if agreeing and r.status not in ("confirmed", "probably_absent"):
                update |= verdict("confirmed",
                                  f'another model ({agreeing[0]}, of another family) read "{read[agreeing[0]]}" here')
            judged.append(r.model_copy(update=update))
        out[label] = sorted(judged, key=lambda r: STATUS_ORDER[r.status or "unconfirmed"])
    return out


def _row(members: list[tuple[str, Reading]], labels: list[str], families: dict[str, str]) -> ComparedReading:
    mine: dict[str, list[Reading]] = {}
    for label, r in members:
        mine.setdefault(label, []).append(r)
    read = read_by_model(members)
    own_confirmed = {label for label, rs in mine.items() if all(r.confirmed for r in rs)}
    keys = {label: group_key(text) for label, text in read.items()}
    support: dict[str, list[str]] = {}
    for label in labels:
        if label in keys:
            support.setdefault(keys[label], []).append(label)
    votes = {k: len({family_of(m, families) for m in ms}) for k, ms in support.items()}  # one family is one voter
    main = max(support, key=lambda k: (votes[k], len(support[k]), any(m in own_confirmed for m in support[k]),
                                       -labels.index(support[k][0])))
    agreed = support[main]
    distinct = list(support)
    if len(read) == 1:
        agreement: Agreement = "single"
    elif len(distinct) == 1:
        agreement = "exact"
    elif all(near(a, b) for a in distinct for b in distinct):
        agreement = "near"
    else:
        agreement = "different"
    in_views = [m for m in agreed if m in own_confirmed]
    best_rival = max((votes[k] for k in support if k != main), default=0)
    absent = all(r.status == "probably_absent" for m in agreed for r in mine[m])
    confirmed = (len(agreed) >= 2 or bool(in_views)) and best_rival < votes[main] and not absent
    main_readings = [r for m in agreed for r in mine[m]]
    box = hull([r.box for r in main_readings if r.box] or [r.box for _, r in members if r.box])
    return ComparedReading(
        text=read[agreed[0]], by_model={label: read.get(label) for label in labels}, agreement=agreement,
        tiles=list(dict.fromkeys(t for _, r in members for t in r.tiles)), box=box, confirmed=confirmed,
        agreed=agreed if len(agreed) >= 2 else [], confirmed_in_views=in_views,
        same_family=len(agreed) >= 2 and votes[main] == 1, probably_absent=absent,
        variants=[t for t in dict.fromkeys([*(read[support[k][0]] for k in distinct if k != main),
                                             *(v for _, r in members for v in r.variants)])
                  if group_key(t) != main],
    )


def counts_of(rows: Iterable[ComparedReading]) -> dict[str, int]:
    rows = list(rows)
    out = {"readings": len(rows), "hard_spots": sum(r.hard for r in rows)}
    for kind in ("exact", "near", "different", "single"):
        out[kind] = sum(r.agreement == kind for r in rows)
    out["confirmed"] = sum(r.confirmed for r in rows)
    out["confirmed_by_models_only"] = sum(r.confirmed and not r.confirmed_in_views for r in rows)
    out["agreed_within_one_family"] = sum(r.same_family for r in rows)
    out["probably_absent"] = sum(r.probably_absent for r in rows)
    return out


# --- one comparison from the models' reviews ---------------------------------------------------------------

def model_run(label: str, backend: Backend, outcome: FinalReport | BaseException | str) -> ModelRun:
    """A model's line in the comparison from what its review ended with: a report, an error, or why it was not run."""
    base = dict(label=label, model=backend.model, api_base=backend.api_base, family=model_family(backend.model))
    if isinstance(outcome, FinalReport):
        return ModelRun(**base, state="completed", report_dir=outcome.report_dir, calls=outcome.calls,
                        elapsed_s=outcome.elapsed_s, readings=len(outcome.readings))
    if isinstance(outcome, str):
        return ModelRun(**base, state="unreachable", error=outcome)
    partial = outcome.report_dir if isinstance(outcome, RunFailed) else None
    text = outcome.what if isinstance(outcome, RunFailed) else str(outcome)
    return ModelRun(**base, state="failed", error=text.splitlines()[0] if text else type(outcome).__name__,
                    report_dir=partial)


def comparison(image: str, runs: list[ModelRun], reports: dict[str, FinalReport], elapsed_s: float = 0.0,
               grid: tuple[int, int, str] | None = None, phases: Sequence[str] = ()) -> Comparison:
    """The comparison of the completed reviews (`reports`, by label); `runs` names every model, missing ones too."""
    first = next(iter(reports.values()), None)
    tile_order = [t.tile for t in first.tiles] if first else []
    rows = align({label: reports[label].readings for label in (m.label for m in runs) if label in reports},
                 {m.label: m.family for m in runs}, tile_order)
    cols, rows_n, density = grid or ((first.cols, first.rows, first.density) if first else (0, 0, ""))
    return Comparison(
        image=image, image_sha256=first.image_sha256 if first else "", size=first.size if first else (0, 0),
        grid=f"{cols}x{rows_n}", density=density, phases=list(first.phases if first else phases), models=runs,
        readings=rows, counts=counts_of(rows), elapsed_s=round(elapsed_s, 3),
    )


def comparison_dir_name(image_path: str, image_sha256: str, labels: Sequence[str], grid: str,
                        phases: Sequence[str]) -> str:
    stem = re.sub(r"[^\w.-]+", "-", Path(image_path).stem).strip("-.")[:40] or "image"
    return f"compare-{stem}-{image_sha256[:8]}-{canonical_sha256([list(labels), grid, list(phases)])[:8]}"


def reachability(backend: Backend) -> str | None:
    """None when the backend's port answers, else the one line saying why not."""
    try:
        backend.check_reachable()
    except MosaicError as e:
        return str(e)
    return None


# --- driving the reviews ---------------------------------------------------------------------------------------

Outcome = FinalReport | BaseException | str  # a report, what the review failed with, or why it was not run


def each_by_server(backends: Sequence[Backend], review_one: Callable[[int], None]) -> None:
    """review_one(i) for every model: those on one server one after another, servers at once. Each thread runs in a
    copy of the caller's context (contextvars, taken here), so what it holds - a Prefect flow run - holds there too.
    Interrupted (Ctrl-C), it returns at once: no model not yet started is started, the running ones are left."""
    stop = threading.Event()

    def one_server(group: list[int]) -> None:
        for i in group:
            if stop.is_set():
                return
            review_one(i)

    groups = server_groups(backends)
    pool = ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="mosaic-compare")
    try:
        for future in [pool.submit(contextvars.copy_context().run, one_server, group) for group in groups]:
            future.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def review_each(backends: Sequence[Backend], labels: Sequence[str], review: Callable[[int], Outcome],
                on_model: Callable[[ModelRun], None] | None = None) -> dict[str, Outcome]:
    """What every model's review ended with: review(i)'s report, what it raised (one model's failure does not lose
    the others' work), or why the model was not asked (its server does not answer)."""
    outcomes: dict[str, Outcome] = {}

    def review_one(i: int) -> None:
        label = labels[i]
        unreachable = reachability(backends[i])
        if unreachable:
            outcomes[label] = unreachable
        else:
            try:
                outcomes[label] = review(i)
            except Exception as e:  # noqa: BLE001 - kept as this model's outcome
                outcomes[label] = e
        if on_model:
            on_model(model_run(label, backends[i], outcomes[label]))

    each_by_server(backends, review_one)
    return outcomes


def assemble(image_path: str, labels: Sequence[str], backends: Sequence[Backend], outcomes: dict[str, Outcome],
             out_dir: str | Path, phases: Sequence[str], elapsed_s: float, grid: tuple[int, int, str],
             run_ids: dict[str, str] | None = None) -> tuple[Comparison, Path | None, list[FinalReport]]:
    """The comparison of what every model's review ended with, the folder to write it to (None: no model finished,
    nothing to write), and the finished reports with the other models as witnesses of their readings (to write
    over each model's report)."""
    runs = [model_run(label, b, outcomes[label]).model_copy(update={"flow_run_id": (run_ids or {}).get(label)})
            for label, b in zip(labels, backends)]
    reports = {label: o for label, o in outcomes.items() if isinstance(o, FinalReport)}
    result = comparison(image_path, runs, reports, elapsed_s, grid, phases)
    if not reports:
        return result, None, []
    witnessed = with_models_witness({label: r.readings for label, r in reports.items()},
                                    {m.label: m.family for m in runs})
    folder = Path(out_dir) / comparison_dir_name(image_path, result.image_sha256, labels, result.grid, result.phases)
    return result, folder, [reports[label].model_copy(update={"readings": witnessed[label]}) for label in reports]


def compare_image(image_path: str, models: Sequence[tuple[str, str | None]], *, density: str = "light",
                  grid: str | None = None, phases: Sequence[str] | None = None, out_dir: str | None = None,
                  use_memo: bool = True, input_px: int | None = None, second_look: bool | None = None,
                  on_model: Callable[[ModelRun], None] | None = None) -> Comparison:
    """Review the image with every model on one grid (models on different servers at once) and compare them, in this
    process with threads; writes each model's report folder and the comparison's. A model that fails is named in
    `models` with its error; the others' work is kept."""
    from .driver import review
    from .report import write_comparison
    from .schema import DEFAULT_PHASES
    from .settings import load_settings

    started = time.monotonic()
    phases = list(phases or DEFAULT_PHASES)
    settings = load_settings(**({"out_dir": out_dir} if out_dir else {}))
    labels = labels_for(models)
    backends = [Backend.create(m, base, settings.offline_budget) for m, base in models]
    check_models(backends)
    cols, rows, label, px = shared_grid(image_size(image_path), backends, density, grid, input_px or settings.input_px)

    def review_model(i: int) -> FinalReport:
        model, base = models[i]
        return review(image_path, model, base, density=density, grid=f"{cols}x{rows}", phases=phases,
                      out_dir=str(settings.out_dir), use_memo=use_memo, input_px=px, second_look=second_look)

    outcomes = review_each(backends, labels, review_model, on_model)
    result, folder, witnessed = assemble(image_path, labels, backends, outcomes, settings.out_dir, phases,
                                         time.monotonic() - started, (cols, rows, label))
    if folder:
        write_comparison(result, folder, witnessed)
    return result
