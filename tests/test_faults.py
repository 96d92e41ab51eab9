"""Backend faults injected at a real loopback server: retried where it helps, named clearly, never memoized."""

import time

import pytest

from mosaic.errors import BackendError
from mosaic.llm import call_model
from mosaic.memo import BlobStore, Memo
from mosaic.offline.server import Fault, ModelServer
from mosaic.schema import ModelCall

from conftest import fake_vlm

HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
OVERFLOW = '{"error": {"message": "the request exceeds the available context size, try increasing it", "type": "invalid_request_error", "code": 400}}'


@pytest.fixture
def server():
    with ModelServer(fake_vlm, models=["fake-vl"]) as s:
        yield s


@pytest.fixture
def stores(tmp_path):
    return BlobStore(tmp_path / "blobs"), Memo(tmp_path / "memo")


def calls_for(server, style):
    if style == "openai":
        return ModelCall(model="openai/fake-vl", api_base=server.openai_base, system="s", prompt="Mosaic task: orientation\nlook")
    return ModelCall(model="ollama_chat/fake-vl", api_base=server.url, system="s", prompt="Mosaic task: orientation\nlook")


FAULTS = [
    # (fault, retryable, words in the error)
    (Fault(status=429, retry_after=1), True, "429"),
    (Fault(status=429), True, "429"),
    (Fault(status=500), True, "500"),
    (Fault(status=503, retry_after=0.2), True, "503"),
    (Fault(status=502, body=HTML), True, "502"),
    (Fault(status=0), True, ""),  # connection closed without an answer
    (Fault(status=200, body="{not json at all"), True, ""),
    (Fault(status=200, body='{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}'), True, "empty answer"),
    (Fault(status=200, body='{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "", "reasoning_content": "Let me think"}, "finish_reason": "length"}]}'), False, "raise MOSAIC_MAX_TOKENS"),
    (Fault(status=400, body=OVERFLOW), False, "context"),
    (Fault(status=400), False, "rejected"),
]


@pytest.mark.parametrize("fault,retryable,words", FAULTS, ids=lambda v: str(getattr(v, "status", v)))
def test_fault_is_classified_named_and_not_memoized(server, stores, fault, retryable, words):
    blobs, memo = stores
    call = calls_for(server, "openai")
    server.add_fault(fault)
    with pytest.raises(BackendError) as failure:
        call_model(call, blobs, memo, timeout_s=10)
    message = str(failure.value)
    assert failure.value.retryable is retryable, message
    assert server.openai_base in message and words.lower() in message.lower()
    assert "\n" not in message and len(message) < 400
    assert memo.get(call.key()) is None
    # the fault was one try: the next call goes through and is memoized
    assert len(server.requests) == 1
    assert call_model(call, blobs, memo, timeout_s=10).cached is False
    assert memo.get(call.key()) is not None


def test_retry_after_is_honoured_before_the_retry(server, tmp_path):
    """One try is one request (call_model); the retry layer (mosaic.steps.ask) waits what the server asked, once."""
    from mosaic.context import RunContext
    from mosaic.engine import Work
    from mosaic.settings import load_settings
    from mosaic.steps import ask

    settings = load_settings(cache_dir=tmp_path / "memo", retries=2, retry_delay_s=0)
    ctx = RunContext.from_settings(settings, "openai/fake-vl", server.openai_base)
    server.add_fault(Fault(status=429, retry_after=1.0))
    with pytest.raises(BackendError) as failure:
        call_model(calls_for(server, "openai"), ctx.blobs, ctx.memo, timeout_s=10)
    assert failure.value.retry_after == 1.0 and failure.value.retryable
    server.add_fault(Fault(status=429, retry_after=1.0, times=2))
    said = []
    started = time.monotonic()
    outcome = ask(Work(kind="view", name="inspect-x", calls=[calls_for(server, "openai")]), ctx, log=said.append)
    waited = time.monotonic() - started
    assert outcome.ok and outcome.retries == 2 and len(said) == 2
    assert 0.9 <= waited < 1.9  # 1 s as asked, then backoff (0 here): Retry-After is honoured once, not twice


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_slow_backend_times_out_with_a_clear_error(server, stores, style):
    blobs, memo = stores
    server.add_fault(Fault(status=200, delay=3.0))
    started = time.monotonic()
    with pytest.raises(BackendError) as failure:
        call_model(calls_for(server, style), blobs, memo, timeout_s=1)
    assert time.monotonic() - started < 2.8
    assert failure.value.retryable and ("in time" in str(failure.value) or "timed out" in str(failure.value).lower())


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_unknown_model_is_final(server, stores, style):
    blobs, memo = stores
    call = calls_for(server, style).model_copy(update={"model": f"{'openai' if style == 'openai' else 'ollama_chat'}/nope"})
    with pytest.raises(BackendError) as failure:
        call_model(call, blobs, memo, timeout_s=10)
    assert not failure.value.retryable and "not found" in str(failure.value)


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_server_gone_mid_run_is_named(stores, style):
    blobs, memo = stores
    server = ModelServer(fake_vlm).start()
    call = calls_for(server, style)
    server.stop()
    with pytest.raises(BackendError) as failure:
        call_model(call, blobs, memo, timeout_s=5)
    assert failure.value.retryable and call.api_base in str(failure.value)


def test_secret_never_reaches_an_error_message(server, stores, monkeypatch):
    blobs, memo = stores
    monkeypatch.setenv("MOSAIC_API_KEY", "sk-test-TOPSECRET-42")
    server.add_fault(Fault(status=401, body='{"error": {"message": "invalid key sk-test-TOPSECRET-42"}}'))
    with pytest.raises(BackendError) as failure:
        call_model(calls_for(server, "openai"), blobs, memo, timeout_s=5)
    assert "TOPSECRET" not in str(failure.value) and "credentials" in str(failure.value)
