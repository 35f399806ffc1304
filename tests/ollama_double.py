"""An Ollama API double: a real HTTP server on 127.0.0.1 that answers like ``ollama serve``.

The one stand-in the tests allow. It speaks the endpoints the official ``ollama`` client uses
(``POST /api/chat`` and ``/api/generate``, streamed as NDJSON with chunked transfer encoding or
not streamed; ``GET /api/tags``, ``POST /api/show``, ``GET /api/version``, ``GET /api/ps``,
``GET``/``HEAD /``), records every request, and can be switched at run time into the ways a real
server fails::

    with OllamaDouble() as double:
        client = ollama.Client(host=double.host)
        double.set_mode("http_503", times=2)   # the next two chat/generate calls get 503
        ...
        assert double.count("/api/chat") == 3

Modes (``double.mode``): ``ok``; ``refuse`` (the port is closed: connection refused);
``missing_model`` (no model is pulled: 404 on chat/generate/show, empty tags); ``http_500``,
``http_503``; ``hang`` (reads the request, never answers); ``drip`` (a 200 whose body arrives
one byte every ``drip_interval`` seconds); ``break_stream`` (two NDJSON lines, then the connection
is cut mid-body); ``bad_json`` (content that is not JSON although a schema was asked for).
Failure modes other than ``refuse`` and ``missing_model`` affect ``/api/chat`` and
``/api/generate`` only, as a busy or broken model runner would.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok",
    "refuse",
    "missing_model",
    "http_500",
    "http_503",
    "hang",
    "drip",
    "break_stream",
    "bad_json",
)
VERSION = "0.12.6"
_MODEL_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "7.2B",
    "quantization_level": "Q4_K_M",
}
BAD_JSON_CONTENT = "The player seemed tense at first, then relieved when the chest opened."


@dataclass
class Recorded:
    method: str
    path: str
    body: Any  # the parsed JSON body, or None
    t: float  # time.monotonic() when the request arrived


def instance_for(schema: Any, name: str = "value") -> Any:
    """A value valid for a (simple) JSON schema: enums take their first member."""
    if not isinstance(schema, dict):
        return f"Canned {name} from the Ollama double."
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: instance_for(v, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance_for(schema.get("items", {}), name)]
    if kind in ("number", "integer"):
        return 0
    if kind == "boolean":
        return True
    return f"Canned {name} from the Ollama double."


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # -- plumbing ---------------------------------------------------------------------------
    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return None

    def _send_json(
        self, status: int, obj: Any, content_type: str = "application/json; charset=utf-8"
    ) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Drop the connection abruptly, mid-response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- verbs ------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.server.double._record("HEAD", self.path, None)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", "17")
        self.end_headers()

    def do_GET(self) -> None:
        double = self.server.double
        double._record("GET", self.path, None)
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self._send_json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            models = [] if double.mode == "missing_model" else double.models
            self._send_json(200, {"models": [double._model_entry(m) for m in models]})
        elif self.path == "/api/ps":
            self._send_json(200, {"models": []})
        else:
            self._send_json(404, {"error": "404 page not found"}, "text/plain")

    def do_POST(self) -> None:
        double = self.server.double
        body = self._read_body()
        double._record("POST", self.path, body)
        if self.path not in ("/api/chat", "/api/generate", "/api/show"):
            self._send_json(404, {"error": "404 page not found"}, "text/plain")
            return
        if not isinstance(body, dict) or not body.get("model"):
            self._send_json(400, {"error": "model is required"})
            return
        model = str(body["model"])
        if double.mode == "missing_model" or not double.has_model(model):
            self._send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        if self.path == "/api/show":
            self._send_json(200, double._show(model))
            return
        mode = double._take_mode()
        if mode == "http_500":
            self._send_json(500, {"error": "llama runner process has terminated: exit status 2"})
        elif mode == "http_503":
            self._send_json(
                503, {"error": "server busy, please try again.  maximum pending requests exceeded"}
            )
        elif mode == "hang":
            double._release.wait(double.hang_max)
            self._cut()  # as a server restarted under a hung request would
        else:
            self._answer(model, body, mode)

    def _answer(self, model: str, body: dict[str, Any], mode: str) -> None:
        double = self.server.double
        chat = self.path == "/api/chat"
        load = not chat and not body.get("prompt")  # an empty generate only loads the model
        content = "" if load else double._content(body, mode)
        release = double._release
        if double.latency:
            release.wait(double.latency)
        pieces = [content[i : i + 12] for i in range(0, len(content), 12)]
        final = double._final(model, chat, "load" if load else "stop", len(pieces))
        if body.get("stream", True) is False and mode not in ("drip", "break_stream"):
            self._send_json(200, {**final, **double._delta(chat, content)})
            return
        lines = [
            {"model": model, "created_at": _now_iso(), **double._delta(chat, p), "done": False}
            for p in pieces
        ]
        lines.append(final)
        encoded = [json.dumps(line).encode() + b"\n" for line in lines]
        self._start_chunked()
        if mode == "drip":
            for byte in b"".join(encoded):
                if release.wait(double.drip_interval):
                    break
                self._chunk(bytes([byte]))
            self._cut()
            return
        for i, line in enumerate(encoded):
            if mode == "break_stream" and i == 2:
                self._cut()
                return
            self._chunk(line)
            if double.chunk_delay:
                time.sleep(double.chunk_delay)
        self._end_chunked()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: OllamaDouble


class OllamaDouble:
    """See the module docstring. ``host`` is what to give ``ollama.Client(host=...)``."""

    def __init__(
        self,
        models: tuple[str, ...] = ("mistral:latest",),
        *,
        reply: Callable[[dict[str, Any]], str] | None = None,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        drip_interval: float = 0.1,
        hang_max: float = 30.0,
    ) -> None:
        self.models = [_full_name(m) for m in models]
        self.reply = reply  # request body -> content; default: a canned answer valid for the schema
        self.latency = latency  # seconds before a chat/generate answer starts
        self.chunk_delay = chunk_delay
        self.drip_interval = drip_interval
        self.hang_max = hang_max
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._mode = "ok"
        self._times: int | None = None
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- life -------------------------------------------------------------------------------
    def start(self) -> OllamaDouble:
        self._release.clear()
        self._listen()
        return self

    def _listen(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.double = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stop(self) -> None:
        self._release.set()  # frees hanging and dripping handlers
        self._close_listener()

    def __enter__(self) -> OllamaDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- modes ------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str, times: int | None = None) -> None:
        """Switch behaviour; with ``times``, only the next ``times`` chat/generate calls fail."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            previous, self._mode, self._times = self._mode, mode, times
        if mode == "refuse" and previous != "refuse":
            self._close_listener()
        elif mode != "refuse" and previous == "refuse":
            self._listen()
        if mode not in ("hang", "drip"):
            self._release.set()  # let earlier hanging handlers go
            self._release = threading.Event()

    def _take_mode(self) -> str:
        with self._lock:
            mode = self._mode
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._mode, self._times = "ok", None
            return mode

    def has_model(self, model: str) -> bool:
        return _full_name(model) in self.models

    # -- records ----------------------------------------------------------------------------
    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append(Recorded(method, path, body, time.monotonic()))

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def recorded(self, path: str) -> list[Recorded]:
        """The requests to ``path`` so far, oldest first (with their arrival times)."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    # -- canned answers ---------------------------------------------------------------------
    def _content(self, body: dict[str, Any], mode: str) -> str:
        if mode == "bad_json":
            return BAD_JSON_CONTENT
        if self.reply is not None:
            return self.reply(body)
        fmt = body.get("format")
        if isinstance(fmt, dict):
            return json.dumps(instance_for(fmt))
        if fmt == "json":
            return json.dumps({"response": "Canned answer from the Ollama double."})
        return "Canned answer from the Ollama double."

    @staticmethod
    def _delta(chat: bool, content: str) -> dict[str, Any]:
        return (
            {"message": {"role": "assistant", "content": content}}
            if chat
            else {"response": content}
        )

    @staticmethod
    def _final(model: str, chat: bool, done_reason: str, eval_count: int) -> dict[str, Any]:
        final: dict[str, Any] = {
            "model": model,
            "created_at": _now_iso(),
            "done": True,
            "done_reason": done_reason,
            "total_duration": 1_250_000_000,
            "load_duration": 25_000_000,
            "prompt_eval_count": 180,
            "prompt_eval_duration": 200_000_000,
            "eval_count": eval_count,
            "eval_duration": 1_000_000_000,
        }
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        return final

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-15T10:00:00.000000Z",
            "size": 4_372_824_384,
            "digest": "f974a74358d62a017b37c6f424fcdf2744ca02926c4f952513ddf474b2fa5091",
            "details": _MODEL_DETAILS,
        }

    def _show(self, model: str) -> dict[str, Any]:
        return {
            "modelfile": f"FROM {_full_name(model)}\n",
            "parameters": 'stop "[INST]"\nstop "[/INST]"',
            "template": "[INST] {{ .Prompt }} [/INST]",
            "details": _MODEL_DETAILS,
            "model_info": {"general.architecture": "llama", "llama.context_length": 32768},
            "capabilities": ["completion", "tools"],
            "modified_at": "2025-01-15T10:00:00.000000Z",
        }
