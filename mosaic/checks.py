"""The checks every way into a review makes before its first call (the CLI, mosaic.review, the flows, the inbox,
deployments): one message for one mistake, wherever it is made."""

from __future__ import annotations

from pathlib import Path

from .backend import Backend
from .errors import BadOption
from .schema import PHASES
from .settings import Settings


def checked_phases(phases: str | list[str] | tuple[str, ...]) -> list[str]:
    """The phases asked, from a list or a comma-separated text; BadOption naming the choices otherwise."""
    asked = [p.strip() for p in (phases.split(",") if isinstance(phases, str) else phases) if p and p.strip()]
    if not asked or any(p not in PHASES for p in asked):
        given = phases if isinstance(phases, str) else ",".join(phases)
        raise BadOption(f"invalid phases {given!r}: choose from {', '.join(PHASES)}")
    return list(dict.fromkeys(asked))


def checked_backend(settings: Settings, model: str, api_base: str | None) -> Backend:
    """The backend of a model string; BadOption for a bad string or one naming no provider."""
    try:
        backend = Backend.create(model, api_base, settings.offline_budget)
    except ValueError as e:
        raise BadOption(str(e)) from None
    if "/" not in backend.model and not backend.is_offline and not settings.completion:
        raise BadOption(f"model {backend.model!r} names no provider: use ollama_chat/{backend.model} (Ollama) or "
                        f"openai/{backend.model} with --api-base (llama.cpp, vLLM, LM Studio)")
    return backend


def checked_out_dir(out_dir: str | Path) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise BadOption(f"--out {path} is a file, not a folder")
    return path


def checked_call_count(planned: int, cols: int, rows: int, settings: Settings) -> None:
    """Refuse a review of more calls than MOSAIC_MAX_CALLS (before the second look) unless the user said yes (--yes,
    MOSAIC_YES). The CLI checks the grid's count before cutting the image; every review checks its plan's."""
    if planned > settings.max_calls and not settings.yes:
        raise BadOption(f"the {cols}×{rows} grid plans {planned:,} calls, more than {settings.max_calls:,}: pass --yes "
                        "(MOSAIC_YES=1) to make them, or choose a coarser --grid or --density")
