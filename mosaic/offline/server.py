"""A stdlib-only loopback HTTP model server speaking both the OpenAI and the Ollama chat APIs.

Answers come from a plain callable. Tests use it as "a real local backend" (faults, latency,
parallel slots, a request log); users serve the offline reader with
`python -m mosaic.offline.server --port 8080`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..images import image_mime

Answer = Callable[[list[dict], str], str]  # (openai-style messages, model name) -> assistant text

OPENAI_CHAT = ("/v1/chat/completions", "/chat/completions")
OLLAMA_CHAT = "/api/chat"
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error"}


@dataclass
class Fault:
    """One injected fault rule; the first active rule matching a chat request applies."""

    status: int = 500  # 0 = close the connection without a response
    times: int = 1  # -1 = forever
    match: str = ""  # only requests whose text content contains this
    body: str | None = None  # raw body; default a JSON error in the API's style
    retry_after: float | None = None
    delay: float = 0.0


@dataclass
class Request:
    """One chat request as the server saw it. `status` is the HTTP status sent (0: connection
    closed, -1: not decided yet); `started`/`finished` are time.monotonic() values bracketing
    the work (for an answered request: while it held a slot, `latency` included)."""

    path: str
    model: str
    text: str
    n_images: int
    status: int
    started: float = 0.0
    finished: float = 0.0
    schema: dict | str | None = None  # the answer's JSON Schema the request asked for (response_format / format)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _tokens(text: str) -> int:
    return len(text) // 4 + 1  # rough, good enough for usage fields


def _pieces(text: str) -> Iterator[str]:
    """Split an answer into stream chunks (words with their trailing whitespace)."""
    yield from re.findall(r"\S+\s*|\s+", text) or [""]


def _data_url(data: Any) -> str:
    """Bare base64 -> data URL; anything else (a data: URL too) is refused the way Ollama does."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        text = data if isinstance(data, str) else ""
        bad = next((i for i, ch in enumerate(text) if ch not in _B64_ALPHABET), len(text))
        raise _HTTPError(400, f"illegal base64 data at input byte {bad}") from None
    return f"data:{image_mime(raw)};base64,{data}"


def _openai_view(messages: list[dict]) -> tuple[str, int]:
    texts, n_images = [], 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    texts.append(str(part.get("text", "")))
                elif part.get("type") == "image_url":
                    n_images += 1
    return "\n".join(texts), n_images


def _ollama_view(messages: list[dict]) -> tuple[str, int]:
    text = "\n".join(str(m.get("content") or "") for m in messages)
    return text, sum(len(m.get("images") or []) for m in messages)


def _ollama_to_openai(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        content = str(m.get("content") or "")
        images = m.get("images") or []
        if images:
            parts: list[dict] = [{"type": "text", "text": content}] if content else []
            parts += [{"type": "image_url", "image_url": {"url": _data_url(b)}} for b in images]
            out.append({"role": m.get("role", "user"), "content": parts})
        else:
            out.append({"role": m.get("role", "user"), "content": content})
    return out


def _asked_schema(body: dict, openai: bool) -> dict | str | None:
    if openai:
        fmt = body.get("response_format")
        if not isinstance(fmt, dict):
            return None
        return (fmt.get("json_schema") or {}).get("schema") or fmt.get("type")
    fmt = body.get("format")
    return fmt if isinstance(fmt, (dict, str)) and fmt else None


class ModelServer:
    def __init__(self, answer: Answer, *, models: list[str] | None = None, latency: float = 0.0,
                 slots: int | None = None, host: str = "127.0.0.1", port: int = 0,
                 listed: list[str] | None = None, encoder_px: Callable[[str], int | None] | None = None,
                 refuse_schema: bool = False):
        """`models` restricts the accepted model names (others get 404); `listed` is what
        /v1/models and /api/tags show when `models` is None; `encoder_px(model)` is the vision encoder size
        /api/show reports, as Ollama does ('<family>.vision.image_size' in model_info); `refuse_schema`: a request
        asking for structured output (response_format, Ollama's format) gets a 400, as some servers answer."""
        self.answer = answer
        self.refuse_schema = refuse_schema
        self.encoder_px = encoder_px
        self.models = models
        self.listed = listed if listed is not None else list(models or [])
        self.latency = latency
        self.host, self.port = host, port
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(slots) if slots else None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ModelServer is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self._httpd.server_address[1]}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def chat_requests(self, answered_only: bool = True) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.status == 200 or not answered_only]

    def start(self) -> ModelServer:
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.model_server = self
        self._httpd = httpd
        # A short poll interval keeps stop() fast (the default 0.5 s adds up over a test suite).
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="mosaic-model-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler --

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_fault(self, text: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times != 0 and fault.match in text:
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def _check_model(self, model: str) -> None:
        if self.models is not None and model not in self.models:
            raise _HTTPError(404, f"model '{model}' not found", code="model_not_found")

    def _run(self, messages: list[dict], model: str, record: Request) -> str:
        """Call `answer` in a slot, taking at least `latency` seconds."""
        if self._slots is not None:
            self._slots.acquire()
        try:
            record.started = time.monotonic()
            try:
                return self.answer(messages, model)
            finally:
                time.sleep(max(0.0, record.started + self.latency - time.monotonic()))
                record.finished = time.monotonic()
        finally:
            if self._slots is not None:
                self._slots.release()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    model_server: ModelServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is not our problem; stay quiet


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like real backends
    # Headers and body leave in one write with no Nagle delay: unbuffered writes of the status line, headers and
    # body as separate small segments cost ~40 ms per answer (Nagle against the client's delayed ACK).
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing --

    def _send(self, status: int, body: bytes | str | dict, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        ctype = {b"{": "application/json", b"<": "text/html; charset=utf-8"}.get(
            data.lstrip()[:1], "text/plain; charset=utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, ctype: str, chunks: Iterator[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            data = chunk.encode()
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _error(self, openai: bool, status: int, message: str, headers: dict[str, str] | None = None,
               code: str | None = None) -> None:
        if openai:
            kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
            self._send(status, {"error": {"message": message, "type": kind, "code": code or status}}, headers)
        else:
            self._send(status, {"error": message}, headers)

    def _read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as e:
            raise _HTTPError(400, f"invalid JSON body: {e}") from None
        if not isinstance(data, dict):
            raise _HTTPError(400, "the body must be a JSON object")
        return data

    # -- routes --

    def do_GET(self) -> None:
        ms, path = self.server.model_server, self.path.split("?")[0].rstrip("/")
        if path == "":
            self._send(200, "Ollama is running")
        elif path in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "mosaic"} for m in ms.listed]})
        elif path == "/api/tags":
            self._send(200, {"models": [
                {"name": m, "model": m, "modified_at": _now_iso(), "size": 0, "digest": "0" * 64,
                 "details": {"format": "gguf", "family": "mosaic", "parameter_size": "0B",
                             "quantization_level": "none"}} for m in ms.listed]})
        else:
            self._error(not path.startswith("/api/"), 404, f"no route for GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        openai = path in OPENAI_CHAT
        try:
            body = self._read_json()
            if openai or path == OLLAMA_CHAT:
                self._chat(path, openai, body)
            elif path == "/api/show":
                ms, model = self.server.model_server, str(body.get("model") or body.get("name") or "")
                ms._check_model(model)
                px = ms.encoder_px(model) if ms.encoder_px else None
                self._send(200, {"modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                                 "details": {"format": "gguf", "family": "mosaic"},
                                 "model_info": {"mosaic.vision.image_size": px} if px else {},
                                 "capabilities": ["completion", "vision"]})
            else:
                raise _HTTPError(404, f"no route for POST {path}")
        except _HTTPError as e:
            self._error(openai, e.status, str(e), code=e.code)

    def _chat(self, path: str, openai: bool, body: dict) -> None:
        ms = self.server.model_server
        model = str(body.get("model") or "")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _HTTPError(400, "'messages' must be a list of objects")
        text, n_images = (_openai_view if openai else _ollama_view)(messages)
        record = Request(path, model, text, n_images, status=-1, schema=_asked_schema(body, openai))
        ms._record(record)  # recorded on arrival, so `requests` is in arrival order
        record.started = time.monotonic()
        fault = ms._take_fault(text)
        try:
            if fault is not None:
                self._fault(fault, openai, record)
                return
            ms._check_model(model)
            if ms.refuse_schema and record.schema is not None:
                raise _HTTPError(400, "response_format is not supported by this server")
            if not openai:
                messages = _ollama_to_openai(messages)
            try:
                answer = ms._run(messages, model, record)
            except Exception as e:
                raise _HTTPError(500, f"{type(e).__name__}: {e}") from None
        except _HTTPError as e:
            record.status, record.finished = e.status, record.finished or time.monotonic()
            raise
        record.status = 200
        prompt, completion = _tokens(text) + 256 * n_images, _tokens(answer)
        # Ollama streams unless told otherwise; OpenAI only when asked.
        stream = bool(body.get("stream", False if openai else True))
        if openai:
            self._openai_reply(body, model, answer, stream, prompt, completion)
        else:
            self._ollama_reply(model, answer, stream, prompt, completion)

    def _fault(self, fault: Fault, openai: bool, record: Request) -> None:
        time.sleep(fault.delay)
        record.status, record.finished = fault.status, time.monotonic()
        if fault.status == 0:
            self.close_connection = True  # handler returns without writing: the socket just closes
            return
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:f}".rstrip("0").rstrip(".")}
        if fault.body is not None:
            self._send(fault.status, fault.body, headers)
        else:
            self._error(openai, fault.status, f"injected fault (HTTP {fault.status})", headers)

    def _openai_reply(self, body: dict, model: str, answer: str, stream: bool, prompt: int,
                      completion: int) -> None:
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if not stream:
            self._send(200, {"id": rid, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                          "finish_reason": "stop"}], "usage": usage})
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunks() -> Iterator[str]:
            head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
            for i, piece in enumerate(_pieces(answer)):
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                yield f"data: {json.dumps(head | {'choices': [choice]})}\n\n"
            choice = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield f"data: {json.dumps(head | {'choices': [choice]})}\n\n"
            if include_usage:
                yield f"data: {json.dumps(head | {'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        self._stream("text/event-stream", chunks())

    def _ollama_reply(self, model: str, answer: str, stream: bool, prompt: int, completion: int) -> None:
        final = {"model": model, "created_at": _now_iso(), "message": {"role": "assistant", "content": answer},
                 "done": True, "done_reason": "stop", "total_duration": 1_000_000, "load_duration": 0,
                 "prompt_eval_count": prompt, "prompt_eval_duration": 500_000,
                 "eval_count": completion, "eval_duration": 500_000}
        if not stream:
            self._send(200, final)
            return

        def lines() -> Iterator[str]:
            for piece in _pieces(answer):
                yield json.dumps({"model": model, "created_at": _now_iso(),
                                  "message": {"role": "assistant", "content": piece}, "done": False}) + "\n"
            yield json.dumps(final | {"message": {"role": "assistant", "content": ""}}) + "\n"

        self._stream("application/x-ndjson", lines())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mosaic.offline.server",
                                     description="Serve Mosaic's offline reader over the OpenAI and Ollama APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--budget", type=int, default=448,
                        help="image budget (px) when the model name carries none ('ocr-896' or 'offline:896' do)")
    parser.add_argument("--latency", type=float, default=0.0, help="minimum seconds per answer")
    parser.add_argument("--slots", type=int, default=None, help="answers computed at once (default: unlimited)")
    args = parser.parse_args(argv)

    from mosaic.backend import budget_in_name
    from mosaic.offline.reader import OfflineReader

    readers: dict[int, OfflineReader] = {}

    def budget(model: str) -> int:
        # a name ending in "ocr-<px>" or Mosaic's own "offline:<px>" states its budget; any other gets --budget
        return budget_in_name(model) or args.budget

    def reader(messages: list[dict], model: str) -> str:
        px = budget(model)
        return readers.setdefault(px, OfflineReader(px)).answer(messages)

    server = ModelServer(reader, latency=args.latency, slots=args.slots, host=args.host, port=args.port,
                         listed=[f"ocr-{args.budget}"], encoder_px=budget)
    serve_until_interrupted(server, parser, "Mosaic's offline reader")


def serve_until_interrupted(server: ModelServer, parser: argparse.ArgumentParser, what: str) -> None:
    """Start the server, print its address, serve until Ctrl-C; a port that is taken is one line and exit 2."""
    try:
        server.start()
    except OSError as e:
        parser.exit(2, f"cannot listen on {server.host}:{server.port}: {e.strerror or e}\n")
    print(f"serving {what} on {server.url} (OpenAI: /v1, Ollama: /api/chat)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
