"""``EmotionClient``: the daemon's emotions and analyses in a game loop that never waits.

Threading: one client belongs to one thread (the game loop). Every socket call happens inside the
public methods, non-blocking, in the caller's thread, and callbacks run there too, from ``poll()``.
The client is not thread-safe; a second thread needs its own client.

Reliability (PROTOCOL.md, "Reliability"): every request stays in an unacknowledged table, keyed by
its message id, until a reply with that ``ref`` arrives; while the daemon is live (its messages
arrive) an unanswered request is resent, same id and bytes, every ``resend_interval``. While the
daemon is away the one queued copy waits in ZeroMQ (the dealer does not set ``IMMEDIATE``), so a
game that starts first loses nothing. A new daemon ``session`` means a restart: the client says
``hello`` again, re-sends the ``intent_begin`` of every intent whose end the daemon has not
acknowledged, and resends everything unacknowledged at once, in the original order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import zmq

from game_sdk import protocol
from game_sdk.errors import (
    START_HINT,
    ClientClosedError,
    IntentError,
    NotConnectedError,
    TransportError,
)
from game_sdk.types import (
    Analysis,
    ConnectionChange,
    ConnectionState,
    DaemonStatus,
    EmotionEvent,
    ErrorEvent,
    Event,
    IntentHandle,
)

log = logging.getLogger(__name__)

SDK_VERSION = "0.1.0"
_MAX_SEEN_ANALYSES = 1024
_RETRY_CODES = frozenset({"busy"})  # refusals after which the request is kept and resent
_MAX_REPLAYS = 3  # times an intent_begin is replayed after the daemon says ``unknown_intent``


@dataclass
class _Pending:
    msg: dict[str, Any]
    frame: bytes
    sent_at: float = float("-inf")  # monotonic time of the last successful send


class EmotionClient:
    """Connects a game to ``emotiond``: live emotions in, intent markers out, analyses back.

    Args:
        control: the daemon's control endpoint (its ROUTER).
        events: the daemon's events endpoint (its XPUB).
        client_id: stable id of this game (1-64 characters; also the DEALER routing id). Give the
            same id after a game restart to receive analyses the previous run did not
            acknowledge. Default: a random id.
        name: shown in the daemon's logs and status (cut to 64 characters).
        subscribe_emotions: receive live emotion events (status beats are always received).
        on_emotion, on_analysis, on_connection, on_error: optional callbacks, called from
            ``poll()`` in the caller's thread, for engines that prefer callbacks to a list.
            An exception in a callback is logged, never raised into the game.
        resend_interval: seconds between resends of an unanswered request.
        liveness_timeout: seconds without any daemon message before it counts as gone.
        context: a ``zmq.Context`` to share; default the process-wide instance.

    Raises:
        TransportError: an endpoint is malformed or a socket cannot be created.

    Example::

        client = EmotionClient(name="my-game")
        while running:                          # the game loop
            for event in client.poll():         # never blocks
                if isinstance(event, Analysis):
                    show(event.text)
            latest = client.latest()
            face = latest.primary if latest else None
        client.close()
    """

    def __init__(
        self,
        control: str = protocol.DEFAULT_CONTROL_ENDPOINT,
        events: str = protocol.DEFAULT_EVENTS_ENDPOINT,
        *,
        client_id: str | None = None,
        name: str = "game",
        subscribe_emotions: bool = True,
        on_emotion: Callable[[EmotionEvent], None] | None = None,
        on_analysis: Callable[[Analysis], None] | None = None,
        on_connection: Callable[[ConnectionChange], None] | None = None,
        on_error: Callable[[ErrorEvent], None] | None = None,
        resend_interval: float = 1.0,
        liveness_timeout: float = 3.0,
        context: zmq.Context | None = None,
    ) -> None:
        self.client_id = client_id or protocol.new_id()
        if not 0 < len(self.client_id) <= protocol.MAX_ID_LEN:
            raise ValueError(f"client_id must be 1..{protocol.MAX_ID_LEN} characters")
        self.name = name[: protocol.MAX_NAME_LEN]
        self.control_endpoint = control
        self.events_endpoint = events
        self._callbacks: dict[type, Callable[[Any], None] | None] = {
            EmotionEvent: on_emotion,
            Analysis: on_analysis,
            ConnectionChange: on_connection,
            ErrorEvent: on_error,
        }
        self._resend_interval = resend_interval
        self._liveness_timeout = liveness_timeout
        self._ctx = context or zmq.Context.instance()
        self._dealer: zmq.Socket | None = None
        self._sub: zmq.Socket | None = None
        try:
            with self._zmq(f"connect to the daemon at {control} / {events}"):
                self._dealer = self._ctx.socket(zmq.DEALER)
                self._dealer.setsockopt(zmq.ROUTING_ID, self.client_id.encode())
                protocol.configure_socket(self._dealer, "dealer")
                self._dealer.connect(control)
                self._sub = self._ctx.socket(zmq.SUB)
                protocol.configure_socket(self._sub, "sub")
                self._sub.setsockopt(zmq.SUBSCRIBE, protocol.TOPIC_STATUS)
                if subscribe_emotions:
                    self._sub.setsockopt(zmq.SUBSCRIBE, protocol.TOPIC_EMOTION)
                self._sub.connect(events)
                self._poller = zmq.Poller()
                self._poller.register(self._dealer, zmq.POLLIN)
                self._poller.register(self._sub, zmq.POLLIN)
        except TransportError:
            self._close_sockets()
            raise

        self._seq = 0
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._open_intents: dict[str, IntentHandle] = {}
        # intent_begin of every intent whose intent_end the daemon has not acknowledged: what a
        # restarted daemon must hear again before the end makes sense to it.
        self._begins: dict[str, _Pending] = {}
        self._replays: dict[str, int] = {}
        self._seen_analyses: OrderedDict[str, None] = OrderedDict()
        self._state = ConnectionState.CONNECTING
        self._session: str | None = None
        self._welcomed_session: str | None = None
        self._last_seen: float | None = None
        self._last_event_seq: int | None = None
        self._dropped_events = 0
        self._latest: EmotionEvent | None = None
        self._status: DaemonStatus | None = None
        self._welcome: dict[str, Any] | None = None
        self._out: list[Event] = []
        self._send_hello()

    # ---------------------------------------------------------------- public API

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def session(self) -> str | None:
        """The daemon's session id (new on every daemon start), or None before contact."""
        return self._session

    @property
    def status(self) -> DaemonStatus | None:
        """The daemon's latest status (the beat each second, or the answer to request_status)."""
        return self._status

    @property
    def welcome(self) -> dict[str, Any] | None:
        """The body of the daemon's last ``welcome`` (classes, state snapshot, ...)."""
        return self._welcome

    @property
    def unacknowledged(self) -> int:
        """Requests sent but not yet answered by the daemon."""
        return len(self._pending)

    @property
    def dropped_events(self) -> int:
        """Emotion events lost between daemon and game (gaps in their ``seq``)."""
        return self._dropped_events

    def latest(self) -> EmotionEvent | None:
        """The most recent emotion event, or None before the first."""
        return self._latest

    def poll(self, max_messages: int = 1000) -> list[Event]:
        """Handle what arrived since the last call and return it; never blocks.

        Drains up to ``max_messages`` control and ``max_messages`` event messages, answers
        analyses, resends unanswered requests, tracks liveness, then calls the callbacks.

        Returns:
            Emotion events, analyses, connection changes and errors, oldest first.

        Raises:
            ClientClosedError: after ``close()``.
        """
        self._check_open()
        self._pump(time.monotonic(), max_messages)
        out, self._out = self._out, []
        for event in out:
            callback = self._callbacks.get(type(event))
            if callback is not None:
                try:
                    callback(event)
                except Exception:  # noqa: BLE001 - a game's callback must not break the client
                    log.exception("on_%s callback raised", type(event).__name__)
        return out

    def wait_connected(self, timeout: float = 5.0) -> None:
        """Block until the daemon has welcomed this client (for scripts and tools, not frames).

        Events that arrive meanwhile are kept and returned by the next ``poll()``.

        Raises:
            NotConnectedError: no welcome within ``timeout`` seconds.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            self._pump(time.monotonic(), 1000)
            if self._state is ConnectionState.CONNECTED:
                return
            if time.monotonic() >= deadline:
                raise NotConnectedError(
                    f"no answer from a daemon at {self.control_endpoint} within {timeout:g} s. "
                    + START_HINT
                )
            time.sleep(0.005)

    def begin_intent(self, text: str) -> IntentHandle:
        """Mark the start of an in-game event with what the player said they are about to do.

        Never blocks: the marker carries this moment's wall-clock time, so it counts from now
        even when it reaches the daemon later.

        Raises:
            IntentError: ``text`` is empty or longer than ``protocol.MAX_INTENT_TEXT`` characters.
            ClientClosedError: after ``close()``.
        """
        self._check_open()
        if not isinstance(text, str) or not text.strip():
            raise IntentError("intent text must be a non-empty string")
        if len(text) > protocol.MAX_INTENT_TEXT:
            raise IntentError(
                f"intent text has {len(text)} characters; the limit is {protocol.MAX_INTENT_TEXT}"
            )
        handle = IntentHandle(protocol.new_id(), text, time.time())
        self._open_intents[handle.intent_id] = handle
        entry = self._send(
            "intent_begin", {"intent_id": handle.intent_id, "text": text, "t": handle.t_begin}
        )
        self._begins[handle.intent_id] = entry
        return handle

    def end_intent(self, handle: IntentHandle) -> None:
        """Mark the end of the event; its ``Analysis`` arrives later through ``poll()``.

        Raises:
            IntentError: the handle is not open (never begun here, or already ended).
            ClientClosedError: after ``close()``.
        """
        self._check_open()
        if self._open_intents.pop(handle.intent_id, None) is None:
            raise IntentError(f"intent {handle.intent_id} is not open (already ended?)")
        self._send("intent_end", {"intent_id": handle.intent_id, "t": time.time()})

    @contextlib.contextmanager
    def intent(self, text: str) -> Iterator[IntentHandle]:
        """``with client.intent("open the chest"): ...`` marks the block as the intent window."""
        handle = self.begin_intent(text)
        try:
            yield handle
        finally:
            if self._state is not ConnectionState.CLOSED:
                self.end_intent(handle)

    def request_status(self) -> None:
        """Ask for the status now; the answer arrives through ``poll()`` into ``status``."""
        self._check_open()
        self._send("get_status", {})

    def close(self) -> None:
        """Say ``bye`` (best effort) and close the sockets; unanswered requests are dropped."""
        if self._state is ConnectionState.CLOSED:
            return
        if self._dealer is not None:
            with contextlib.suppress(zmq.ZMQError, protocol.ProtocolError):
                self._dealer.send(protocol.encode(self._message("bye", {})), zmq.NOBLOCK)
        self._close_sockets()
        self._set_state(ConnectionState.CLOSED, "closed by the game")

    def __enter__(self) -> EmotionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- sockets

    @contextlib.contextmanager
    def _zmq(self, doing: str) -> Iterator[None]:
        """The one place ZeroMQ errors become SDK errors."""
        try:
            yield
        except zmq.ZMQError as exc:
            if exc.errno == zmq.ETERM:
                raise ClientClosedError(
                    "the ZeroMQ context was terminated; create a new EmotionClient"
                ) from exc
            raise TransportError(f"cannot {doing}: {exc}. {START_HINT}") from exc

    def _close_sockets(self) -> None:
        if self._dealer is not None:
            self._dealer.close(linger=protocol.LINGER_MS)
        if self._sub is not None:
            self._sub.close(linger=0)

    def _check_open(self) -> None:
        if self._state is ConnectionState.CLOSED:
            raise ClientClosedError("this EmotionClient is closed; create a new one")

    # ---------------------------------------------------------------- sending

    def _message(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return protocol.make_message(type_, body, seq=self._seq, client=self.client_id)

    def _send(self, type_: str, body: dict[str, Any], *, tracked: bool = True) -> _Pending:
        msg = self._message(type_, body)
        entry = _Pending(msg, protocol.encode(msg))
        if tracked:
            self._pending[msg["id"]] = entry
        self._try_send(entry)
        return entry

    def _send_hello(self) -> _Pending:
        body = {"name": self.name, "protocol": protocol.PROTOCOL_VERSION, "sdk": SDK_VERSION}
        return self._send("hello", body)

    def _try_send(self, entry: _Pending) -> None:
        assert self._dealer is not None
        with self._zmq(f"send {entry.msg['type']}"):
            try:
                self._dealer.send(entry.frame, zmq.NOBLOCK)
            except zmq.Again:
                return  # queue full (daemon away for long): stays pending, goes out later
        entry.sent_at = time.monotonic()

    def _track(self, entry: _Pending) -> None:
        """Put ``entry`` back in the unacknowledged table, which stays in send (seq) order."""
        self._pending[entry.msg["id"]] = entry
        self._pending = OrderedDict(sorted(self._pending.items(), key=lambda kv: kv[1].msg["seq"]))

    def _daemon_live(self, now: float) -> bool:
        return self._last_seen is not None and now - self._last_seen <= self._liveness_timeout

    def _on_new_session(self, msg: dict[str, Any]) -> None:
        """A daemon restart: hello again, then every open marker again, in the original order."""
        log.info("daemon restarted (session %s): saying hello again", self._session)
        self._last_event_seq = None
        if self._state is ConnectionState.CONNECTED:
            self._set_state(ConnectionState.CONNECTING, "daemon restarted")
        fresh = None
        if msg["type"] != "welcome" and not any(
            p.msg["type"] == "hello" for p in self._pending.values()
        ):
            fresh = self._send_hello()  # sent first, so it arrives before the markers
        for begin in self._begins.values():
            if begin.msg["id"] not in self._pending:
                self._track(begin)
        for entry in list(self._pending.values()):
            if entry is not fresh:
                self._try_send(entry)

    # ---------------------------------------------------------------- receiving

    def _set_state(self, state: ConnectionState, detail: str) -> None:
        if state is not self._state:
            self._state = state
            self._out.append(ConnectionChange(state, self._session, detail))
            log.info("daemon connection: %s (%s)", state.value, detail)

    def _seen(self, msg: dict[str, Any], now: float) -> None:
        """Liveness and restart detection, from any daemon message."""
        self._last_seen = now
        session = msg["session"]
        if session != self._session:
            restarted = self._session is not None
            self._session = session
            if restarted:
                self._on_new_session(msg)
        if self._welcomed_session == session:
            self._set_state(ConnectionState.CONNECTED, f"daemon session {session}")

    def _pump(self, now: float, max_messages: int) -> None:
        """Receive, answer, resend and check liveness; queue events in ``_out``. Never blocks."""
        dealer, sub = self._dealer, self._sub
        assert dealer is not None and sub is not None
        with self._zmq("receive"):
            # One zero-timeout poll of both sockets first: on an idle frame it replaces two
            # failed recv calls, each of which costs a raised zmq.Again.
            ready = dict(self._poller.poll(0))
            for _ in range(max_messages if dealer in ready else 0):
                try:
                    frames = dealer.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_control(frames, now)
            for _ in range(max_messages if sub in ready else 0):
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_event(frames, now)
        self._check_liveness(now)
        if self._pending and self._daemon_live(now):
            for entry in list(self._pending.values()):
                if now - entry.sent_at >= self._resend_interval:
                    self._try_send(entry)

    def _on_control(self, frames: list[bytes], now: float) -> None:
        if len(frames) != 1:
            log.warning("ignoring a %d-frame control message", len(frames))
            return
        try:
            msg = protocol.decode(frames[0], allowed=protocol.DAEMON_TYPES)
        except protocol.ProtocolError as exc:
            log.warning("ignoring a bad frame from the daemon: %s", exc)
            return
        kind, body, ref = msg["type"], msg["body"], msg.get("ref")
        request = self._pending.get(ref) if ref else None
        if ref and request is not None and not (kind == "error" and body["code"] in _RETRY_CODES):
            del self._pending[ref]
        if kind == "welcome":
            self._welcome = body
            self._welcomed_session = msg["session"]
            self._status = DaemonStatus(body["state"])
        self._seen(msg, now)
        replayed = request is not None and self._on_answered(request, msg)
        if kind == "status":
            self._status = DaemonStatus(body)
        elif kind == "error" and not replayed:
            self._out.append(ErrorEvent(body["code"], body["message"], ref))
            what = request.msg["type"] if request is not None else "a request"
            log.warning("daemon refused %s: %s %s", what, body["code"], body["message"])
        elif kind == "analysis":
            self._on_analysis(body)

    def _on_answered(self, request: _Pending, reply: dict[str, Any]) -> bool:
        """Bookkeeping of intents once the daemon answered a marker; True if it was replayed."""
        kind, intent_id = request.msg["type"], request.msg["body"].get("intent_id")
        code = reply["body"].get("code") if reply["type"] == "error" else None
        begin = self._begins.get(intent_id) if intent_id else None
        if kind == "intent_end" and code == "unknown_intent" and begin is not None:
            # The daemon lost the begin (it restarted before our markers got through): send
            # the begin again, then this end, each with its original id and time.
            replays = self._replays.get(intent_id, 0)
            if replays < _MAX_REPLAYS:
                self._replays[intent_id] = replays + 1
                log.info("daemon does not know intent %s: sending its begin again", intent_id)
                for entry in (begin, request):
                    self._track(entry)
                    self._try_send(entry)
                return True
        if kind == "intent_end" or (kind == "intent_begin" and code is not None):
            self._begins.pop(intent_id, None)
            self._replays.pop(intent_id, None)
        return False

    def _on_analysis(self, body: dict[str, Any]) -> None:
        intent_id = body["intent_id"]
        # Always acknowledge (the daemon resends until it hears this); deliver to the game once.
        self._send("analysis_ack", {"intent_id": intent_id}, tracked=False)
        if intent_id in self._seen_analyses:
            return
        self._seen_analyses[intent_id] = None
        while len(self._seen_analyses) > _MAX_SEEN_ANALYSES:
            self._seen_analyses.popitem(last=False)
        self._out.append(Analysis.from_wire(body))

    def _on_event(self, frames: list[bytes], now: float) -> None:
        try:
            topic, msg = protocol.decode_event(frames)
        except protocol.ProtocolError as exc:
            log.debug("ignoring a bad event: %s", exc)
            return
        self._seen(msg, now)
        if topic == protocol.TOPIC_STATUS:
            self._status = DaemonStatus(msg["body"])
            return
        event = EmotionEvent.from_wire(msg)
        last = self._last_event_seq
        if last is not None and event.seq > last + 1:
            self._dropped_events += event.seq - last - 1
        self._last_event_seq = event.seq
        self._latest = event
        self._out.append(event)

    def _check_liveness(self, now: float) -> None:
        if self._state is ConnectionState.CONNECTED and not self._daemon_live(now):
            self._set_state(
                ConnectionState.DISCONNECTED,
                f"no message from the daemon for {self._liveness_timeout:g} s",
            )
