"""The one place Mosaic calls a model: through a completion function (LiteLLM by default), with the disk memo in
front.

A memo hit makes no network call. Errors are classified (worth retrying or not), carry the backend's address,
never the API key, and are never memoized."""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .backend import Backend
from .dialects import broken, strip_thinking
from .errors import BackendError
from .images import image_mime
from .memo import BlobStore, Memo
from .schema import ModelCall, ModelReply

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import


class Completion(NamedTuple):
    """What a completion function returns: the answer's text, why it stopped, the tokens it used."""

    content: str
    finish_reason: str | None = None
    usage: dict[str, int] = {}


# The call seam (as httpx's transport): complete(call, messages, api_key, timeout_s) -> Completion
CompleteFn = Callable[[ModelCall, list[dict], "str | None", float], Completion]


def litellm_completion(call: ModelCall, messages: list[dict], api_key: str | None, timeout_s: float) -> Completion:
    """LiteLLM's completion; the answer's JSON Schema goes as response_format (Ollama's format, the OpenAI-style
    servers' structured output) unless this backend refused it before."""
    request = dict(model=call.model, messages=messages, api_base=call.api_base, api_key=api_key, timeout=timeout_s,
                   num_retries=0,  # retries belong to mosaic.steps.ask, one layer only
                   **call.options)
    backend = (call.model, call.api_base)
    if call.response_schema is not None and backend not in REFUSED_SCHEMA:
        try:
            return _complete(request | {"response_format": response_format(call.response_schema)})
        except Exception as e:
            if not refused_schema(e):
                raise
        answer = _complete(request)  # raises when the refusal was not about the schema: nothing remembered then
        REFUSED_SCHEMA.add(backend)  # asked without from now on, in this process
        return answer
    return _complete(request)


# Backends (model, api_base) that answered a request with response_format by refusing the request.
REFUSED_SCHEMA: set[tuple[str, str | None]] = set()


def response_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def refused_schema(error: Exception) -> bool:
    """A refusal the same request without response_format may not meet: a 4xx other than auth, limits and
    unknown models, or LiteLLM's own 'unsupported parameter'."""
    import litellm

    if isinstance(error, getattr(litellm, "UnsupportedParamsError", ())):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(error, (litellm.AuthenticationError, litellm.NotFoundError, litellm.RateLimitError,
                          litellm.ContextWindowExceededError)):
        return False
    return isinstance(error, litellm.BadRequestError) or status in (400, 415, 422, 501)


def _complete(request: dict) -> Completion:
    response = _litellm().completion(**request)
    choice = response.choices[0]
    return Completion(choice.message.content or "", getattr(choice, "finish_reason", None), _usage(response))


def call_model(call: ModelCall, blobs: BlobStore, memo: Memo | None, timeout_s: float = 300.0,
               address: str | None = None, complete: CompleteFn = litellm_completion) -> ModelReply:
    """One call, once (retries belong to mosaic.steps): the memo's answer, else the backend's, kept in the memo.
    address: the server it goes to, when the backend has several (the memo key keeps call.api_base).
    complete: what answers the call (LiteLLM, the offline reader, a test's fake)."""
    hit = cached_reply(call, memo)
    if hit is not None:
        return hit
    key = call.key()
    sent = call if address is None or address == call.api_base else call.model_copy(update={"api_base": address})
    api_key = api_key_for(sent)
    started = time.monotonic()
    retried = False
    try:
        messages = build_messages(call, blobs)
        answer = complete(sent, messages, api_key, timeout_s)
        if broken(strip_thinking(answer.content)[0]):  # a loop, or half a JSON document: once more, shorter
            retried = True
            again = complete(shorter(sent), messages, api_key, timeout_s)
            if not broken(strip_thinking(again.content)[0]):
                answer = again
        content = answer.content
    except BackendError:
        raise
    except Exception as e:  # LiteLLM wraps every provider's failure differently; classify once, here
        failure = classify(e, sent, api_key)
        failure.retry_after = retry_after(e)  # the server said when; mosaic.steps waits that long, once
        raise failure from None
    reply = read_reply(call, content, answer.usage)
    if not reply.content.strip():
        where = backend_address(sent.model, sent.api_base)
        if answer.finish_reason == "length" or reply.thinking:  # e.g. a thinking model spent them all
            limit = call.options.get("max_tokens")
            raise BackendError(f"{where} used up the token limit{f' ({limit})' if limit else ''} before answering: "
                               "raise MOSAIC_MAX_TOKENS", retryable=False)
        raise BackendError(f"{where} returned an empty answer", retryable=True)
    if memo is not None:
        memo.put(key, content, reply.usage)
    return reply.model_copy(update={"elapsed_s": round(time.monotonic() - started, 3), "retried": retried})


def shorter(call: ModelCall) -> ModelCall:
    """The call again with half the token limit: a loop ends sooner, and what it listed whole is kept."""
    limit = int(call.options.get("max_tokens") or 1024)
    return call.model_copy(update={"options": call.options | {"max_tokens": max(64, limit // 2)}})


def read_reply(call: ModelCall, content: str, usage: dict, cached: bool = False) -> ModelReply:
    """The reply as the pipeline reads it: the answer without the model's thinking (kept aside), with the call's
    profile (how to read its boxes)."""
    answer, thinking = strip_thinking(content)
    return ModelReply(content=answer, thinking=thinking, cached=cached, usage=dict(usage or {}), profile=call.profile)


def cached_reply(call: ModelCall, memo: Memo | None) -> ModelReply | None:
    """The memo's answer to exactly this call, or None."""
    hit = memo.get(call.key()) if memo is not None else None
    return read_reply(call, hit["content"], hit.get("usage") or {}, cached=True) if hit is not None else None



def backend_address(model: str, api_base: str | None) -> str:
    return Backend.create(model, api_base).address


def retry_after(error: Exception) -> float | None:
    """Seconds from a Retry-After header on the failed response, if the server sent one."""
    headers = getattr(error, "litellm_response_headers", None) or getattr(getattr(error, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def api_key_for(call: ModelCall) -> str | None:
    """MOSAIC_API_KEY, else the provider's own variable; a local OpenAI-compatible server needs none, but the
    OpenAI client insists on one, so it gets a placeholder."""
    key = os.environ.get("MOSAIC_API_KEY")
    if not key and call.model.startswith("openai/") and call.api_base:
        key = os.environ.get("OPENAI_API_KEY") or "no-key-needed"
    return key or None


def build_messages(call: ModelCall, blobs: BlobStore) -> list[dict]:
    parts: list[dict] = [{"type": "text", "text": call.prompt}]
    for sha in call.images:
        parts.append({"type": "image_url", "image_url": {"url": _data_url(str(blobs.directory), sha)}})
    return [{"role": "system", "content": call.system}, {"role": "user", "content": parts}]


@lru_cache(maxsize=32)
def _data_url(directory: str, sha: str) -> str:
    """A crop as a data URL, kept for the next calls that show it (a view's phases, its tile's synthesis): the
    crop is content-addressed, so the same sha is the same bytes."""
    image = BlobStore(Path(directory)).get(sha)
    return f"data:{image_mime(image)};base64,{base64.b64encode(image).decode()}"


def classify(error: Exception, call: ModelCall, api_key: str | None) -> BackendError:
    import litellm

    where = backend_address(call.model, call.api_base)
    status = getattr(error, "status_code", None)
    detail = _first_line(str(error), api_key)
    if isinstance(status, int) and str(status) not in detail:
        detail = f"HTTP {status}: {detail}"
    text = detail.lower()
    if isinstance(error, litellm.NotFoundError) or status == 404 or ("not found" in text and "model" in text):
        return BackendError(f"model '{call.model}' not found at {where} ({detail})", retryable=False)
    if isinstance(error, litellm.ContextWindowExceededError) or "exceed_context_size" in text or (
            "context" in text and "exceed" in text):
        return BackendError(context_overflow_line(call, where), retryable=False)
    if isinstance(error, (litellm.AuthenticationError, litellm.PermissionDeniedError)) or status in (401, 403):
        return BackendError(f"{where} refused the credentials ({detail})", retryable=False)
    if "llm provider not provided" in text or isinstance(error, getattr(litellm, "LiteLLMUnknownProvider", ())):
        return BackendError(f"unknown model {call.model!r}: use a LiteLLM model string such as "
                            "ollama_chat/qwen2.5vl:7b or openai/<name> with --api-base", retryable=False)
    if isinstance(error, litellm.BadRequestError) and not isinstance(error, litellm.RateLimitError) or status in (400, 422):
        return BackendError(f"{where} rejected the request ({detail})", retryable=False)
    if isinstance(error, litellm.Timeout):
        return BackendError(f"{where} did not answer in time ({detail})", retryable=True)
    if isinstance(error, litellm.APIConnectionError) and "connect" in text:
        return BackendError(f"cannot reach the backend at {where} ({detail})", retryable=True)
    return BackendError(f"{where} failed: {detail}", retryable=True)


def context_overflow_line(call: ModelCall, where: str) -> str:
    """What to change when an image and prompt overflow the server's context (Ollama: HTTP 400
    exceed_context_size_error; its default num_ctx is 4k below 24 GiB of GPU memory)."""
    num_ctx = call.options.get("num_ctx")
    now = f" (now {num_ctx})" if num_ctx else ""
    return (f"{where}: the image and prompt overflow the model's context: raise num_ctx (MOSAIC_NUM_CTX{now}, or the "
            "server's own context size), or send smaller crops (a smaller --budget / MOSAIC_VIEW_PX)")


def _first_line(message: str, secret: str | None) -> str:
    line = next((s.strip() for s in message.splitlines() if s.strip()), "no detail")
    if secret:
        line = line.replace(secret, "***")
    line = line.replace("litellm.", "")
    line = re.sub(r"^(?:\w+(?:Error|Exception)\s*[:-]\s*)+", "", line).strip() or line  # LiteLLM's nested class names
    return line if len(line) <= 300 else line[:299] + "…"


def _usage(response) -> dict[str, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return {}
    fields = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {f: int(getattr(usage, f, 0) or 0) for f in fields}


_LITELLM = None


def _litellm():
    """Import LiteLLM once, when a call first reaches a backend through it (it is slow to import)."""
    global _LITELLM
    if _LITELLM is None:
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        _LITELLM = litellm
    return _LITELLM
