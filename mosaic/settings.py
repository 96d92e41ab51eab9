"""Settings read from the environment (prefix MOSAIC_) and overridden by command-line options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    """`cache/` in a source checkout, else the user's cache directory."""
    if (PROJECT_ROOT / "pyproject.toml").exists() and (PROJECT_ROOT / "cache").is_dir():
        return PROJECT_ROOT / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mosaic"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOSAIC_", extra="ignore")

    model: str = Field(
        "offline",
        description="LiteLLM model string, e.g. ollama_chat/qwen2.5vl:7b or openai/<name>; "
        "'offline' (or 'offline:896') is the built-in OCR reader.",
    )
    api_base: str | None = Field(
        None, description="Backend address, e.g. http://127.0.0.1:8080/v1 for a llama.cpp server; several servers of the "
        "model comma-separated: each call goes to the one with a free slot (MOSAIC_BACKEND_SLOTS each), a failing one "
        "is cooled down.")
    same_weights: bool = Field(
        False, description="Every address given serves the same weights of the model: the memo keys calls by the model "
        "alone, so an answer from one server (or from a run against another address) is reused by all. Off: keys "
        "include the address (of several servers: all of them).")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Where the call memo lives.")
    cache_size_mb: int = Field(2048, description="Size limit of the call memo in MiB; the least recently used entries go first.")
    out_dir: Path = Field(Path("mosaic-reports"), description="Folder under which each run writes its report folder.")
    concurrency: int = Field(2, ge=1, le=64, description="Model calls in flight at once (one local server: 1–4).")
    backend_slots: int = Field(
        2, ge=1, le=1000, description="Model calls in flight at once to one backend address, over all runs that share "
        "a Prefect server (a global concurrency limit Mosaic creates when missing).")
    retries: int = Field(3, ge=0, le=10, description="Retries of a failed model call, with exponential backoff.")
    retry_delay_s: float = Field(1.0, ge=0, description="First backoff delay; it doubles on each retry (±20% jitter).")
    retry_limit_s: float = Field(
        600.0, gt=0, description="Most time one step (a view's phases, a synthesis) spends retrying; a Retry-After "
        "from the server is honoured once within it.")
    timeout_s: float = Field(300.0, gt=0, description="Time limit of one model call.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 keeps readings reproducible.")
    max_tokens: int = Field(1024, gt=0, description="Upper bound of tokens per answer.")
    num_ctx: int | None = Field(
        8192, description="Context size asked of Ollama backends (its 2–4k default can be overflowed by one image)."
    )
    orientation_px: int = Field(1280, ge=64, description="Long side of the whole image sent for orientation and synthesis.")
    view_px: int = Field(1280, ge=64, description="Largest long side of a tile or seam crop sent to the model.")
    skip_blank: bool = Field(False, description="Ask nothing of tiles and seam crops with no visible edge (clear sky, bare "
                             "walls): fewer calls, no detail lost on such views.")
    offline_budget: int = Field(448, ge=32, description="Long side the offline reader shrinks every image to (its 'encoder').")
    max_image_mp: float | None = Field(
        None, gt=0, description="Largest image accepted, in megapixels (default: Pillow's limit, ~179 MP); every run "
        "reads it, also deployments and `mosaic serve`.")
    inbox_max_failures: int = Field(
        5, ge=1, description="Sweeps of an inbox in which one image may fail for a reason that may pass (its model server "
        "down) before it is set aside in rejected/ with the last error.")
    completion: str | None = Field(
        None, description="module:factory of the completion function (the call seam): given the Backend, it returns "
        "what answers a call instead of LiteLLM or the offline reader. For tests and benchmarks.")
    structured_output: bool = Field(
        True, description="Ask the server for answers in the JSON shape of each question (response_format with a JSON "
        "Schema: Ollama's format, llama.cpp, vLLM, LM Studio); a server that refuses it is asked again without, and not "
        "asked again in this process.")
    second_look: bool = Field(
        True, description="After the first wave of views, a closer, enlarged, text-only crop of each reading not "
        "confirmed, unclear, or read differently (none where the detector sees no text: the model would only repeat "
        "itself).")
    witnesses: str = Field(
        "detector,reader", description="Local witnesses asked about every reading, comma-separated (none: ''): "
        "'detector' (RapidOCR's text detector: is there text-like detail where the model read text?) and 'reader' "
        "(RapidOCR's recognizer on that place: does it read the same text?). A reading is confirmed only when one "
        "independent of the model agrees; with none on, two views of the model reading the same text confirm it.")
    witness_similarity: float = Field(
        1.0, ge=0, le=1, description="How alike the reader's text and a reading must be for the reader to agree "
        "(1: the same letters and digits, or the reading a part of what it read; see docs/bench/witness.md).")
    max_calls: int = Field(
        1000, ge=1, description="A review that plans more calls than this (before the second look) is refused before "
        "its first call unless MOSAIC_YES (--yes) is given, whichever way it is started: a typo in --grid can plan "
        "thousands.")
    yes: bool = Field(False, description="Make a review that plans more calls than MOSAIC_MAX_CALLS (`--yes`).")
    plan: Literal["auto", "shaped", "full", "blog"] = Field(
        "auto", description="How the views are chosen. shaped: the text phase on the density's grid only where the local "
        "text detector finds text-like detail (and seam crops only where it crosses a tile line), subjects and "
        "characteristics on the whole image, tile summaries written in code; full: every phase on every tile and seam, "
        "a synthesis call per tile; blog: the blog's design (each tile asked everything in one call, each seam twice, "
        "a synthesis per tile). auto: shaped for light and auto densities, full for quick, dense, max and --grid.")
    coarse_phases: bool = Field(
        True, description="In a shaped plan, ask subjects and characteristics of the whole image once instead of every "
        "tile (off: of every tile, as the text phase's grid; `mosaic run --fine-phases`).")
    shaped_calls: int = Field(
        0, ge=0, description="Calls per image a shaped plan may spend with no budget given: its second look may fill "
        "what the first wave leaves of them (at least its MOSAIC_SECOND_LOOK_SHARE). 0 (the default): the share alone. "
        "A model with weak eyes gets more of its readings confirmed with more (docs/bench/witness.md: 30 calls "
        "confirm 0.31 of the signs for a Tesseract-eyed stand-in, against 0.19, for 1.73x the first wave's calls "
        "instead of 1.25x).")
    shaped_minutes: float | None = Field(
        3.0, gt=0, description="Estimated backend minutes per image (see call_overhead_s) the second look of a shaped "
        "plan may fill up to, with MOSAIC_SHAPED_CALLS (at least its share).")
    call_budget: int | None = Field(
        None, ge=3, description="Most calls per image, second look included (`mosaic run --max-calls`): the plan keeps "
        "the views worth most within it (seams without text go first, then syntheses, subjects and characteristics, "
        "then the second look shrinks, then the least text-dense tiles' text). Unlike MOSAIC_MAX_CALLS, which refuses a "
        "larger plan, a budget is planned within.")
    minutes_budget: float | None = Field(
        None, gt=0, description="Most estimated backend minutes per image (`mosaic run --max-minutes`), second look "
        "included, with each call's time estimated by the call_overhead_s, prefill_tps and decode_tps model.")
    call_overhead_s: float = Field(0.5, ge=0, description="Estimated fixed time of one model call (a laptop: ~0.5 s).")
    prefill_tps: float = Field(500, gt=0, description="Estimated image-token prefill speed, tokens/s (a 7B on a laptop: ~500).")
    decode_tps: float = Field(20, gt=0, description="Estimated answer speed, tokens/s (a 7B on a laptop: ~20).")
    second_look_share: float = Field(
        0.3, ge=0, le=5, description="Most calls the second look may add, as a share of the first wave's planned calls.")
    prefect_server: Literal["local", "temporary"] = Field(
        "local", description="With no PREFECT_API_URL: 'local' starts one Prefect server in the background on the first "
        "run and reuses it later (`mosaic server stop` stops it); 'temporary' starts Prefect's temporary server for "
        "each command, ~8 s more per run.")
    server_port: int = Field(4210, ge=1, le=65535, description="Loopback port of Mosaic's local Prefect server (its UI).")
    server_wait_s: float = Field(
        120, gt=0, description="How long a command waits for Mosaic's local Prefect server to answer when it starts it "
        "(6-17 s on a loaded 2-core machine; a temporary server's wait is PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "
        "120 unless set).")
    profile: str | None = Field(
        None, description="The model family whose habits to expect (box convention, encoder size, limits), e.g. "
        "qwen2.5-vl, qwen3-vl, gemini (see mosaic.profiles.FAMILIES); default: matched from the model's name, or the "
        "profile `mosaic probe` saved for it.")
    box_convention: str | None = Field(
        None, description="How the model writes boxes, whatever its family: qwen-pixels, pixels, thousandths, "
        "thousandths-yx, fractions, loc-yx, words or auto (see mosaic.profiles.BOX_CONVENTIONS).")
    input_px: int | None = Field(
        None, ge=32, le=8192, description="Long side the model's image encoder works at, for --density auto when Mosaic "
        "cannot size the model (e.g. 896 for a Gemma 3 fine-tune); it overrides an Ollama server's report and the table.")


def load_settings(**overrides) -> Settings:
    """Environment first, then the non-None overrides (command-line options)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
