"""The server thread: owns every ZeroMQ socket of the daemon and nothing else touches them.

Sockets (all set up through ``game_sdk.protocol.configure_socket``):

- XPUB bound to the events endpoint: one ``emotion`` event per processed frame and a ``status``
  event every ``status_interval``. A slow or absent subscriber loses events; the XPUB never blocks
  (SNDHWM, drop) and every send is ``NOBLOCK``.
- ROUTER bound to the control endpoint: every request gets exactly one answer, a hostile frame an
  ``error`` to its sender only. Replies are cached per client by request id, so a resent request
  is answered again (``duplicate: true``) and not acted on twice.
- inproc PULL: the doorbell. Other threads never touch these sockets. ``on_result`` (pipeline
  thread) appends to a bounded queue and rings the doorbell through an inproc PUSH socket owned by
  the calling thread (created on its first call), so the loop publishes at once instead of at its
  next poll timeout. ``deliver`` (analysis worker) only appends to a queue that the loop reads on
  every round (at most ``POLL_MS`` later, nothing next to an LLM's seconds), so the worker owns no
  socket and may outlive the server without touching a closed one.

Analyses are pushed to their game and resent every ``analysis_resend`` seconds until the game
sends ``analysis_ack``; a game that is not connected (``EHOSTUNREACH`` under ROUTER_MANDATORY) or
not reading (``EAGAIN``) just leaves them pending.

Duplicates (PROTOCOL.md, "Reliability"): the replies to requests that act (``intent_begin``,
``intent_end``, ``analysis_ack``, ``bye``) are remembered per client by request id, so a resent
request gets the same reply with ``duplicate: true`` and is not acted on again. ``hello``,
``get_status`` and ``ping`` change nothing and are simply answered afresh. Refusals (``error``)
are not remembered: the request was not acted on, so a resend after fixing the cause (the
``unknown_intent`` recovery) is handled normally.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq

from daemon import __version__
from daemon.stats import summarize
from daemon.timeline import FrameResult
from game_sdk import protocol

log = logging.getLogger(__name__)

POLL_MS = 50
HOUSEKEEPING_S = 0.25
MAX_REQUESTS_PER_ROUND = 200
RESULT_BACKLOG = 256  # frame results waiting for the server thread; older ones are dropped
REPLY_CACHE_PER_CLIENT = 1024  # PROTOCOL.md: at least the last 1024 ids per client ...
REPLY_CACHE_TTL_S = 900.0  # ... for at least 10 minutes
REPLY_CACHE_CLIENTS = 256
IDEMPOTENT = frozenset({"hello", "get_status", "ping"})
MAX_CLIENTS = 256
MAX_PENDING_PER_CLIENT = 64
MAX_INTENTS_WITHOUT_ANALYSIS = 1024
INTENT_FUTURE_S = 5.0  # a marker's time may be this far ahead of the daemon's clock
LATENCY_WINDOW = 300
STATUS_CLIENTS_LISTED = 16


class BindError(RuntimeError):
    """An endpoint cannot be bound (port taken, bad address, no permission)."""


class AnalysisPort(Protocol):
    """What the server needs of ``daemon.analysis.service.AnalysisService``."""

    def begin(self, client_id: str, intent_id: str, text: str, t: float) -> bool: ...
    def end(self, client_id: str, intent_id: str, t: float) -> str: ...
    def acknowledge(self, client_id: str, intent_id: str) -> bool: ...
    def undelivered(self, client_id: str) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...


@dataclass
class _Client:
    client_id: str
    routing_id: bytes
    name: str = "?"
    sdk: str | None = None
    connected_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    requests: int = 0
    said_hello: bool = False


@dataclass
class _PendingAnalysis:
    body: dict[str, Any]
    last_sent: float = 0.0  # monotonic; 0.0 = not yet sent
    sends: int = 0


class _Window:
    """Rolling latencies in milliseconds (server thread only)."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, ms: float) -> None:
        self._values.append(ms)

    def percentiles(self) -> dict[str, float] | None:
        return summarize(self._values) or None


class Server:
    """Owns the XPUB, ROUTER and inproc PULL sockets and runs the poll loop in its own thread.

    Args:
        events, control: endpoints to bind; ``tcp://127.0.0.1:*`` picks a free port (see
            ``events_endpoint``/``control_endpoint`` after ``bind``).
        analysis: the intent-analysis service, or None: intent markers are then acknowledged and
            kept in memory, and no analysis is produced.
        status_provider: called by the server thread for each status; returns the pipeline's
            part (``fps``, ``frames``, ``latency_ms``, ``camera``, ``model``, ...). Must be
            thread-safe and fast.
        max_intent_age: how far in the past an intent marker's ``t`` may lie (the timeline length);
            older or future times are clamped, with a warning.
        status_interval: seconds between ``status`` events.
        client_timeout: seconds of silence after which a client is forgotten (its pending
            analyses are kept and resent when it is back).
        analysis_resend: seconds between resends of an unacknowledged analysis.
        context: a ``zmq.Context``; default a private one, destroyed by ``stop``.

    Call ``bind()`` (raises ``BindError``), then ``start()``; ``stop()`` after the producers
    (``on_result`` callers) have stopped; ``deliver`` may still be called after it.
    """

    def __init__(
        self,
        *,
        events: str = protocol.DEFAULT_EVENTS_ENDPOINT,
        control: str = protocol.DEFAULT_CONTROL_ENDPOINT,
        analysis: AnalysisPort | None = None,
        status_provider: Callable[[], Mapping[str, Any]] | None = None,
        max_intent_age: float = 600.0,
        status_interval: float = 1.0,
        client_timeout: float = 120.0,
        analysis_resend: float = 2.0,
        context: zmq.Context | None = None,
    ) -> None:
        self.session = protocol.new_id()
        self.analysis = analysis
        self.status_provider = status_provider
        self.max_intent_age = max_intent_age
        self.status_interval = status_interval
        self.client_timeout = client_timeout
        self.analysis_resend = analysis_resend
        self._requested = (events, control)
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._inproc = f"inproc://emotiond-handoff-{self.session}"
        self._xpub: zmq.Socket | None = None
        self._router: zmq.Socket | None = None
        self._pull: zmq.Socket | None = None
        self.events_endpoint = events
        self.control_endpoint = control

        # Hand-off from other threads: deque append/popleft are atomic; the doorbell wakes us.
        self._results: collections.deque[tuple[FrameResult, float]] = collections.deque()
        self._deliveries: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._local = threading.local()
        self._pushes: list[zmq.Socket] = []
        self._push_lock = threading.Lock()
        self._closing = False

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started_wall = time.time()
        self._started = time.monotonic()

        # Server-thread state.
        self._control_seq = 0
        self._event_seq = {protocol.TOPIC_EMOTION: 0, protocol.TOPIC_STATUS: 0}
        self._clients: collections.OrderedDict[str, _Client] = collections.OrderedDict()
        # client id -> request id -> (reply type, reply body, monotonic time); see module docstring
        self._replies: collections.OrderedDict[
            str, collections.OrderedDict[str, tuple[str, dict[str, Any], float]]
        ] = collections.OrderedDict()
        self._pending: dict[str, collections.OrderedDict[str, _PendingAnalysis]] = {}
        self._intents: collections.OrderedDict[tuple[str, str], dict[str, Any]] = (
            collections.OrderedDict()
        )
        self._latest: dict[str, Any] | None = None
        self._publish_ms = _Window()
        self._total_ms = _Window()
        self.counters = collections.Counter[str]()

    # ------------------------------------------------------------------ life

    def bind(self) -> None:
        """Create and bind the sockets (in the caller's thread, so failures surface at start)."""
        events, control = self._requested
        try:
            self._pull = self._ctx.socket(zmq.PULL)
            protocol.configure_socket(self._pull, "pull")
            self._pull.bind(self._inproc)
            self._xpub = self._ctx.socket(zmq.XPUB)
            protocol.configure_socket(self._xpub, "xpub")
            self._router = self._ctx.socket(zmq.ROUTER)
            protocol.configure_socket(self._router, "router")
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise BindError(f"cannot create sockets: {exc}") from exc
        for sock, endpoint, what, flag in (
            (self._xpub, events, "events", "--events"),
            (self._router, control, "control", "--control"),
        ):
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                self._close_sockets()
                hint = (
                    " (is another emotiond or program using it? choose another with "
                    f"{flag} tcp://127.0.0.1:PORT)"
                    if exc.errno == zmq.EADDRINUSE
                    else ""
                )
                raise BindError(f"cannot bind the {what} endpoint {endpoint}: {exc}{hint}") from exc
        self.events_endpoint = self._xpub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.control_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info(
            "listening: events %s, control %s (session %s)",
            self.events_endpoint,
            self.control_endpoint,
            self.session,
        )

    def start(self) -> None:
        if self._router is None:
            self.bind()
        self._thread = threading.Thread(target=self._run, name="server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loop, close every socket; safe to call twice. ``on_result`` callers first."""
        self._stop.set()
        self._ring()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("server thread did not stop within %.1f s", timeout)
                return  # its sockets are still in use: leave them to process exit
            self._thread = None
        else:
            self._close_sockets()
        with self._push_lock:
            self._closing = True
            pushes, self._pushes = self._pushes, []
        for sock in pushes:
            sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ hand-off (any thread)

    def on_result(self, result: FrameResult) -> None:
        """Queue a frame result for publishing (pipeline thread). Never blocks."""
        if len(self._results) >= RESULT_BACKLOG:
            self._results.popleft()
            self.counters["results_dropped"] += 1
        self._results.append((result, time.perf_counter()))
        self._ring()

    def deliver(self, client_id: str, body: dict[str, Any]) -> None:
        """Queue an analysis for ``client_id`` (analysis worker thread). Never blocks.

        No doorbell on purpose (see the module docstring): the loop picks it up within ``POLL_MS``.
        """
        self._deliveries.append((client_id, body))

    def _ring(self) -> None:
        sock = getattr(self._local, "push", None)
        if sock is None:
            with self._push_lock:
                if self._closing or self._pull is None:
                    return
                sock = self._ctx.socket(zmq.PUSH)
                protocol.configure_socket(sock, "push")
                sock.connect(self._inproc)
                self._pushes.append(sock)
            self._local.push = sock
        try:
            sock.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # a thousand rings already queued: the loop drains the queues anyway
        except zmq.ZMQError:
            pass  # closed during shutdown

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        assert self._router is not None and self._xpub is not None and self._pull is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        poller.register(self._xpub, zmq.POLLIN)
        next_beat = (
            time.monotonic()
        )  # first status at once: subscribers wait for it to know they joined
        next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        try:
            while not self._stop.is_set():
                timeout = max(0.0, min(next_beat - time.monotonic(), POLL_MS / 1000))
                try:
                    ready = dict(poller.poll(int(timeout * 1000)))
                    if self._pull in ready:
                        self._drain(self._pull)
                    self._publish_results()
                    self._take_deliveries()
                    if self._router in ready:
                        self._serve()
                    if self._xpub in ready:
                        self._drain(self._xpub)  # subscription messages: nothing to do with them
                    now = time.monotonic()
                    if now >= next_beat:
                        self._publish_status()
                        next_beat = max(next_beat + self.status_interval, now)
                    if now >= next_housekeeping:
                        self._resend_analyses(now)
                        self._expire_clients(now)
                        self._expire_replies(now)
                        next_housekeeping = now + HOUSEKEEPING_S
                except zmq.ContextTerminated:
                    break
                except Exception:  # noqa: BLE001 - the loop must survive any one bad round
                    self.counters["loop_errors"] += 1
                    log.exception("server loop error")
                    self._stop.wait(0.01)
            try:
                self._publish_status(state="stopping")  # best effort: games learn at once
            except Exception:  # noqa: BLE001
                log.debug("no final status", exc_info=True)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for name in ("_router", "_xpub", "_pull"):
            sock = getattr(self, name)
            if sock is not None:
                sock.close()
                setattr(self, name, None)

    @staticmethod
    def _drain(sock: zmq.Socket) -> None:
        for _ in range(10_000):
            try:
                sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return

    # ------------------------------------------------------------------ events

    def _publish(self, topic: bytes, kind: str, body: dict[str, Any]) -> bool:
        assert self._xpub is not None
        self._event_seq[topic] += 1
        msg = protocol.make_message(kind, body, seq=self._event_seq[topic], session=self.session)
        try:
            frames = protocol.encode_event(topic, msg)
        except protocol.ProtocolError as exc:
            self.counters["unencodable_events"] += 1
            log.error("cannot publish a %s event: %s", kind, exc)
            return False
        try:
            self._xpub.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.counters["events_dropped"] += 1
            return False
        self.counters[f"published_{kind}"] += 1
        return True

    def _publish_results(self) -> None:
        while self._results:
            result, handed_at = self._results.popleft()
            body = result.to_wire()
            if len(body["faces"]) > protocol.MAX_FACES:
                body["faces"] = body["faces"][: protocol.MAX_FACES]  # largest first
            body["latency_ms"] = round(max(0.0, time.time() - result.t_capture) * 1000, 3)
            body["stages_ms"] = {k: round(v, 3) for k, v in result.latency_ms.items()}
            if self._publish(protocol.TOPIC_EMOTION, "emotion", body):
                self._latest = body
                self._publish_ms.add((time.perf_counter() - handed_at) * 1000)
                self._total_ms.add(body["latency_ms"])

    def _publish_status(self, state: str | None = None) -> None:
        status = self.status()
        if state is not None:
            status["state"] = state
        if not self._publish(protocol.TOPIC_STATUS, "status", status):
            # A provider's part that breaks the schema must not silence the liveness beat.
            core = {k: status[k] for k in ("state", "uptime_s", "fps", "version", "clients")}
            self._publish(protocol.TOPIC_STATUS, "status", core)

    def status(self) -> dict[str, Any]:
        """The status body (PROTOCOL.md, "Status body"); called by the server thread.

        The provider's ``latency_ms`` (per pipeline stage, each ``{p50, p90, p99, max}``) becomes
        ``stages_ms`` here, with ``publish`` (hand-off -> sent) added; ``latency_ms`` itself is
        capture -> publish as the protocol defines it.
        """
        part: dict[str, Any] = {}
        if self.status_provider is not None:
            try:
                part = dict(self.status_provider())
            except Exception:  # noqa: BLE001 - a failing part of the status must not stop the beat
                log.exception("status provider failed")
        stages = dict(part.pop("latency_ms", None) or {})
        publish = self._publish_ms.percentiles()
        if publish is not None:
            stages["publish"] = publish
        now = time.monotonic()
        listed = list(self._clients.values())[-STATUS_CLIENTS_LISTED:]
        out: dict[str, Any] = {
            "state": "running",
            "fps": 0.0,
            **part,
            "uptime_s": round(now - self._started, 3),
            "version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "session": self.session,
            "pid": os.getpid(),
            "started": self._started_wall,
            "clients": sum(1 for c in self._clients.values() if c.said_hello),
            "client_list": [
                {"id": c.client_id, "name": c.name, "idle_s": round(now - c.last_seen, 1)}
                for c in listed
            ],
            "dropped_frames": self.counters["results_dropped"],
            "latency_ms": self._total_ms.percentiles() or {},
            "stages_ms": stages,
            "events": {
                "emotion": self.counters["published_emotion"],
                "status": self.counters["published_status"],
                "send_failed": self.counters["events_dropped"],
            },
            "pending_results": sum(len(p) for p in self._pending.values()),
            "llm": self._llm_status(),
        }
        return out

    def _llm_status(self) -> dict[str, Any]:
        if self.analysis is None:
            return {"backend": "none", "state": "disabled", "note": "no analysis service"}
        try:
            llm = dict(self.analysis.status())
        except Exception as exc:  # noqa: BLE001
            log.exception("analysis status failed")
            return {"state": "error", "note": str(exc)[:200]}
        if llm.get("backend") is None:
            llm.pop("backend", None)  # still selecting one: the protocol's field is not nullable
        return llm

    # ------------------------------------------------------------------ control

    def _serve(self) -> None:
        assert self._router is not None
        for _ in range(MAX_REQUESTS_PER_ROUND):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        routing_id, parts = frames[0], frames[1:]
        self.counters["requests"] += 1
        if len(parts) != 1:
            self._refuse(routing_id, "bad_frame", f"expected one frame, got {len(parts)}", None)
            return
        try:
            msg = protocol.decode(parts[0], allowed=protocol.CLIENT_TYPES)
        except protocol.ProtocolError as exc:
            self._refuse(routing_id, exc.code, exc.message, exc.ref)
            return
        kind, request_id = msg["type"], msg["id"]
        client = self._touch(msg["client"], routing_id)
        cache = self._replies.get(client.client_id)
        cached = cache.get(request_id) if cache is not None else None
        if cached is not None:
            reply_kind, body, _ = cached
            self.counters["duplicates"] += 1
            log.debug("duplicate %s %s from %s: answered again", kind, request_id, client.name)
            self._send(client, reply_kind, {**body, "duplicate": True}, ref=request_id)
            return
        try:
            reply_kind, body = self._dispatch(msg, client)
        except protocol.ProtocolError as exc:
            reply_kind, body = "error", protocol.error_body(exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - answer, log, keep serving
            log.exception("handling %s from %s failed", kind, client.client_id)
            reply_kind, body = "error", protocol.error_body("internal", type(exc).__name__)
        if reply_kind != "error" and kind not in IDEMPOTENT:
            self._remember(client.client_id, request_id, reply_kind, body)
        self._send(client, reply_kind, body, ref=request_id)
        if kind == "hello":
            self._send_pending(client.client_id, force=True)

    def _remember(self, client_id: str, request_id: str, kind: str, body: dict[str, Any]) -> None:
        cache = self._replies.get(client_id)
        if cache is None:
            cache = self._replies[client_id] = collections.OrderedDict()
            while len(self._replies) > REPLY_CACHE_CLIENTS:
                self._replies.popitem(last=False)
        else:
            self._replies.move_to_end(client_id)
        cache[request_id] = (kind, body, time.monotonic())
        while len(cache) > REPLY_CACHE_PER_CLIENT:
            cache.popitem(last=False)

    def _expire_replies(self, now: float) -> None:
        for client_id, cache in list(self._replies.items()):
            while cache and now - next(iter(cache.values()))[2] > REPLY_CACHE_TTL_S:
                cache.popitem(last=False)
            if not cache:
                del self._replies[client_id]

    def _refuse(self, routing_id: bytes, code: str, message: str, ref: str | None) -> None:
        self.counters["refused"] += 1
        n = self.counters["refused"]
        if n <= 10 or n % 100 == 0:  # a flood of garbage must not flood the log
            log.warning(
                "refused a request from %r (%s): %s [%d refused so far]",
                routing_id[:64],
                code,
                message,
                n,
            )
        body = protocol.error_body(code, message, fatal=code == "bad_version")
        self._send_to(routing_id, "error", body, ref=ref)

    def _send(self, client: _Client, kind: str, body: dict[str, Any], *, ref: str | None) -> bool:
        return self._send_to(client.routing_id, kind, body, ref=ref)

    def _send_to(
        self, routing_id: bytes, kind: str, body: dict[str, Any], *, ref: str | None
    ) -> bool:
        assert self._router is not None
        self._control_seq += 1
        msg = protocol.make_message(
            kind, body, seq=self._control_seq, session=self.session, ref=ref
        )
        try:
            frame = protocol.encode(msg)
        except protocol.ProtocolError as exc:
            log.error("cannot encode a %s reply: %s", kind, exc)
            msg = protocol.make_message(
                "error",
                protocol.error_body("internal", "reply could not be encoded"),
                seq=self._control_seq,
                session=self.session,
                ref=ref,
            )
            frame = protocol.encode(msg)
        try:
            self._router.send_multipart([routing_id, frame], zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.counters["replies_dropped"] += 1
            log.warning("peer %r is not reading; %s dropped", routing_id[:16], kind)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            log.debug("peer %r is gone; %s not sent", routing_id[:16], kind)
        return False

    def _touch(self, client_id: str, routing_id: bytes) -> _Client:
        client = self._clients.get(client_id)
        if client is None:
            client = _Client(client_id, routing_id)
            self._clients[client_id] = client
            while len(self._clients) > MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                log.info("forgetting client %s (%s): too many clients", old.name, old.client_id)
        else:
            self._clients.move_to_end(client_id)
            client.routing_id = routing_id
        client.last_seen = time.monotonic()
        client.requests += 1
        return client

    def _expire_clients(self, now: float) -> None:
        for client_id, client in list(self._clients.items()):
            if now - client.last_seen > self.client_timeout:
                del self._clients[client_id]
                log.info(
                    "client %s (%s) forgotten: silent for %.0f s",
                    client.name,
                    client_id,
                    now - client.last_seen,
                )

    def _dispatch(self, msg: dict[str, Any], client: _Client) -> tuple[str, dict[str, Any]]:
        kind, body = msg["type"], msg["body"]
        if kind == "hello":
            return "welcome", self._hello(client, body)
        if kind == "get_status":
            return "status", self.status()
        if kind == "ping":
            return "pong", {}
        if kind == "intent_begin":
            return self._intent_begin(client, body)
        if kind == "intent_end":
            return self._intent_end(client, body)
        if kind == "analysis_ack":
            return self._analysis_ack(client, body)
        if kind == "bye":
            self._clients.pop(client.client_id, None)
            log.info("client left: %s (%s)", client.name, client.client_id)
            return "ack", {"of": "bye", "duplicate": False}
        raise protocol.ProtocolError("unknown_type", f"no handler for {kind!r}")

    def _hello(self, client: _Client, body: dict[str, Any]) -> dict[str, Any]:
        client.name = body["name"]
        client.sdk = body.get("sdk")
        client.connected_at = time.time()
        client.said_hello = True
        log.info(
            "client connected: %s (%s, sdk %s, protocol %s)",
            client.name,
            client.client_id,
            client.sdk or "?",
            body.get("protocol") or "?",
        )
        self._load_undelivered(client.client_id)
        return {
            "daemon": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "session": self.session,
            "classes": list(protocol.CLASSES),
            "state": self.status(),
            "latest": self._latest,
            "events": self.events_endpoint,
            "pending_results": len(self._pending.get(client.client_id, {})),
        }

    def _intent_time(self, t: float, what: str) -> float:
        now = time.time()
        lo, hi = now - self.max_intent_age, now + INTENT_FUTURE_S
        if not lo <= t <= hi:
            log.warning("%s time %.3f is %+.1f s from now; clamped", what, t, t - now)
            return min(max(t, lo), hi)
        return t

    def _intent_begin(self, client: _Client, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        intent_id = body["intent_id"]
        t = self._intent_time(body["t"], "intent_begin")
        if self.analysis is not None:
            duplicate = not self.analysis.begin(client.client_id, intent_id, body["text"], t)
        else:
            key = (client.client_id, intent_id)
            duplicate = key in self._intents
            if not duplicate:
                self._intents[key] = {"text": body["text"], "t_begin": t, "t_end": None}
                while len(self._intents) > MAX_INTENTS_WITHOUT_ANALYSIS:
                    self._intents.popitem(last=False)
                log.info("intent %s begun by %s (no analysis service)", intent_id, client.name)
        return "ack", {"of": "intent_begin", "intent_id": intent_id, "duplicate": duplicate}

    def _intent_end(self, client: _Client, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        intent_id = body["intent_id"]
        t = self._intent_time(body["t"], "intent_end")
        if self.analysis is not None:
            outcome = self.analysis.end(client.client_id, intent_id, t)
        else:
            entry = self._intents.get((client.client_id, intent_id))
            if entry is None:
                outcome = "unknown_intent"
            elif entry["t_end"] is not None:
                outcome = "duplicate"
            elif t < entry["t_begin"]:
                outcome = "invalid"
            else:
                entry["t_end"] = t
                outcome = "queued"
                log.info(
                    "intent %s ended by %s after %.1f s (no analysis service)",
                    intent_id,
                    client.name,
                    t - entry["t_begin"],
                )
        if outcome == "busy":
            # The service has ended the intent and stored a summary-only result (reason "busy")
            # instead of queueing it for the LLM: the end was acted on, so it is acknowledged,
            # and that result goes out now like any other.
            self._load_undelivered(client.client_id)
            self._send_pending(client.client_id, force=False)
            outcome = "queued"
        if outcome in ("queued", "duplicate"):
            return "ack", {
                "of": "intent_end",
                "intent_id": intent_id,
                "duplicate": outcome == "duplicate",
            }
        if outcome == "unknown_intent":
            raise protocol.ProtocolError("unknown_intent", f"intent {intent_id} was never begun")
        if outcome == "invalid":
            raise protocol.ProtocolError("invalid", f"intent {intent_id} ends before it begins")
        raise protocol.ProtocolError("internal", f"analysis answered {outcome!r}")

    def _analysis_ack(self, client: _Client, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        intent_id = body["intent_id"]
        pending = self._pending.get(client.client_id)
        removed = pending is not None and pending.pop(intent_id, None) is not None
        if pending is not None and not pending:
            del self._pending[client.client_id]
        if self.analysis is not None:
            removed = self.analysis.acknowledge(client.client_id, intent_id) or removed
        if removed:
            log.info("analysis of intent %s acknowledged by %s", intent_id, client.name)
        # Acknowledging an unknown or already forgotten analysis: "duplicate" (PROTOCOL.md).
        return "ack", {"of": "analysis_ack", "intent_id": intent_id, "duplicate": not removed}

    # ------------------------------------------------------------------ analyses

    def _queue_analysis(self, client_id: str, body: dict[str, Any]) -> None:
        pending = self._pending.setdefault(client_id, collections.OrderedDict())
        if body["intent_id"] not in pending:
            pending[body["intent_id"]] = _PendingAnalysis(body)
        while len(pending) > MAX_PENDING_PER_CLIENT:
            pending.popitem(last=False)  # still stored by the service; reloaded on the next hello

    def _load_undelivered(self, client_id: str) -> None:
        if self.analysis is None:
            return
        try:
            bodies = self.analysis.undelivered(client_id)
        except Exception:  # noqa: BLE001
            log.exception("reading undelivered analyses of %s failed", client_id)
            return
        for body in bodies:
            self._queue_analysis(client_id, body)

    def _take_deliveries(self) -> None:
        while self._deliveries:
            client_id, body = self._deliveries.popleft()
            try:
                protocol.validate(
                    protocol.make_message("analysis", body, seq=0, session=self.session)
                )
            except protocol.ProtocolError as exc:
                log.error("analysis for %s cannot be sent: %s", client_id, exc)
                continue
            log.info(
                "analysis done for intent %s of %s: %s%s",
                body["intent_id"],
                client_id,
                body["status"],
                f" ({body['reason']})" if body.get("reason") else "",
            )
            self._queue_analysis(client_id, body)
            self._send_pending(client_id, force=True)

    def _send_pending(self, client_id: str, *, force: bool) -> None:
        pending = self._pending.get(client_id)
        if not pending:
            return
        client = self._clients.get(client_id)
        routing_id = client.routing_id if client is not None else client_id.encode()
        now = time.monotonic()
        for intent_id, entry in list(pending.items()):
            if not force and now - entry.last_sent < self.analysis_resend:
                continue
            entry.last_sent = now
            if self._send_to(routing_id, "analysis", entry.body, ref=None):
                entry.sends += 1
                if entry.sends > 1:
                    log.debug("analysis %s resent to %s (%d)", intent_id, client_id, entry.sends)
            else:
                break  # unreachable or not reading: the others would fail too

    def _resend_analyses(self, now: float) -> None:
        for client_id in list(self._pending):
            self._send_pending(client_id, force=False)

    def pending_analyses(self, client_id: str) -> int:
        """Unacknowledged analyses held for ``client_id`` (server thread or after stop)."""
        return len(self._pending.get(client_id, {}))
