import json
import sqlite3
import zlib

import pytest

from mosaic.backend import Backend
from mosaic.errors import BackendError
from mosaic.llm import call_model
from mosaic.memo import BlobStore, Memo
from mosaic.offline.server import Fault, ModelServer
from mosaic.schema import ModelCall

from conftest import fake_vlm


def base_call(**changes) -> ModelCall:
    fields = dict(model="openai/fake-vl", api_base="http://127.0.0.1:9/v1", system="s", prompt="p",
                  images=["a" * 64], options={"temperature": 0.0, "max_tokens": 100})
    fields.update(changes)
    return ModelCall(**fields)


@pytest.mark.parametrize("change", [
    {"model": "openai/other"}, {"api_base": "http://127.0.0.1:10/v1"}, {"prompt": "p2"}, {"system": "s2"},
    {"images": ["b" * 64]}, {"images": []}, {"options": {"temperature": 0.7, "max_tokens": 100}},
    {"options": {"temperature": 0.0, "max_tokens": 100, "num_ctx": 8192}},
])
def test_what_changes_the_key(change):
    assert base_call(**change).key() != base_call().key()


def test_what_does_not_change_the_key(monkeypatch):
    key = base_call().key()
    assert base_call(options={"max_tokens": 100, "temperature": 0.0}).key() == key  # option order
    monkeypatch.setenv("MOSAIC_API_KEY", "sk-secret-1")
    assert base_call().key() == key  # the API key is never part of it
    assert "sk-secret" not in base_call().model_dump_json()


@pytest.fixture
def stores(tmp_path):
    return BlobStore(tmp_path / "blobs"), Memo(tmp_path / "memo")


def test_hit_makes_no_network_call_and_entries_are_json(stores, tmp_path):
    blobs, memo = stores
    image = blobs.put(b"\x89PNG fake bytes")
    with ModelServer(fake_vlm) as server:
        call = base_call(api_base=server.openai_base, images=[image], prompt="Mosaic task: text\nread")
        first = call_model(call, blobs, memo)
        second = call_model(call, blobs, memo)
        assert (first.cached, second.cached) == (False, True)
        assert second.content == first.content
        assert len(server.chat_requests()) == 1
    raw = sqlite3.connect(tmp_path / "memo" / "calls" / "cache.db").execute("select key, value, mode from Cache").fetchall()
    assert len(raw) == 1
    key, value, mode = raw[0]
    assert mode != 4  # diskcache's mode 4 is a pickle; JSONDisk stores zlib-compressed JSON
    assert json.loads(zlib.decompress(key)) == call.key()
    assert json.loads(zlib.decompress(value))["content"] == first.content


def test_errors_are_never_memoized(stores):
    blobs, memo = stores
    with ModelServer(fake_vlm) as server:
        server.add_fault(Fault(status=503, times=1))
        call = base_call(api_base=server.openai_base, images=[], prompt="Mosaic task: orientation")
        with pytest.raises(BackendError) as failure:
            call_model(call, blobs, memo)
        assert failure.value.retryable and server.url.split("//")[1] in str(failure.value)
        assert memo.get(call.key()) is None
        assert call_model(call, blobs, memo).cached is False


def test_unknown_model_is_not_retryable_and_named(stores):
    blobs, memo = stores
    with ModelServer(fake_vlm, models=["fake-vl"]) as server:
        with pytest.raises(BackendError) as failure:
            call_model(base_call(model="openai/nope", api_base=server.openai_base, images=[]), blobs, memo)
    assert not failure.value.retryable
    assert "not found" in str(failure.value) and server.openai_base in str(failure.value)


def test_damaged_entry_is_detected_and_recomputed(stores):
    blobs, memo = stores
    memo.put("k", "an answer")
    memo._cache.set("k", {"format": 1, "content": "tampered", "usage": {}, "check": "0" * 64})
    assert memo.get("k") is None
    assert "k" not in memo._cache


def test_blob_store_is_content_addressed(stores):
    blobs, _ = stores
    sha = blobs.put(b"abc")
    assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert blobs.put(b"abc") == sha and blobs.get(sha) == b"abc"
    blobs.path(sha).write_bytes(b"abd")
    with pytest.raises(OSError, match="damaged"):
        blobs.get(sha)


def test_a_prepared_plan_is_kept_by_content_so_a_rerun_decodes_and_cuts_nothing(tmp_path, monkeypatch):
    from PIL import Image

    import mosaic.pipeline as pipeline
    from mosaic.memo import BlobStore

    Image.new("RGB", (900, 600), (40, 90, 140)).save(tmp_path / "a.png")
    blobs = BlobStore(tmp_path / "blobs")
    first = pipeline.prepare(str(tmp_path / "a.png"), "light", "3x2", ["text"], Backend(model="openai/x"), blobs)
    (tmp_path / "a.png").rename(tmp_path / "moved.png")
    decoded = []
    real_decode = pipeline.decode_image
    monkeypatch.setattr(pipeline, "decode_image", lambda data, name: decoded.append(name) or real_decode(data, name))

    again = pipeline.prepare(str(tmp_path / "moved.png"), "light", "3x2", ["text"], Backend(model="openai/x"), blobs)
    assert decoded == [] and again.image_path == str(tmp_path / "moved.png")
    assert again.model_dump(exclude={"image_path"}) == first.model_dump(exclude={"image_path"})

    pipeline.prepare(str(tmp_path / "moved.png"), "light", "2x2", ["text"], Backend(model="openai/x"), blobs)  # other settings
    assert len(decoded) == 1
    blobs.path(first.views[3].image_sha256).unlink()  # a crop pruned from the store: cut again
    assert pipeline.prepare(str(tmp_path / "moved.png"), "light", "3x2", ["text"], Backend(model="openai/x"), blobs) == again
    assert len(decoded) == 2 and blobs.has(first.views[3].image_sha256)
