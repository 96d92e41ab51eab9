"""`mosaic probe`: measure a model's habits with a calibration card and save its profile (logic in mosaic.probe);
and the profile options of `mosaic run`."""

from __future__ import annotations

import argparse
import os
import sys

from mosaic.checks import checked_backend

from .common import load


def use_profile(settings, model: str) -> str | None:
    """Check a run's profile options (one line for a bad name) and hand them to the flow, which reads its settings
    from the environment; the line to say when the model's habits are unknown."""
    from mosaic.context import model_profile
    from mosaic.profiles import unknown_model_line

    line = unknown_model_line(model, model_profile(settings, model))
    for name in ("profile", "box_convention"):
        if getattr(settings, name):
            os.environ[f"MOSAIC_{name.upper()}"] = getattr(settings, name)
    return line


def register(commands) -> None:
    probe = commands.add_parser("probe", help="measure a model's habits (boxes, JSON, thinking, limits) in a minute")
    probe.add_argument("--model", required=True, help="LiteLLM model string, e.g. ollama_chat/qwen2.5vl:7b")
    probe.add_argument("--api-base", help="the server's address, e.g. http://127.0.0.1:8080/v1")
    probe.add_argument("--no-save", action="store_true", help="print the summary only; keep no profile")
    probe.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from mosaic.probe import probe, summary

    settings = load(model=args.model, api_base=args.api_base)
    backend = checked_backend(settings, settings.model, settings.api_base)
    backend.check_reachable()
    result = probe(backend, settings, save=not args.no_save, say=lambda line: print(line, file=sys.stderr))
    print(summary(result))
    return 0
