"""What each small VLM family does whatever the prompt asks: the convention its boxes come in, the size its encoder
sees, whether it grounds at all, the smallest crop and largest image its server takes, whether it thinks out loud.

Matched from the model string; a setting (MOSAIC_PROFILE, MOSAIC_BOX_CONVENTION) or `mosaic run --profile` overrides
it, and `mosaic probe` saves a measured profile that later runs of that model use."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

# How a model writes a box (see mosaic.dialects.crop_fractions):
BOX_CONVENTIONS = {
    "qwen-pixels": "[x0, y0, x1, y1] in pixels of the model's own resized input (Qwen2.5-VL: sides rounded to 28 px)",
    "pixels": "[x0, y0, x1, y1] in pixels of the crop as sent",
    "thousandths": "[x0, y0, x1, y1] in 0-1000 of the crop",
    "thousandths-yx": "[y0, x0, y1, x1] in 0-1000 of the crop (Gemini)",
    "fractions": "[x0, y0, x1, y1] in 0-1 of the crop (Kimi-VL)",
    "loc-yx": "PaliGemma's <locYYYY><locXXXX>… tokens: y first, 1024 bins",
    "words": "no boxes: places in words (top left, middle…)",
    "auto": "unknown: pixels when a value passes 1000, fractions when all are at most 1, else 0-1000",
}

QWEN_MIN_PIXELS = 4 * 28 * 28  # Qwen2.5-VL's processor defaults (qwen-vl-utils)
QWEN_MAX_PIXELS = 16384 * 28 * 28
OLLAMA_QWEN_MAX_PIXELS = 1280 * 28 * 28  # Ollama's qwen2.5vl resizes anything larger to about 1 MP


class Profile(BaseModel, frozen=True):
    family: str  # "qwen2.5-vl", … or "unknown"
    box: str = "auto"  # one of BOX_CONVENTIONS
    input_px: int | None = None  # long side the image encoder works at (for choosing density and crop size)
    grounds: bool = True  # it can say where a text is as a box
    min_crop_px: int = 32  # no crop side smaller is sent (Ollama's runner has crashed on crops under 28-32 px)
    max_image_px: int | None = None  # no image of more pixels is sent (the server would resize it anyway)
    resize_min_pixels: int = QWEN_MIN_PIXELS  # qwen-pixels: the processor's min/max pixels (smart_resize)
    resize_max_pixels: int = QWEN_MAX_PIXELS
    thinking: bool = False  # writes <think>…</think> before the answer (stripped either way)
    source: str = "table"  # table, probe (a saved measurement), setting, default


# (pattern on the model's name, profile); the first match wins.
FAMILIES: list[tuple[str, Profile]] = [
    (r"qwen2(\.5)?[-_]?vl", Profile(family="qwen2.5-vl", box="qwen-pixels", input_px=1024)),
    (r"qwen3[-_]?vl", Profile(family="qwen3-vl", box="thousandths", input_px=1024)),
    (r"internvl", Profile(family="internvl", box="thousandths", input_px=448)),
    (r"minicpm[-_]?v", Profile(family="minicpm-v", box="thousandths", input_px=448)),
    (r"gemma[-_]?3", Profile(family="gemma3", box="words", grounds=False, input_px=896)),
    (r"glm[-_]?4(\.\d)?[-_.]?\d*v", Profile(family="glm-4v", box="thousandths", input_px=1024, thinking=True)),
    (r"paligemma", Profile(family="paligemma", box="loc-yx", input_px=448)),
    (r"llava|bakllava", Profile(family="llava", box="words", grounds=False, input_px=336)),
    (r"moondream", Profile(family="moondream", box="words", grounds=False, input_px=378)),
    (r"smolvlm", Profile(family="smolvlm", box="words", grounds=False, input_px=512)),
    (r"kimi[-_]?vl", Profile(family="kimi-vl", box="fractions", input_px=896)),
    (r"gemini", Profile(family="gemini", box="thousandths-yx")),
]

DEFAULT = Profile(family="unknown", source="default")


def table_profile(model: str) -> Profile:
    """The table's profile of a model string (the default for a name it does not know)."""
    name = model.lower().split("/", 1)[-1]
    for pattern, profile in FAMILIES:
        if re.search(pattern, name):
            update: dict = {}
            if "thinking" in name:
                update["thinking"] = True
            if profile.box == "qwen-pixels" and model.startswith(("ollama/", "ollama_chat/")):
                update |= {"resize_max_pixels": OLLAMA_QWEN_MAX_PIXELS, "max_image_px": OLLAMA_QWEN_MAX_PIXELS}
            return profile.model_copy(update=update)
    return DEFAULT


def family_profile(family: str) -> Profile | None:
    """The table's profile of a family named as the table names it ("qwen2.5-vl", "gemini", …)."""
    return next((p for _, p in FAMILIES if p.family == family.lower()), None)


def saved_path(cache_dir: Path, model: str) -> Path:
    """Where `mosaic probe` keeps the profile it measured for a model."""
    return Path(cache_dir) / "profiles" / (re.sub(r"[^\w.-]+", "_", model).strip("_") + ".json")


def saved_profile(cache_dir: Path | None, model: str) -> Profile | None:
    if cache_dir is None:
        return None
    try:
        return Profile.model_validate_json(saved_path(cache_dir, model).read_text())
    except (OSError, ValidationError, ValueError):
        return None


def save_profile(cache_dir: Path, model: str, profile: Profile, measured: dict | None = None) -> Path:
    """The profile as later runs read it, and beside it what the probe measured (for the user to see)."""
    path = saved_path(cache_dir, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.model_dump() | ({"measured": measured} if measured else {}), indent=2,
                               ensure_ascii=False))
    return path


def profile_for(model: str, family: str | None = None, box: str | None = None, cache_dir: Path | None = None) -> Profile:
    """The profile a run uses: the family named by the setting, else the one `mosaic probe` saved for this model,
    else the table's; box, when given, replaces its box convention. Raises ValueError for an unknown name."""
    if family:
        profile = family_profile(family)
        if profile is None:
            raise ValueError(f"unknown model profile {family!r}: choose one of {', '.join(families())}")
        profile = profile.model_copy(update={"source": "setting"})
    else:
        profile = saved_profile(cache_dir, model) or table_profile(model)
    if box:
        if box not in BOX_CONVENTIONS:
            raise ValueError(f"unknown box convention {box!r}: choose one of {', '.join(BOX_CONVENTIONS)}")
        profile = profile.model_copy(update={"box": box, "grounds": box != "words", "source": "setting"})
    return profile


def families() -> list[str]:
    return [p.family for _, p in FAMILIES]


def unknown_model_line(model: str, profile: Profile) -> str | None:
    """One line for a model no table row or saved probe knows; None for a known one."""
    if profile.source != "default" or model.startswith("mosaic_offline/"):
        return None
    return (f"note: Mosaic does not know {model}'s habits (box convention, thinking, limits); boxes are read by guess. "
            f"`mosaic probe --model {model}` measures them in a minute")
