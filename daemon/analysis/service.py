"""The intent-analysis service: intent markers in, one persisted analysis per ended intent out.

Threads: ``begin``/``end``/``acknowledge``/``undelivered``/``status`` are called by the server
thread; one worker thread (started by ``start``) selects and warms up the LLM backend, then runs
the queued jobs one at a time (one LLM request in flight) and calls ``deliver(client_id, body)``.
Everything a game is owed is on disk (``store.JobStore``) before the call that created it
returns, so a restart re-queues unfinished jobs and keeps unacknowledged results deliverable.

Result reasons: ``summary_only`` with ``no_frames`` (no face in the window, so no LLM call),
``no_llm`` (backend ``none``), ``ollama_unreachable``/``model_missing`` (``auto`` found no LLM) or
``busy`` (below); ``ok`` with ``invalid_response`` when the LLM's prose lacks the requested
structure; ``failed`` with the ``LLMFailure`` reason after the retries, or ``internal``. When no
LLM serves (``no_llm``, or ``auto`` found none) the result's ``llm`` map still says so: backend
``none`` and a ``note`` saying why.

Queue full (``queue_max`` jobs waiting): the intent is not lost. ``end`` still slices the timeline,
computes the summary and persists a ``summary_only`` result with reason ``busy`` (no LLM for it),
then returns ``"busy"``; that result reaches the game through ``undelivered`` like any other.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from daemon.analysis.backends import DEFAULT_MODEL, LLMFailure, LLMResult, Selection, select_backend
from daemon.analysis.prompt import (
    ANALYSIS_SCHEMA,
    DEFAULT_PROMPT_TEMPLATE,
    SYSTEM_PROMPT,
    check_template,
    render_prompt,
)
from daemon.analysis.store import JobStore
from daemon.analysis.summary import render_emotions, summarize

log = logging.getLogger(__name__)

END_RESULTS = ("queued", "duplicate", "unknown_intent", "busy", "invalid")
DEFAULT_BACKOFF_S = 0.5  # first retry delay; doubles per attempt up to DEFAULT_BACKOFF_MAX_S
DEFAULT_BACKOFF_MAX_S = 8.0


class _Timeline(Protocol):
    def slice(self, t0: float, t1: float) -> list[Any]: ...


class AnalysisService:
    """See the module docstring.

    Args:
        timeline: anything with ``slice(t0, t1)`` returning ``FrameResult``s (``daemon.timeline``).
        state_dir: where jobs and results live (created 0o700).
        deliver: ``deliver(client_id, analysis_body)``, called from the worker thread.
        backend_mode: ``auto`` | ``ollama`` | ``embedded`` | ``none`` (see ``select_backend``);
            ``ollama`` and ``embedded`` make ``start`` raise ``LLMFailure`` when unusable.
        host: Ollama host; None lets the ``ollama`` client read ``OLLAMA_HOST`` (loopback default).
        request_timeout: deadline of one LLM request, start to last byte.
        retries: extra attempts after a transient failure (exponential backoff from ``backoff_s``).
        queue_max: jobs waiting for the LLM before ``end`` answers ``busy``.
        reprobe_s: in ``auto`` mode without Ollama, how often to look for it again.
    """

    def __init__(
        self,
        *,
        timeline: _Timeline,
        state_dir: Path,
        deliver: Callable[[str, dict[str, Any]], None],
        backend_mode: str = "auto",
        model: str = DEFAULT_MODEL,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        connect_timeout: float = 2.0,
        request_timeout: float = 60.0,
        retries: int = 3,
        queue_max: int = 32,
        options: Mapping[str, Any] | None = None,
        keep_alive: float | str | None = None,
        host: str | None = None,
        backoff_s: float = DEFAULT_BACKOFF_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        reprobe_s: float = 30.0,
        summary_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_template(prompt_template)
        self.timeline = timeline
        self.deliver = deliver
        self.backend_mode = backend_mode
        self.model = model
        self.prompt_template = prompt_template
        self.request_timeout = request_timeout
        self.retries = max(0, retries)
        self.queue_max = max(1, queue_max)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.reprobe_s = reprobe_s
        self.summary_options = dict(summary_options or {})
        self._backend_args: dict[str, Any] = {
            "model": model,
            "host": host,
            "connect_timeout": connect_timeout,
            "request_timeout": request_timeout,
            "options": options,
            "keep_alive": keep_alive,
        }
        self._store = JobStore(Path(state_dir))
        self._cond = threading.Condition()
        self._queue: collections.deque[str] = collections.deque()
        self._intake = threading.Lock()  # begin/end check-then-write
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._selection: Selection | None = None
        self._state = "warming"
        self._last_probe = 0.0
        self._in_flight: str | None = None
        self._last_error: dict[str, Any] | None = None
        self._counts = {"done": 0, "failed": 0, "summary_only": 0}

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store, re-queue unfinished jobs, start the worker.

        Backend selection and warm-up happen in the worker, so this returns at once, except in
        ``ollama``/``embedded`` mode, where the backend is checked here (a probe bounded by the
        connect timeout plus 2 s) and ``LLMFailure`` is raised when it cannot serve.
        """
        self._store.open()
        if self.backend_mode != "auto":
            self._selection = select_backend(self.backend_mode, **self._backend_args)
            self._state = "warming" if self._selection.backend else "none"
        pending = self._store.pending_jobs()
        with self._cond:
            self._queue.extend(key for key, _ in pending)
        if pending:
            log.info("re-queued %d analysis job(s) left from a previous run", len(pending))
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="analysis-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker; a job cut short stays persisted and runs again on the next start."""
        self._stopping.set()
        selection = self._selection
        if selection is not None and selection.backend is not None:
            selection.backend.cancel()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("analysis worker still busy %.1f s after stop; abandoning it", timeout)
            elif selection is not None and selection.backend is not None:
                close = getattr(selection.backend, "close", None)
                if close is not None:
                    close()
            self._thread = None

    # -- intake (server thread) -------------------------------------------------------------
    def begin(self, client_id: str, intent_id: str, text: str, t: float) -> bool:
        """Persist a begun intent; False when this client already used this intent id."""
        with self._intake:
            added = self._store.add_intent(client_id, intent_id, text, t)
        if added:
            log.info("intent %s begun by %s: %r", intent_id, client_id, text[:80])
        return added

    def end(self, client_id: str, intent_id: str, t: float) -> str:
        """Close the intent window at ``t``: slice and summarise now, persist the job, queue it.

        Returns ``queued``, ``duplicate`` (already ended), ``unknown_intent`` (never begun),
        ``invalid`` (``t`` before the begin) or ``busy`` (queue full: a summary-only result is
        persisted instead, see the module docstring). The job is on disk before this returns.
        """
        with self._intake:
            state = self._store.state_of(client_id, intent_id)
            if state in ("queued", "result", "done"):
                return "duplicate"
            intent = self._store.get_intent(client_id, intent_id)
            if intent is None:
                return "unknown_intent"
            t_begin = float(intent["t_begin"])
            if t < t_begin:
                return "invalid"
            frames = self.timeline.slice(t_begin, t)
            summary = summarize(frames, t_begin, t, **self.summary_options)
            job = {
                "client": client_id,
                "intent_id": intent_id,
                "intent": intent["text"],
                "t_begin": t_begin,
                "t_end": t,
                "summary": summary,
                "enqueued_at": time.time(),
            }
            key = self._store.add_job(job)
            with self._cond:
                full = len(self._queue) >= self.queue_max
                if not full:
                    self._queue.append(key)
                    self._cond.notify()
            if full:
                body = _body(job, "summary_only", "busy", None)
                self._store.complete(key, client_id, body)
                self._count("summary_only")
                log.warning(
                    "analysis queue full (%d): intent %s gets its summary only",
                    self.queue_max,
                    intent_id,
                )
                return "busy"
        log.info(
            "intent %s ended by %s: %.1f s, %d frames, queued",
            intent_id,
            client_id,
            t - t_begin,
            len(frames),
        )
        return "queued"

    def acknowledge(self, client_id: str, intent_id: str) -> bool:
        """The game has the result: forget it. False when there was no such result."""
        return self._store.acknowledge(client_id, intent_id)

    def undelivered(self, client_id: str) -> list[dict[str, Any]]:
        """Analysis bodies ``client_id`` has not acknowledged yet, oldest first (to (re)send)."""
        return self._store.results_for(client_id)

    def status(self) -> dict[str, Any]:
        """A small flat map for the daemon's status (no I/O beyond counting files)."""
        selection = self._selection
        backend = selection.backend if selection else None
        with self._cond:
            queued = len(self._queue)
            counts = dict(self._counts)
        return {
            "backend": backend.name if backend else ("none" if selection else None),
            "model": backend.model if backend else None,
            "state": self._state,
            "note": selection.note if selection else "selecting a backend",
            "queue": queued,
            "queue_max": self.queue_max,
            "in_flight": self._in_flight,
            "last_error": self._last_error,
            "undelivered": self._store.counts()["results"],
            **counts,
        }

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        self._prepare_backend()
        while True:
            with self._cond:
                while not self._queue and not self._stopping.is_set():
                    self._cond.wait(0.5)
                if self._stopping.is_set():
                    return
                key = self._queue.popleft()
            self._maybe_find_ollama()
            try:
                self._process(key)
            except Exception:  # one bad job must not kill the worker
                log.exception("analysis job %s failed unexpectedly", key)
                self._note_error("internal", "unexpected error; see the daemon log")
                self._fail_job(key)
            finally:
                self._in_flight = None

    def _fail_job(self, key: str) -> None:
        """Turn a job that raised into ``failed`` result (kept on disk if that fails)."""
        try:
            job = self._store.get_job(key)
            if job is not None:
                body = _body(job, "failed", "internal", None)
                if self._store.complete(key, job["client"], body):
                    self._count("failed")
                    self.deliver(job["client"], body)
        except Exception:
            log.exception("could not record the failure of job %s; it stays queued on disk", key)

    def _count(self, name: str) -> None:
        with self._cond:
            self._counts[name] += 1

    def _prepare_backend(self) -> None:
        if self._selection is None:
            self._selection = select_backend("auto", **self._backend_args)
            self._last_probe = time.monotonic()
        selection = self._selection
        log.info("analysis backend: %s", selection.note)
        if selection.backend is None:
            self._state = selection.state
            return
        self._state = "warming"
        t0 = time.perf_counter()
        try:
            selection.backend.warm_up()
        except LLMFailure as failure:
            self._note_error(failure.reason, failure.message)
            self._state = {
                "ollama_unreachable": "unreachable",
                "model_missing": "model_missing",
            }.get(failure.reason, "error")
            log.warning("LLM warm-up failed (%s); analyses will still try it", failure)
            return
        self._state = "ready"
        log.info(
            "LLM %s/%s warm in %.0f ms",
            selection.backend.name,
            selection.backend.model,
            (time.perf_counter() - t0) * 1000,
        )

    def _maybe_find_ollama(self) -> None:
        """``auto`` without Ollama: look again now and then, and switch to it once it is there."""
        selection = self._selection
        if self.backend_mode != "auto" or selection is None:
            return
        if selection.backend is not None and selection.backend.name == "ollama":
            return
        if time.monotonic() - self._last_probe < self.reprobe_s:
            return
        self._last_probe = time.monotonic()
        found = select_backend("auto", **self._backend_args)
        if found.backend is not None and found.backend.name == "ollama":
            log.info("Ollama is now usable: %s", found.note)
            self._selection = found
            self._state = "ready"

    def _note_error(self, reason: str, message: str) -> None:
        self._last_error = {"reason": reason, "message": message[:300], "t": time.time()}

    def _process(self, key: str) -> None:
        job = self._store.get_job(key)
        if job is None:
            return  # completed already (e.g. queued twice across a restart)
        client = job["client"]
        self._in_flight = job["intent_id"]
        started = time.time()
        queue_ms = max(0.0, (started - float(job["enqueued_at"])) * 1000)
        selection = self._selection
        assert selection is not None
        backend = selection.backend
        if job["summary"].get("player") is None:  # no face in the window: nothing to ask about
            body = _body(job, "summary_only", "no_frames", None)
            self._count("summary_only")
        elif backend is None:
            # Say which backend answered ("none") and why, so the game can show it.
            total_ms = (time.time() - float(job["enqueued_at"])) * 1000
            llm_none = {
                "backend": "none",
                "model": None,
                "text": None,
                "structured": None,
                "note": selection.note,
                "timings": {
                    "queue_ms": round(queue_ms, 1),
                    "llm_ms": 0.0,
                    "total_ms": round(total_ms, 1),
                },
            }
            body = _body(job, "summary_only", selection.reason or "no_llm", llm_none)
            self._count("summary_only")
        else:
            prompt = render_prompt(
                self.prompt_template, job["intent"], render_emotions(job["summary"])
            )
            result, failure, attempts = self._ask(backend, prompt)
            if result is None and failure is None:
                return  # stopping: the job stays persisted for the next start
            timings = {
                "queue_ms": round(queue_ms, 1),
                "llm_ms": result.llm_ms if result else round((time.time() - started) * 1000, 1),
                "total_ms": round((time.time() - float(job["enqueued_at"])) * 1000, 1),
            }
            llm: dict[str, Any] = {
                "backend": backend.name,
                "model": backend.model,
                "attempts": attempts,
                "timings": timings,
            }
            if result is not None:
                llm.update(
                    text=result.text,
                    structured=result.structured,
                    note=result.note,
                    tokens=result.meta.get("eval_count"),
                )
                # Prose without the requested structure is still an answer, flagged as such.
                reason = None if result.structured is not None else "invalid_response"
                body = _body(job, "ok", reason, llm)
                self._count("done")
                self._state = "ready"
                log.info(
                    "analysis of intent %s done in %.0f ms (%s/%s, %d attempt(s))",
                    job["intent_id"],
                    timings["total_ms"],
                    backend.name,
                    backend.model,
                    attempts,
                )
            else:
                assert failure is not None
                llm.update(text=None, structured=None, error=failure.message)
                body = _body(job, "failed", failure.reason, llm)
                self._count("failed")
                log.warning("analysis of intent %s failed: %s", job["intent_id"], failure)
        written = self._store.complete(key, client, body)
        if written and not self._stopping.is_set():
            try:
                self.deliver(client, body)
            except Exception:  # the result is on disk; undelivered() resends it
                log.exception("delivering the analysis of intent %s failed", job["intent_id"])

    def _ask(self, backend: Any, prompt: str) -> tuple[LLMResult | None, LLMFailure | None, int]:
        """Ask, retrying: (result, None, n), (None, failure, n), or (None, None, n) if stopping."""
        attempt = 0
        while True:
            if self._stopping.is_set():
                return None, None, attempt
            attempt += 1
            try:
                result = backend.analyze(
                    prompt,
                    ANALYSIS_SCHEMA,
                    time.monotonic() + self.request_timeout,
                    system=SYSTEM_PROMPT,
                )
                return result, None, attempt
            except LLMFailure as failure:
                if failure.reason == "cancelled" or self._stopping.is_set():
                    return None, None, attempt
                self._note_error(failure.reason, failure.message)
                if failure.reason in ("ollama_unreachable", "model_missing"):
                    self._state = (
                        "unreachable" if failure.reason == "ollama_unreachable" else "model_missing"
                    )
                if not failure.transient or attempt > self.retries:
                    return None, failure, attempt
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
                log.info(
                    "LLM attempt %d failed (%s); retrying in %.1f s", attempt, failure.reason, delay
                )
                if self._stopping.wait(delay):
                    return None, None, attempt


def _body(
    job: Mapping[str, Any], status: str, reason: str | None, llm: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``analysis`` message body (PROTOCOL.md)."""
    return {
        "intent_id": job["intent_id"],
        "intent": job["intent"],
        "status": status,
        "reason": reason,
        "summary": job["summary"],
        "llm": llm,
        "t_begin": job["t_begin"],
        "t_end": job["t_end"],
    }


__all__ = ["END_RESULTS", "AnalysisService"]
