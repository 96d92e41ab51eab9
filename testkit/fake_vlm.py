"""A deterministic stand-in vision model for tests and benchmarks: no weights, answers in the shapes Mosaic asks.

Each image gets a reading derived from its bytes, so a test can follow one view's reading to the review."""

from __future__ import annotations

import hashlib
import json
import re


def fake_vlm(messages: list[dict], model: str, box: list[int] | None = None) -> str:
    """box: where each reading is, in thousandths of the crop (None: it says nowhere, as many small VLMs)."""
    prompt = messages[-1]["content"] if isinstance(messages[-1]["content"], str) else next(
        p["text"] for p in messages[-1]["content"] if p.get("type") == "text")
    images = [p["image_url"]["url"] for m in messages if isinstance(m["content"], list)
              for p in m["content"] if p.get("type") == "image_url"]
    tag = hashlib.sha256(images[0].encode()).hexdigest()[:6].upper() if images else "NOIMG"
    task = re.search(r"Mosaic task: ([\w-]+)", prompt)
    task = task.group(1) if task else ""
    if task == "orientation":
        return f"A test scene {tag}."
    if task in ("text", "inspect"):
        reading = {"text": f"SIGN-{tag}", "unclear": False} | ({"box": box} if box else {})
        return "```json\n" + json.dumps({"readings": [reading], "notes": ""}) + "\n```"
    if task == "subjects":
        return json.dumps({"items": [f"object {tag}"]})
    if task == "characteristics":
        return "Plain prose: bright, sharp."  # not JSON on purpose: the pipeline must keep it as text
    if task == "tile-synthesis":
        return json.dumps({"summary": "merged", "characteristics": "bright"})
    if task == "final-review":
        return "FINAL REVIEW. " + " ".join(re.findall(r"SIGN-[0-9A-F]{6}", prompt)[:3])
    return "?"


def completion(backend):
    """The stand-in as a completion function (MOSAIC_COMPLETION=testkit.fake_vlm:completion): it answers
    in process, through the same seam as LiteLLM, for any model string."""
    from mosaic.llm import Completion

    def complete(call, messages, api_key=None, timeout_s=0.0):
        return Completion(fake_vlm(messages, call.model), "stop", {})

    return complete


def placed_completion(backend):
    """The same stand-in, saying where each reading is (MOSAIC_COMPLETION=testkit.fake_vlm:placed_completion)."""
    from mosaic.llm import Completion

    def complete(call, messages, api_key=None, timeout_s=0.0):
        return Completion(fake_vlm(messages, call.model, box=[400, 300, 600, 400]), "stop", {})

    return complete
