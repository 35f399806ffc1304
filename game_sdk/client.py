"""``EmotionClient``: the daemon's emotions and analyses in a game loop that never waits.

All socket work happens inside ``poll()`` with non-blocking calls, in the thread that calls it (one
game thread per client; the client is not thread-safe). ZeroMQ queues what is sent while no daemon
is up and reconnects by itself; on top of that the client resends every unanswered request with its
original id until the daemon answers, and notices a daemon restart (a new session id) to say hello
again and resend at once. The daemon recognises a resent id and does not act on it twice.
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
from game_sdk.errors import ClientClosedError, IntentError, TransportError
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


@dataclass
class _Pending:
    msg: dict[str, Any]
    frame: bytes
    sent_at: float  # monotonic; 0.0 = never sent successfully


class EmotionClient:
    """Connects a game to ``emotiond``.

    Args:
        control: the daemon's control endpoint (ROUTER).
        events: the daemon's events endpoint (XPUB).
        client_id: stable id of this game; give the same id after a game restart to receive
            analyses the previous run did not acknowledge. Default: a random id.
        name: shown in the daemon's logs and status.
        subscribe_emotions: receive live emotion events (status beats are always received).
        on_emotion, on_analysis, on_connection, on_error: optional callbacks, called from
            ``poll()`` in the caller's thread, for engines that prefer callbacks to a list.
        resend_interval: seconds between resends of an unanswered request.
        liveness_timeout: seconds without any message from the daemon before it counts as gone.
        context: a ``zmq.Context`` to share; default the process-wide instance.

    Example::

        client = EmotionClient(name="my-game")
        while running:                      # the game loop
            for event in client.poll():     # never blocks
                if isinstance(event, Analysis):
                    show(event.text)
            face = client.latest() and client.latest().primary
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
        self._callbacks = {
            EmotionEvent: on_emotion,
            Analysis: on_analysis,
            ConnectionChange: on_connection,
            ErrorEvent: on_error,
        }
        self._resend_interval = resend_interval
        self._liveness_timeout = liveness_timeout
        self._ctx = context or zmq.Context.instance()
        try:
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
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot connect to the daemon at {control} / {events}: {exc}") from exc

        self._seq = 0
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._open_intents: dict[str, IntentHandle] = {}
        self._seen_analyses: OrderedDict[str, None] = OrderedDict()
        self._state = ConnectionState.CONNECTING
        self._session: str | None = None
        self._welcomed_session: str | None = None
        self._last_seen = 0.0
        self._last_event_seq: int | None = None
        self._latest: EmotionEvent | None = None
        self._status: DaemonStatus | None = None
        self._welcome: dict[str, Any] | None = None
        self._out: list[Event] = []
        self.dropped_events = 0
        """Emotion events lost between daemon and game (gaps in ``seq``), this session."""
        self._send("hello", {"name": self.name, "sdk": SDK_VERSION, "protocol": protocol.PROTOCOL_VERSION})

    # ---------------------------------------------------------------- public API

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def session(self) -> str | None:
        """The daemon's session id (changes when the daemon restarts)."""
        return self._session

    @property
    def status(self) -> DaemonStatus | None:
        """The daemon's latest status (from the beat each second or ``request_status``)."""
        return self._status

    @property
    def welcome(self) -> dict[str, Any] | None:
        """The body of the daemon's last ``welcome`` (classes, state snapshot, ...)."""
        return self._welcome

    @property
    def unacknowledged(self) -> int:
        """Requests sent but not yet answered by the daemon."""
        return len(self._pending)

    def latest(self) -> EmotionEvent | None:
        """The most recent emotion event, or None before the first."""
        return self._latest

    def poll(self, max_messages: int = 1000) -> list[Event]:
        """Handle what arrived since the last call and return it; never blocks.

        Returns emotion events, analyses, connection changes and errors, oldest first. Callbacks
        given to the constructor are called for each before this returns.
        """
        if self._state is ConnectionState.CLOSED:
            raise ClientClosedError("this EmotionClient is closed; create a new one")
        now = time.monotonic()
        for _ in range(max_messages):
            try:
                frames = self._dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_control(frames, now)
        for _ in range(max_messages):
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_event(frames, now)
        self._check_liveness(now)
        self._resend(now)
        out, self._out = self._out, []
        for event in out:
            callback = self._callbacks.get(type(event))
            if callback is not None:
                try:
                    callback(event)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - a game's callback must not break the client
                    log.exception("callback for %s raised", type(event).__name__)
        return out

    def begin_intent(self, text: str) -> IntentHandle:
        """Mark the start of an in-game event with what the player said they are about to do.

        Raises:
            IntentError: ``text`` is empty or longer than ``protocol.MAX_INTENT_TEXT`` characters.
        """
        self._check_open()
        if not isinstance(text, str) or not text.strip():
            raise IntentError("intent text must be a non-empty string")
        if len(text) > protocol.MAX_INTENT_TEXT:
            raise IntentError(f"intent text is longer than {protocol.MAX_INTENT_TEXT} characters")
        handle = IntentHandle(protocol.new_id(), text, time.time())
        self._open_intents[handle.intent_id] = handle
        self._send("intent_begin", {"intent_id": handle.intent_id, "text": text, "t": handle.t_begin})
        return handle

    def end_intent(self, handle: IntentHandle) -> None:
        """Mark the end of the event; the analysis arrives later through ``poll()``.

        Raises:
            IntentError: the handle is unknown or already ended.
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
        """Ask for a full status now; it arrives through ``poll()`` into ``status``."""
        self._check_open()
        self._send("get_status", {})

    def close(self) -> None:
        """Say goodbye (best effort) and close the sockets. Unanswered requests are dropped."""
        if self._state is ConnectionState.CLOSED:
            return
        with contextlib.suppress(zmq.ZMQError, protocol.ProtocolError):
            self._dealer.send(protocol.encode(self._message("bye", {})), zmq.NOBLOCK)
        self._dealer.close()
        self._sub.close()
        self._set_state(ConnectionState.CLOSED, "closed by the game")

    def __enter__(self) -> EmotionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- sending

    def _check_open(self) -> None:
        if self._state is ConnectionState.CLOSED:
            raise ClientClosedError("this EmotionClient is closed; create a new one")

    def _message(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return protocol.make_message(type_, body, seq=self._seq, client=self.client_id)

    def _send(self, type_: str, body: dict[str, Any], *, tracked: bool = True) -> None:
        msg = self._message(type_, body)
        frame = protocol.encode(msg)
        entry = _Pending(msg, frame, 0.0)
        if tracked:
            self._pending[msg["id"]] = entry
        self._try_send(entry)

    def _try_send(self, entry: _Pending) -> None:
        try:
            self._dealer.send(entry.frame, zmq.NOBLOCK)
            entry.sent_at = time.monotonic()
        except zmq.Again:
            pass  # queue full (daemon away for long): the resend loop tries again later

    def _resend(self, now: float) -> None:
        for entry in self._pending.values():
            if now - entry.sent_at >= self._resend_interval:
                self._try_send(entry)

    def _resend_all_now(self) -> None:
        for entry in self._pending.values():
            self._try_send(entry)

    # ---------------------------------------------------------------- receiving

    def _set_state(self, state: ConnectionState, detail: str) -> None:
        if state is not self._state:
            self._state = state
            self._out.append(ConnectionChange(state, self._session, detail))
            log.info("daemon connection: %s (%s)", state.value, detail)

    def _seen(self, msg: dict[str, Any], now: float) -> None:
        """Liveness and restart detection from any daemon message."""
        self._last_seen = now
        session = msg.get("session")
        if session and session != self._session:
            restarted = self._session is not None
            self._session = session
            self._last_event_seq = None
            if restarted:
                log.info("daemon restarted (session %s): saying hello again", session)
                if not any(p.msg["type"] == "hello" for p in self._pending.values()):
                    self._send("hello", {"name": self.name, "sdk": SDK_VERSION, "protocol": protocol.PROTOCOL_VERSION})
                self._resend_all_now()
        if self._welcomed_session == self._session:
            self._set_state(ConnectionState.CONNECTED, "daemon answering")

    def _on_control(self, frames: list[bytes], now: float) -> None:
        if len(frames) != 1:
            log.warning("ignoring a %d-frame control message", len(frames))
            return
        try:
            msg = protocol.decode(frames[0])
        except protocol.ProtocolError as exc:
            log.warning("ignoring a bad frame from the daemon: %s", exc)
            return
        ref = msg.get("ref")
        request = self._pending.pop(ref, None) if ref else None
        kind, body = msg["type"], msg["body"]
        if kind == "welcome":
            self._welcome = body
            self._welcomed_session = msg.get("session")
        self._seen(msg, now)
        if kind == "status":
            self._status = DaemonStatus(body["status"])
        elif kind == "error":
            self._out.append(ErrorEvent(body["code"], body["message"], ref))
            if request is not None:
                log.warning("daemon refused %s: %s", request.msg["type"], body["message"])
        elif kind == "analysis":
            self._on_analysis(body)

    def _on_analysis(self, body: dict[str, Any]) -> None:
        intent_id = body["intent_id"]
        # Always acknowledge (the daemon resends until it hears this), deliver to the game once.
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
            self._status = DaemonStatus(msg["body"]["status"])
            return
        event = EmotionEvent.from_wire(msg)
        if self._last_event_seq is not None and event.seq > self._last_event_seq + 1:
            self.dropped_events += event.seq - self._last_event_seq - 1
        self._last_event_seq = event.seq
        self._latest = event
        self._out.append(event)

    def _check_liveness(self, now: float) -> None:
        if self._state is ConnectionState.CONNECTED and now - self._last_seen > self._liveness_timeout:
            self._set_state(ConnectionState.DISCONNECTED, f"no message from the daemon for {self._liveness_timeout:.0f} s")
