"""The loopback model server: both API styles, faults, slots, and LiteLLM driving it for real."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mosaic.offline.server import Fault, ModelServer

ROOT = Path(__file__).resolve().parent.parent


def _png_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


PNG = _png_b64()
DATA_URL = "data:image/png;base64," + PNG
OPENAI_MSGS = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "read this"},
                                 {"type": "image_url", "image_url": {"url": DATA_URL}}]},
]


class Recorder:
    """An answer function that remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict], str]] = []

    def __call__(self, messages: list[dict], model: str) -> str:
        self.calls.append((messages, model))
        return f"{model} saw {len(messages)} messages"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder):
    with ModelServer(recorder) as srv:
        yield srv


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def openai_chat(client: httpx.Client, srv: ModelServer, text: str = "hi", **extra) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    return client.post(srv.openai_base + "/chat/completions", json=body)


def ollama_chat(client: httpx.Client, srv: ModelServer, text: str = "hi", **extra) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], "stream": False, **extra}
    return client.post(srv.url + "/api/chat", json=body)


# -- OpenAI style --

def test_openai_non_streaming(server: ModelServer, client: httpx.Client, recorder: Recorder) -> None:
    r = client.post(server.openai_base + "/chat/completions", json={"model": "m", "messages": OPENAI_MSGS})
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "m saw 2 messages"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"] > 0
    assert recorder.calls == [(OPENAI_MSGS, "m")]
    [req] = server.requests
    assert (req.path, req.model, req.text, req.n_images, req.status) == (
        "/v1/chat/completions", "m", "be brief\nread this", 1, 200)


def _sse_events(r: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in r.text.split("\n\n") if line.startswith("data: ")]


def test_openai_streaming(server: ModelServer, client: httpx.Client) -> None:
    r = openai_chat(client, server, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(ch["delta"].get("content", "") for c in chunks for ch in c["choices"])
    assert text == "m saw 1 messages"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


# -- Ollama style --

def test_ollama_non_streaming(server: ModelServer, client: httpx.Client, recorder: Recorder) -> None:
    msgs = [{"role": "user", "content": "read this", "images": [PNG]}]
    r = client.post(server.url + "/api/chat", json={"model": "m", "messages": msgs, "stream": False})
    assert r.status_code == 200
    data = r.json()
    assert data["message"] == {"role": "assistant", "content": "m saw 1 messages"}
    assert data["done"] is True and data["done_reason"] == "stop" and data["model"] == "m"
    assert data["prompt_eval_count"] > 0 and data["eval_count"] > 0 and "total_duration" in data
    # Normalised to OpenAI parts before reaching the answer function.
    assert recorder.calls == [([{"role": "user", "content": [
        {"type": "text", "text": "read this"},
        {"type": "image_url", "image_url": {"url": DATA_URL}}]}], "m")]
    assert server.requests[0].n_images == 1


@pytest.mark.parametrize("stream", [True, None])  # None: field absent, Ollama's default is to stream
def test_ollama_streaming(server: ModelServer, client: httpx.Client, stream: bool | None) -> None:
    body: dict = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if stream is not None:
        body["stream"] = stream
    r = client.post(server.url + "/api/chat", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) > 2
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == "m saw 1 messages"
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] > 0


@pytest.mark.parametrize("image", [DATA_URL, "not base64!", PNG[:-1]])
def test_ollama_rejects_non_bare_base64(server: ModelServer, client: httpx.Client, recorder: Recorder,
                                        image: str) -> None:
    msgs = [{"role": "user", "content": "x", "images": [image]}]
    r = client.post(server.url + "/api/chat", json={"model": "m", "messages": msgs, "stream": False})
    assert r.status_code == 400
    assert r.json()["error"].startswith("illegal base64 data at input byte ")
    assert recorder.calls == []
    assert server.requests[0].status == 400 and server.chat_requests() == []


def test_other_ollama_endpoints() -> None:
    with ModelServer(lambda m, model: "", models=["a", "b"]) as srv, httpx.Client() as c:
        assert c.get(srv.url + "/").text == "Ollama is running"
        assert [m["name"] for m in c.get(srv.url + "/api/tags").json()["models"]] == ["a", "b"]
        assert [m["id"] for m in c.get(srv.openai_base + "/models").json()["data"]] == ["a", "b"]
        assert c.post(srv.url + "/api/show", json={"name": "a"}).status_code == 200
        assert c.post(srv.url + "/api/show", json={"name": "zz"}).status_code == 404


# -- errors --

def test_unknown_model_404_in_both_styles(client: httpx.Client) -> None:
    with ModelServer(lambda m, model: "ok", models=["m"]) as srv:
        assert openai_chat(client, srv).status_code == 200
        r = client.post(srv.openai_base + "/chat/completions",
                        json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 404
        assert r.json() == {"error": {"message": "model 'x' not found", "type": "not_found_error",
                                      "code": "model_not_found"}}
        r = client.post(srv.url + "/api/chat",
                        json={"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": False})
        assert r.status_code == 404
        assert r.json() == {"error": "model 'x' not found"}
        assert [q.status for q in srv.requests] == [200, 404, 404]


def test_answer_exception_is_500(client: httpx.Client) -> None:
    def broken(messages: list[dict], model: str) -> str:
        raise ValueError("reader exploded")

    with ModelServer(broken) as srv:
        r = openai_chat(client, srv)
        assert r.status_code == 500 and "reader exploded" in r.json()["error"]["message"]
        r = ollama_chat(client, srv)
        assert r.status_code == 500 and "reader exploded" in r.json()["error"]


# -- faults --

def test_fault_status_with_retry_after(server: ModelServer, client: httpx.Client) -> None:
    server.add_fault(Fault(status=429, retry_after=2))
    r = openai_chat(client, server)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert openai_chat(client, server).status_code == 200


def test_fault_times_consumed_then_success(server: ModelServer, client: httpx.Client, recorder: Recorder) -> None:
    server.add_fault(Fault(status=503, times=2))
    assert [ollama_chat(client, server).status_code for _ in range(3)] == [503, 503, 200]
    assert [q.status for q in server.requests] == [503, 503, 200]
    assert len(server.chat_requests()) == 1 and len(server.chat_requests(answered_only=False)) == 3
    assert len(recorder.calls) == 1


def test_fault_forever_and_raw_body(server: ModelServer, client: httpx.Client) -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    server.add_fault(Fault(status=502, times=-1, body=page))
    for _ in range(3):
        r = openai_chat(client, server)
        assert (r.status_code, r.text) == (502, page)
        assert r.headers["content-type"].startswith("text/html")


def test_fault_status_0_closes_connection(server: ModelServer, client: httpx.Client) -> None:
    server.add_fault(Fault(status=0))
    with pytest.raises(httpx.RemoteProtocolError):
        openai_chat(client, server)
    assert openai_chat(client, server).status_code == 200
    assert [q.status for q in server.requests] == [0, 200]


def test_fault_match_filter(server: ModelServer, client: httpx.Client) -> None:
    server.add_fault(Fault(status=500, match="tile 3", times=-1))
    assert openai_chat(client, server, text="read tile 1").status_code == 200
    assert openai_chat(client, server, text="read tile 3").status_code == 500
    assert ollama_chat(client, server, text="tile 3 again").status_code == 500
    assert ollama_chat(client, server, text="tile 2").status_code == 200


def test_fault_delay_times_out_the_client(server: ModelServer) -> None:
    server.add_fault(Fault(status=500, delay=1.0))
    with httpx.Client(timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        openai_chat(c, server)


# -- latency, slots, bookkeeping --

def _parallel(srv: ModelServer, n: int) -> float:
    """Send n chat requests at once from n threads; return the wall time until all are answered."""
    statuses: list[int] = []
    with httpx.Client(timeout=10) as client:  # one shared client: creating one per thread is slow
        def call(i: int) -> None:
            statuses.append(openai_chat(client, srv, text=f"req {i}").status_code)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    assert statuses == [200] * n
    return elapsed


def _max_overlap(srv: ModelServer) -> int:
    edges = sorted([(q.started, 1) for q in srv.requests] + [(q.finished, -1) for q in srv.requests])
    depth = peak = 0
    for _, step in edges:
        depth += step
        peak = max(peak, depth)
    return peak


def test_latency_and_slots() -> None:
    with ModelServer(lambda m, model: "ok", latency=0.2, slots=2) as srv:
        elapsed = _parallel(srv, 4)
        assert 0.4 <= elapsed < 2.0
        assert len(srv.requests) == 4 and _max_overlap(srv) == 2
        assert all(q.finished - q.started >= 0.2 for q in srv.requests)


def test_latency_without_slot_limit_runs_in_parallel() -> None:
    with ModelServer(lambda m, model: "ok", latency=0.3) as srv:
        elapsed = _parallel(srv, 4)
        assert 0.3 <= elapsed < 0.55  # two slots would need 0.6 s
        assert _max_overlap(srv) == 4


def test_requests_recorded_in_order(server: ModelServer, client: httpx.Client) -> None:
    for i in range(3):
        openai_chat(client, server, text=f"first {i}")
        ollama_chat(client, server, text=f"second {i}")
    assert [q.text for q in server.requests] == [f"{w} {i}" for i in range(3) for w in ("first", "second")]
    assert [q.path for q in server.requests] == ["/v1/chat/completions", "/api/chat"] * 3
    assert all(q.started <= q.finished for q in server.requests)


# -- LiteLLM, exactly as the product calls it --

def test_litellm_drives_both_styles(server: ModelServer) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    r = litellm.completion(model="openai/m", api_base=server.openai_base, api_key="x", messages=OPENAI_MSGS)
    assert r.choices[0].message.content == "m saw 2 messages"
    r = litellm.completion(model="ollama_chat/m", api_base=server.url, messages=OPENAI_MSGS)
    assert r.choices[0].message.content == "m saw 2 messages"
    # LiteLLM also POSTs /api/show for Ollama models in the background; only chat calls are recorded.
    reqs = server.chat_requests()
    assert [(q.path, q.model, q.n_images) for q in reqs] == [("/v1/chat/completions", "m", 1), ("/api/chat", "m", 1)]
    assert all("read this" in q.text for q in reqs)


# -- the command line --

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_main_serves_the_reader_and_stops_cleanly_on_ctrl_c() -> None:
    # A stand-in reader, so this tests the server's command line and not the reader.
    script = (
        "import sys, types\n"
        "fake = types.ModuleType('mosaic.offline.reader')\n"
        "class OfflineReader:\n"
        "    def __init__(self, budget): self.budget = budget\n"
        "    def answer(self, messages): return f'read with ocr-{self.budget}'\n"
        "fake.OfflineReader = OfflineReader\n"
        "sys.modules['mosaic.offline.reader'] = fake\n"
        "from mosaic.offline.server import main\n"
        "main(sys.argv[1:])\n"
    )
    port = _free_port()
    # Ctrl-C as in a terminal, also when this suite itself runs in the background (which ignores SIGINT,
    # and a child would inherit that)
    proc = subprocess.Popen([sys.executable, "-c", script, "--port", str(port), "--budget", "640"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert line.strip() == (f"serving Mosaic's offline reader on http://127.0.0.1:{port} "
                                "(OpenAI: /v1, Ollama: /api/chat)")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=10) as c:
            r = c.post(base + "/v1/chat/completions",
                       json={"model": "offline", "messages": [{"role": "user", "content": "x"}]})
            assert r.json()["choices"][0]["message"]["content"] == "read with ocr-640"
            for model, seen in [("offline:896", "ocr-896"), ("ocr-1024", "ocr-1024")]:
                r = c.post(base + "/api/chat",
                           json={"model": model, "messages": [{"role": "user", "content": "x"}], "stream": False})
                assert r.json()["message"]["content"] == f"read with {seen}"
            assert [m["id"] for m in c.get(base + "/v1/models").json()["data"]] == ["ocr-640"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
