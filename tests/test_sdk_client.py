"""EmotionClient against a small fake daemon: raw ZeroMQ sockets (ROUTER + XPUB on random 127.0.0.1
ports) speaking through ``game_sdk.protocol``. Checks the reliability, liveness and delivery rules
of PROTOCOL.md from the client's side; the end-to-end test against the real daemon is separate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from game_sdk import (
    Analysis,
    ClientClosedError,
    ConnectionChange,
    ConnectionState,
    EmotionClient,
    EmotionEvent,
    ErrorEvent,
    IntentError,
    NotConnectedError,
    TransportError,
)
from game_sdk import protocol as p
from tests.daemonproc import free_port

pytestmark = pytest.mark.timeout(20)


def _status_body(fps: float = 30.0) -> dict[str, Any]:
    return {"state": "running", "uptime_s": 1.0, "fps": fps, "camera": {"kind": "sample"}}


# Below the kernel's ephemeral range (32768+), so a client reconnecting to a port nobody listens
# on can never end up connected to itself through that very port.
PORTS = (20000, 30000)


def _bind(sock: zmq.Socket, port: int, timeout: float = 2.0) -> None:
    """Bind a port this process just released: libzmq closes listeners asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.bind(f"tcp://127.0.0.1:{port}")
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def free_ports(ctx: zmq.Context, n: int) -> list[int]:
    """Ports nothing listens on. Probed with plain OS sockets, not ZeroMQ ones: a closing ZeroMQ
    listener can accept a client's early connect and leave it hanging until the handshake
    timeout (30 s), which a real daemon appearing later never does."""
    return [free_port() for _ in range(n)]


class FakeDaemon:
    """The daemon's two sockets, driven step by step by the test."""

    def __init__(
        self, ctx: zmq.Context, control_port: int | None = None, events_port: int | None = None
    ) -> None:
        self.session = p.new_id()
        self.seq = 0
        self.event_seq = {p.TOPIC_EMOTION: 0, p.TOPIC_STATUS: 0}
        self.router = ctx.socket(zmq.ROUTER)
        p.configure_socket(self.router, "router")
        self.xpub = ctx.socket(zmq.XPUB)
        p.configure_socket(self.xpub, "xpub")
        if control_port is None or events_port is None:
            self.control_port = self.router.bind_to_random_port("tcp://127.0.0.1", *PORTS)
            self.events_port = self.xpub.bind_to_random_port("tcp://127.0.0.1", *PORTS)
        else:
            self.control_port, self.events_port = control_port, events_port
            _bind(self.router, control_port)
            _bind(self.xpub, events_port)
        self.subscriptions: set[bytes] = set()
        self.frames: list[bytes] = []  # every request frame received, raw

    @property
    def control(self) -> str:
        return f"tcp://127.0.0.1:{self.control_port}"

    @property
    def events(self) -> str:
        return f"tcp://127.0.0.1:{self.events_port}"

    def recv(self, timeout: float = 2.0) -> tuple[bytes, dict[str, Any], bytes]:
        """Next control request: (client identity, decoded message, raw frame)."""
        if not self.router.poll(int(timeout * 1000)):
            raise AssertionError(f"no request from the client within {timeout} s")
        identity, frame = self.router.recv_multipart()
        self.frames.append(frame)
        return identity, p.decode(frame, allowed=p.CLIENT_TYPES), frame

    def recv_until(
        self, want: Callable[[dict[str, Any]], bool], client: EmotionClient, timeout: float = 3.0
    ) -> list[dict[str, Any]]:
        """Requests received (polling the client meanwhile) until one satisfies ``want``."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client.poll()
            if self.router.poll(10):
                _, msg, _ = self.recv(0)
                got.append(msg)
                if want(msg):
                    return got
        raise AssertionError(f"wanted request never came; got {[m['type'] for m in got]}")

    def quiet(self, client: EmotionClient, seconds: float) -> list[dict[str, Any]]:
        """Poll the client for ``seconds`` and return every request that arrived."""
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            client.poll()
            if self.router.poll(5):
                got.append(self.recv(0)[1])
        return got

    def send(
        self, identity: bytes, type_: str, body: dict[str, Any], ref: str | None = None
    ) -> dict[str, Any]:
        self.seq += 1
        msg = p.make_message(type_, body, seq=self.seq, session=self.session, ref=ref)
        self.router.send_multipart([identity, p.encode(msg)])
        return msg

    def welcome(self, identity: bytes, hello: dict[str, Any]) -> None:
        assert hello["type"] == "hello"
        self.send(
            identity,
            "welcome",
            {
                "daemon": "fake",
                "protocol": p.PROTOCOL_VERSION,
                "session": self.session,
                "classes": list(p.CLASSES),
                "state": _status_body(),
                "latest": None,
            },
            ref=hello["id"],
        )

    def ack(self, identity: bytes, request: dict[str, Any], duplicate: bool = False) -> None:
        body = {"of": request["type"], "duplicate": duplicate}
        if "intent_id" in request["body"]:
            body["intent_id"] = request["body"]["intent_id"]
        self.send(identity, "ack", body, ref=request["id"])

    def wait_subscribed(self, *topics: bytes, timeout: float = 3.0) -> None:
        """Block until the client's SUB subscribed (the XPUB sees it): no sleep for slow joiners."""
        deadline = time.monotonic() + timeout
        while not set(topics) <= self.subscriptions:
            left = deadline - time.monotonic()
            if left <= 0 or not self.xpub.poll(int(left * 1000)):
                raise AssertionError(f"no subscription to {topics}; have {self.subscriptions}")
            frame = self.xpub.recv()
            if frame[:1] == b"\x01":
                self.subscriptions.add(frame[1:])

    def publish(self, topic: bytes, body: dict[str, Any], seq: int | None = None) -> None:
        self.event_seq[topic] = self.event_seq[topic] + 1 if seq is None else seq
        msg = p.make_message(
            p.EVENT_TYPES[topic], body, seq=self.event_seq[topic], session=self.session
        )
        self.xpub.send_multipart(p.encode_event(topic, msg))

    def beat_until(
        self, client: EmotionClient, types: set[str], timeout: float = 5.0
    ) -> tuple[bytes, list[dict[str, Any]]]:
        """Publish status beats and poll the client until requests of all ``types`` arrived."""
        # The client's SUB retries with backoff up to RECONNECT_IVL_MAX (2 s) before it finds us.
        self.wait_subscribed(p.TOPIC_STATUS, timeout=3 * p.RECONNECT_IVL_MAX_MS / 1000 + 2)
        got: list[dict[str, Any]] = []
        identity = b""
        deadline = time.monotonic() + timeout
        while not types <= {m["type"] for m in got}:
            assert time.monotonic() < deadline, f"got only {[m['type'] for m in got]}"
            self.publish(p.TOPIC_STATUS, _status_body())
            client.poll()
            while self.router.poll(20):
                identity, msg, _ = self.recv(0)
                got.append(msg)
        return identity, got

    def close(self) -> None:
        self.router.close(linger=0)
        self.xpub.close(linger=0)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def daemon(ctx: zmq.Context) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(ctx)
    yield fake
    fake.close()


def make_client(ctx: zmq.Context, daemon: FakeDaemon, **kwargs: Any) -> EmotionClient:
    kwargs.setdefault("resend_interval", 0.2)
    return EmotionClient(daemon.control, daemon.events, context=ctx, name="test-game", **kwargs)


def poll_until(
    client: EmotionClient, cond: Callable[[list[Any]], bool], timeout: float = 3.0
) -> list[Any]:
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.extend(client.poll())
        if cond(events):
            return events
        time.sleep(0.002)
    raise AssertionError(f"condition not met; events: {events}")


def connect(client: EmotionClient, daemon: FakeDaemon) -> bytes:
    identity, hello, _ = daemon.recv()
    daemon.welcome(identity, hello)
    poll_until(client, lambda _: client.state is ConnectionState.CONNECTED)
    return identity


def _face(face_id: int, side: int, top: int) -> dict[str, Any]:
    probs = [0.04] * len(p.CLASSES)
    probs[top] = 1.0 - 0.04 * (len(p.CLASSES) - 1)
    return {
        "id": face_id,
        "box": [10 * face_id, 20, side, side],
        "probs": probs,
        "raw": probs[::-1],
        "label": p.CLASSES[top],
        "confidence": probs[top],
    }


# ---------------------------------------------------------------------------- connecting


def test_hello_then_welcome_connects(ctx: zmq.Context, daemon: FakeDaemon) -> None:
    changes: list[ConnectionChange] = []
    client = make_client(ctx, daemon, client_id="game-7", on_connection=changes.append)
    try:
        assert client.state is ConnectionState.CONNECTING
        identity, hello, _ = daemon.recv()
        assert identity == b"game-7" and hello["client"] == "game-7"
        assert hello["body"]["name"] == "test-game"
        assert hello["body"]["protocol"] == p.PROTOCOL_VERSION
        daemon.welcome(identity, hello)
        events = poll_until(client, lambda ev: any(isinstance(e, ConnectionChange) for e in ev))
        assert [e.state for e in events if isinstance(e, ConnectionChange)] == [
            ConnectionState.CONNECTED
        ]
        assert changes == [e for e in events if isinstance(e, ConnectionChange)]
        assert client.session == daemon.session
        assert client.welcome is not None and client.welcome["classes"] == list(p.CLASSES)
        assert client.status is not None and client.status.fps == 30.0
        assert client.unacknowledged == 0
        assert daemon.quiet(client, 0.5) == []  # an answered hello is not resent
    finally:
        client.close()


def test_wait_connected_reports_a_missing_daemon(ctx: zmq.Context) -> None:
    control, events = free_ports(ctx, 2)
    client = EmotionClient(f"tcp://127.0.0.1:{control}", f"tcp://127.0.0.1:{events}", context=ctx)
    try:
        with pytest.raises(NotConnectedError, match="emotiond"):
            client.wait_connected(timeout=0.2)
    finally:
        client.close()


def test_bad_endpoint_is_a_transport_error(ctx: zmq.Context) -> None:
    with pytest.raises(TransportError, match="emotiond") as info:
        EmotionClient("no-such-transport://x", context=ctx)
    assert isinstance(info.value.__cause__, zmq.ZMQError)


# ---------------------------------------------------------------------------- reliability


def test_markers_are_resent_with_the_same_id_until_acked(
    ctx: zmq.Context, daemon: FakeDaemon
) -> None:
    client = make_client(ctx, daemon)
    try:
        identity = connect(client, daemon)
        handle = client.begin_intent("jump the gap")
        _, first, first_frame = daemon.recv()
        assert first["type"] == "intent_begin"
        assert first["body"] == {
            "intent_id": handle.intent_id,
            "text": "jump the gap",
            "t": handle.t_begin,
        }
        # Not acknowledged: it comes again, byte for byte, while the daemon is live.
        again = daemon.recv_until(lambda m: m["type"] == "intent_begin", client)[-1]
        assert daemon.frames[-1] == first_frame and again["id"] == first["id"]
        daemon.ack(identity, again)
        client.end_intent(handle)
        ends = daemon.recv_until(lambda m: m["type"] == "intent_end", client)
        end = ends[-1]
        assert end["body"]["intent_id"] == handle.intent_id and end["body"]["t"] >= handle.t_begin
        resent = daemon.recv_until(lambda m: m["type"] == "intent_end", client)
        assert [m["id"] for m in resent if m["type"] == "intent_end"] == [end["id"]]
        daemon.ack(identity, end)
        late = daemon.quiet(client, 0.6)
        assert all(m["type"] != "intent_end" for m in late), "acked marker still resent"
        assert client.unacknowledged == 0
    finally:
        client.close()


def test_busy_keeps_the_request_and_other_errors_surface(
    ctx: zmq.Context, daemon: FakeDaemon
) -> None:
    errors: list[ErrorEvent] = []
    client = make_client(ctx, daemon, on_error=errors.append)
    try:
        identity = connect(client, daemon)
        handle = client.begin_intent("cast the spell")
        _, begin, _ = daemon.recv()
        daemon.send(identity, "error", p.error_body("busy", "queue full"), ref=begin["id"])
        again = daemon.recv_until(lambda m: m["type"] == "intent_begin", client)[-1]
        assert again["id"] == begin["id"]
        daemon.send(identity, "error", p.error_body("invalid", "bad text"), ref=again["id"])
        poll_until(client, lambda _: len(errors) == 2)
        assert [(e.code, e.ref) for e in errors] == [
            ("busy", begin["id"]),
            ("invalid", begin["id"]),
        ]
        assert client.unacknowledged == 0
        assert handle.intent_id == begin["body"]["intent_id"]
    finally:
        client.close()


def test_client_started_before_the_daemon_delivers_its_markers(ctx: zmq.Context) -> None:
    ports = free_ports(ctx, 2)
    control, events = (f"tcp://127.0.0.1:{port}" for port in ports)
    client = EmotionClient(control, events, context=ctx, resend_interval=0.2)
    try:
        handle = client.begin_intent("open the gate")
        client.end_intent(handle)
        for _ in range(20):  # the game keeps running while nobody answers
            assert client.poll() == []
        late = FakeDaemon(ctx, *ports)
        try:
            # A real daemon beats every second; the beats are what tell a client whose queued
            # copies were lost (e.g. taken by a listener that then closed) to resend them.
            identity, got = late.beat_until(client, {"hello", "intent_begin", "intent_end"})
            order = [m["type"] for m in got]
            assert order.index("hello") < order.index("intent_begin") < order.index("intent_end")
            begin = next(m for m in got if m["type"] == "intent_begin")
            assert begin["body"]["intent_id"] == handle.intent_id
            assert begin["body"]["t"] == handle.t_begin  # the game's time, not arrival time
            late.welcome(identity, got[order.index("hello")])
            for msg in got:
                if msg["type"] != "hello":
                    late.ack(identity, msg)
            poll_until(client, lambda _: client.unacknowledged == 0)
        finally:
            late.close()
    finally:
        client.close()


def test_daemon_restart_gets_hello_and_open_markers_again(ctx: zmq.Context) -> None:
    first = FakeDaemon(ctx)
    changes: list[ConnectionChange] = []
    client = make_client(ctx, first, liveness_timeout=0.5, on_connection=changes.append)
    try:
        identity = connect(client, first)
        handle = client.begin_intent("defuse the bomb")
        _, begin, _ = first.recv()
        first.ack(identity, begin)
        poll_until(client, lambda _: client.unacknowledged == 0)
        ports = first.control_port, first.events_port
        first.close()  # the daemon dies with the intent open...
        poll_until(client, lambda _: client.state is ConnectionState.DISCONNECTED, timeout=3.0)
        client.end_intent(handle)  # ...and the game ends it while no daemon runs
        second = FakeDaemon(ctx, *ports)
        try:
            assert second.session != first.session
            ident2, got = second.beat_until(client, {"hello", "intent_begin", "intent_end"})
            assert ident2 == identity
            replayed = next(m for m in got if m["type"] == "intent_begin")
            assert replayed["id"] == begin["id"] and replayed["body"] == begin["body"]
            end = next(m for m in got if m["type"] == "intent_end")
            assert end["body"]["intent_id"] == handle.intent_id
            hello = next(m for m in got if m["type"] == "hello")
            second.welcome(identity, hello)
            second.ack(identity, replayed)
            second.ack(identity, end)
            poll_until(client, lambda _: client.state is ConnectionState.CONNECTED)
            assert client.session == second.session
            assert [c.state for c in changes] == [
                ConnectionState.CONNECTED,
                ConnectionState.DISCONNECTED,
                ConnectionState.CONNECTED,
            ]
            poll_until(client, lambda _: client.unacknowledged == 0)
        finally:
            second.close()
    finally:
        client.close()


def test_unknown_intent_makes_the_client_send_the_begin_again(
    ctx: zmq.Context, daemon: FakeDaemon
) -> None:
    client = make_client(ctx, daemon)
    try:
        identity = connect(client, daemon)
        with client.intent("climb the wall") as handle:
            _, begin, _ = daemon.recv()
            daemon.ack(identity, begin)
        _, end, _ = daemon.recv()
        assert end["type"] == "intent_end"
        daemon.send(identity, "error", p.error_body("unknown_intent", "who?"), ref=end["id"])
        got = daemon.recv_until(lambda m: m["type"] == "intent_end", client)
        assert [(m["type"], m["id"]) for m in got] == [
            ("intent_begin", begin["id"]),
            ("intent_end", end["id"]),
        ]
        assert got[0]["body"]["t"] == handle.t_begin
        daemon.ack(identity, got[0])
        daemon.ack(identity, got[1])
        events = poll_until(client, lambda _: client.unacknowledged == 0)
        assert not [e for e in events if isinstance(e, ErrorEvent)]  # handled, not the game's
    finally:
        client.close()


# ---------------------------------------------------------------------------- delivery


def test_analysis_is_delivered_once_and_every_copy_acked(
    ctx: zmq.Context, daemon: FakeDaemon
) -> None:
    seen: list[Analysis] = []
    client = make_client(ctx, daemon, on_analysis=seen.append)
    try:
        identity = connect(client, daemon)
        body = {
            "intent_id": "i" * 32,
            "intent": "win the duel",
            "status": "summary_only",
            "reason": "ollama_unreachable",
            "summary": {
                "duration_s": 4.0,
                "frames": 120,
                "faces_seen": 1,
                "no_face_s": 0.0,
                "dominant": "angry",
                "share": {"angry": 1.0},
            },
            "llm": {
                "backend": "ollama",
                "model": "llama3.2:3b",
                "text": None,
                "structured": None,
                "timings": {"queue_ms": 1.0, "total_ms": 5.0},
            },
            "t_begin": 100.0,
            "t_end": 104.0,
        }
        daemon.send(identity, "analysis", body)
        daemon.send(identity, "analysis", body)  # the daemon's resend
        acks = daemon.recv_until(lambda m: m["type"] == "analysis_ack", client)
        acks += daemon.recv_until(lambda m: m["type"] == "analysis_ack", client)
        assert [m["body"]["intent_id"] for m in acks if m["type"] == "analysis_ack"] == [
            "i" * 32,
            "i" * 32,
        ]
        daemon.quiet(client, 0.2)
        assert len(seen) == 1
        result = seen[0]
        assert result.intent_id == body["intent_id"] and result.intent == "win the duel"
        assert result.status == "summary_only" and result.reason == "ollama_unreachable"
        assert result.summary["dominant"] == "angry" and result.backend == "ollama"
        assert result.text is None and result.timings == {"queue_ms": 1.0, "total_ms": 5.0}
        assert (result.t_begin, result.t_end) == (100.0, 104.0)
    finally:
        client.close()


def test_emotion_events_become_dataclasses_and_gaps_are_counted(
    ctx: zmq.Context, daemon: FakeDaemon
) -> None:
    received: list[EmotionEvent] = []
    client = make_client(ctx, daemon, on_emotion=received.append)
    try:
        connect(client, daemon)
        daemon.wait_subscribed(p.TOPIC_EMOTION, p.TOPIC_STATUS)
        assert client.latest() is None
        sent = []
        for seq in (1, 2, 3, 6, 7):  # 4 and 5 never arrive
            faces = [_face(1, 80, seq % 7), _face(2, 120 + seq, (seq + 3) % 7)]
            body = {
                "frame": seq * 2,
                "t_capture": 1000.0 + seq / 30,
                "size": [640, 480],
                "latency_ms": 20.0 + seq,
                "faces": faces,
            }
            daemon.publish(p.TOPIC_EMOTION, body, seq=seq)
            sent.append(body)
        events = poll_until(client, lambda ev: len(received) == len(sent))
        assert [e.seq for e in events if isinstance(e, EmotionEvent)] == [1, 2, 3, 6, 7]
        assert client.dropped_events == 2
        for event, body in zip(received, sent, strict=True):
            assert event.frame == body["frame"] and event.size == (640, 480)
            assert event.session == daemon.session
            assert event.latency_ms == body["latency_ms"]
            assert [f.id for f in event.faces] == [1, 2]
            for face, wire in zip(event.faces, body["faces"], strict=True):
                assert face.box == tuple(wire["box"]) and face.label == wire["label"]
                assert list(face.probs) == list(p.CLASSES)
                assert list(face.probs.values()) == wire["probs"]
                assert list(face.raw.values()) == wire["raw"]
                assert max(face.probs, key=face.probs.__getitem__) == face.label
            assert event.primary is not None and event.primary.id == 2  # the larger face
        assert client.latest() == received[-1]
    finally:
        client.close()


def test_status_beats_keep_the_daemon_alive_and_their_absence_disconnects(
    ctx: zmq.Context, daemon: FakeDaemon
) -> None:
    client = make_client(ctx, daemon, liveness_timeout=0.4)
    try:
        identity = connect(client, daemon)
        daemon.wait_subscribed(p.TOPIC_STATUS)
        start = time.monotonic()
        while time.monotonic() - start < 0.8:  # twice the timeout, with beats: stays connected
            daemon.publish(p.TOPIC_STATUS, _status_body(fps=12.5))
            daemon.quiet(client, 0.1)
            assert client.state is ConnectionState.CONNECTED
        assert client.status is not None and client.status.fps == 12.5
        client.request_status()
        _, ask, _ = daemon.recv()
        assert ask["type"] == "get_status"
        daemon.send(identity, "status", _status_body(fps=7.0), ref=ask["id"])
        poll_until(client, lambda _: client.status is not None and client.status.fps == 7.0)
        events = poll_until(client, lambda _: client.state is ConnectionState.DISCONNECTED)
        gone = [e for e in events if isinstance(e, ConnectionChange)]
        assert gone and gone[-1].state is ConnectionState.DISCONNECTED
        daemon.publish(p.TOPIC_STATUS, _status_body())  # same session back: connected again
        poll_until(client, lambda _: client.state is ConnectionState.CONNECTED)
    finally:
        client.close()


def test_poll_never_blocks(ctx: zmq.Context, daemon: FakeDaemon) -> None:
    client = make_client(ctx, daemon)
    try:
        connect(client, daemon)
        daemon.wait_subscribed(p.TOPIC_EMOTION)
        idle = []
        for _ in range(2000):
            t0 = time.perf_counter()
            client.poll()
            idle.append(time.perf_counter() - t0)
        idle.sort()
        assert idle[len(idle) // 2] < 100e-6, (
            f"idle poll median {idle[len(idle) // 2] * 1e6:.0f} us"
        )
        assert idle[-1] < 0.05
        # With traffic: a burst of 100 events is drained in one call, without waiting.
        for seq in range(1, 101):
            daemon.publish(
                p.TOPIC_EMOTION,
                {"frame": seq, "t_capture": 1.0, "size": [64, 48], "faces": [_face(1, 30, 3)]},
                seq=seq,
            )
        poll_until(client, lambda ev: len(ev) > 0)
        t0 = time.perf_counter()
        client.poll()
        assert time.perf_counter() - t0 < 0.05
    finally:
        client.close()


# ---------------------------------------------------------------------------- misuse


def test_intent_misuse_and_closed_client(ctx: zmq.Context, daemon: FakeDaemon) -> None:
    client = make_client(ctx, daemon)
    identity = connect(client, daemon)
    with pytest.raises(IntentError):
        client.begin_intent("   ")
    with pytest.raises(IntentError, match="1000"):
        client.begin_intent("x" * (p.MAX_INTENT_TEXT + 1))
    handle = client.begin_intent("x" * p.MAX_INTENT_TEXT)
    client.end_intent(handle)
    with pytest.raises(IntentError):
        client.end_intent(handle)
    client.close()
    got = []
    while daemon.router.poll(200):
        got.append(daemon.recv(0)[1]["type"])
    assert got[-1] == "bye" and identity == client.client_id.encode()
    assert client.state is ConnectionState.CLOSED
    client.close()  # idempotent
    with pytest.raises(ClientClosedError):
        client.poll()
    with pytest.raises(ClientClosedError):
        client.begin_intent("too late")
