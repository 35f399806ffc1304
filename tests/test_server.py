"""The server thread with real ZeroMQ sockets on 127.0.0.1 (random ports) and raw protocol clients.

Frame results are handed in through ``Server.on_result``, the pipeline's own hand-off, so no camera
is needed; analyses come from the real ``AnalysisService`` (LLM disabled) over a real timeline.
The last test runs the whole daemon as a process on a video of real FER2013 faces.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from daemon.server import BindError, Server
from daemon.timeline import FaceResult, FrameResult, Timeline
from game_sdk import protocol
from tests.rawzmq import (
    HELLO,
    HOSTILE,
    TIMEOUT_S,
    RawClient,
    envelope,
    next_event,
    subscriber,
    wait_joined,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- helpers


def frame_result(seq: int, n_faces: int = 1, t: float | None = None) -> FrameResult:
    """A plausible result: probabilities are a softmax that rotates through the classes."""
    faces = []
    for i in range(n_faces):
        logits = [math.cos(seq / 5 + k + i) * 3 for k in range(len(protocol.CLASSES))]
        z = sum(math.exp(v) for v in logits)
        probs = tuple(math.exp(v) / z for v in logits)
        best = max(range(len(probs)), key=probs.__getitem__)
        faces.append(
            FaceResult(
                i + 1, (10 + 60 * i, 20, 50, 50), probs, probs, protocol.CLASSES[best], probs[best]
            )
        )
    return FrameResult(
        seq,
        time.time() if t is None else t,
        640,
        480,
        tuple(faces),
        {"capture": 0.5, "detect": 3.0, "classify": 2.0, "track": 0.1},
    )


def wait_until(predicate: Any, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def make_server(**kw: Any) -> Server:
    kw.setdefault("status_interval", 0.2)
    kw.setdefault("analysis_resend", 0.3)
    server = Server(events="tcp://127.0.0.1:*", control="tcp://127.0.0.1:*", **kw)
    server.start()
    return server


@pytest.fixture
def server() -> Iterator[Server]:
    s = make_server()
    yield s
    s.stop()


@pytest.fixture
def client(ctx: zmq.Context, server: Server) -> Iterator[RawClient]:
    c = RawClient(ctx, server.control_endpoint)
    yield c
    c.close()


# ---------------------------------------------------------------------------------- control


def test_hello_gets_welcome_with_snapshot(
    ctx: zmq.Context, server: Server, client: RawClient
) -> None:
    reply = client.request("hello", {"name": "test-game", "sdk": "raw", "protocol": "1.0"})
    assert reply["type"] == "welcome" and reply["session"] == server.session
    body = reply["body"]
    assert body["classes"] == list(protocol.CLASSES)
    assert body["session"] == server.session and body["protocol"] == protocol.PROTOCOL_VERSION
    assert body["latest"] is None and body["pending_results"] == 0
    assert body["events"] == server.events_endpoint
    assert body["daemon"] and body["state"]["state"] == "running"
    assert body["state"]["llm"]["backend"] == "none" and body["state"]["clients"] == 1

    sub = subscriber(ctx, server.events_endpoint, protocol.TOPIC_EMOTION, protocol.TOPIC_STATUS)
    wait_joined(sub)
    server.on_result(frame_result(41, n_faces=2))
    event = next_event(sub, protocol.TOPIC_EMOTION)
    again = client.request("hello", HELLO)
    assert again["body"]["latest"] == event["body"]
    assert again["body"]["latest"]["frame"] == 41 and len(again["body"]["latest"]["faces"]) == 2
    sub.close(linger=0)


def test_get_status_and_ping(server: Server, client: RawClient) -> None:
    client.request("hello", {**HELLO, "name": "status-game"})
    reply = client.request("get_status")
    assert reply["type"] == "status"
    status = reply["body"]
    assert status["session"] == server.session and status["pid"] == os.getpid()
    assert status["state"] == "running" and status["fps"] == 0.0 and status["uptime_s"] >= 0
    assert status["clients"] == 1 and status["client_list"][0]["name"] == "status-game"
    assert status["llm"]["backend"] == "none" and status["pending_results"] == 0
    pong = client.request("ping")
    assert pong["type"] == "pong" and pong["body"] == {}
    bye = client.request("bye")
    assert bye["type"] == "ack" and bye["body"]["of"] == "bye"
    assert client.request("get_status")["body"]["clients"] == 0  # left; no hello since


def test_emotion_and_status_events(ctx: zmq.Context, server: Server) -> None:
    sub = subscriber(ctx, server.events_endpoint)
    first_status = wait_joined(sub)
    assert first_status["session"] == server.session
    for i in range(1, 21):
        server.on_result(frame_result(i))
    events = [next_event(sub, protocol.TOPIC_EMOTION) for _ in range(20)]
    assert [e["body"]["frame"] for e in events] == list(range(1, 21))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 20))  # per-topic counter, no gaps
    assert all(e["session"] == server.session for e in events)
    body = events[-1]["body"]
    assert body["size"] == [640, 480] and 0 <= body["latency_ms"] < 1000
    assert body["stages_ms"] == {"capture": 0.5, "detect": 3.0, "classify": 2.0, "track": 0.1}
    assert math.isclose(sum(body["faces"][0]["probs"]), 1.0, abs_tol=1e-3)

    beat = next_event(sub, protocol.TOPIC_STATUS)
    status = beat["body"]
    assert status["events"]["emotion"] == 20
    assert (
        0 <= status["latency_ms"]["p50"] <= status["latency_ms"]["p99"] < 1000
    )  # capture->publish
    assert 0 <= status["stages_ms"]["publish"]["p50"] <= status["stages_ms"]["publish"]["p99"]
    beat2 = next_event(sub, protocol.TOPIC_STATUS)
    assert beat2["seq"] == beat["seq"] + 1
    sub.close(linger=0)


def test_intent_markers_are_acked_and_checked(server: Server, client: RawClient) -> None:
    now = time.time()
    begin = client.request("intent_begin", {"intent_id": "i1", "text": "open the chest", "t": now})
    assert begin["type"] == "ack"
    assert begin["body"] == {"of": "intent_begin", "intent_id": "i1", "duplicate": False}
    end = client.request("intent_end", {"intent_id": "i1", "t": now + 1})
    assert end["body"] == {"of": "intent_end", "intent_id": "i1", "duplicate": False}
    # The same marker with a new message id: not a resend, but the intent already ended.
    again = client.request("intent_end", {"intent_id": "i1", "t": now + 2})
    assert again["type"] == "ack" and again["body"]["duplicate"] is True

    unknown = client.request("intent_end", {"intent_id": "never", "t": now})
    assert unknown["type"] == "error" and unknown["body"]["code"] == "unknown_intent"
    client.request("intent_begin", {"intent_id": "i2", "text": "jump", "t": now})
    backwards = client.request("intent_end", {"intent_id": "i2", "t": now - 5})
    assert backwards["type"] == "error" and backwards["body"]["code"] == "invalid"


def test_resent_request_is_answered_again_and_not_acted_on_twice(
    server: Server, client: RawClient
) -> None:
    msg = client.message("intent_begin", {"intent_id": "dup", "text": "duck", "t": time.time()})
    client.send(msg)
    first = client.reply_to(msg["id"])
    client.send(msg)  # the SDK's resend: same id
    second = client.reply_to(msg["id"])
    assert first["body"]["duplicate"] is False and second["body"]["duplicate"] is True
    assert second["id"] != first["id"] and second["ref"] == first["ref"] == msg["id"]

    end = client.message("intent_end", {"intent_id": "dup", "t": time.time() + 0.5})
    for expected in (False, True, True):
        client.send(end)
        assert client.reply_to(end["id"])["body"]["duplicate"] is expected
    assert server.counters["duplicates"] == 3


# ---------------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_gets_an_error_and_others_keep_being_served(
    ctx: zmq.Context, server: Server, client: RawClient, case: str
) -> None:
    build, code = HOSTILE[case]
    good = RawClient(ctx, server.control_endpoint)
    try:
        assert good.request("hello", HELLO)["type"] == "welcome"
        frames = build(client.client_id)
        client.send_raw(*frames)
        error = client.recv()
        assert error["type"] == "error", error
        assert error["body"]["code"] == code, error["body"]
        assert (
            error["body"]["fatal"] is (code == "bad_version") and error["session"] == server.session
        )
        # The well-behaved client is still served, and so is the offender's next good request.
        assert good.request("ping")["type"] == "pong"
        assert client.request("ping")["type"] == "pong"
        assert server.running and server.counters["loop_errors"] == 0
    finally:
        good.close()


def test_refused_request_with_readable_id_is_referenced(client: RawClient) -> None:
    msg = envelope(client.client_id, type="warp")
    client.send_raw(msgpack.packb(msg))
    error = client.reply_to(msg["id"])
    assert error["type"] == "error" and error["body"]["code"] == "unknown_type"


# ---------------------------------------------------------------------------------- analyses


def _analysis_body(intent_id: str) -> dict[str, Any]:
    now = time.time()
    summary = {"duration_s": 2.0, "frames": 0, "faces_seen": 0, "no_face_s": 2.0}
    return {
        "intent_id": intent_id,
        "intent": "open the chest",
        "status": "failed",
        "reason": "no_frames",
        "summary": summary,
        "llm": None,
        "t_begin": now - 2,
        "t_end": now,
    }


def test_analysis_resent_until_acknowledged(server: Server, client: RawClient) -> None:
    client.request("hello", HELLO)
    server.deliver(client.client_id, _analysis_body("a1"))
    first = client.recv()
    assert first["type"] == "analysis" and first["body"]["intent_id"] == "a1"
    second = client.recv()  # not acknowledged: it comes again after analysis_resend (0.3 s)
    assert second["type"] == "analysis" and second["body"] == first["body"]
    ack = client.request("analysis_ack", {"intent_id": "a1"})
    assert ack["body"] == {"of": "analysis_ack", "intent_id": "a1", "duplicate": False}
    assert not client.sock.poll(1000), "an acknowledged analysis was sent again"
    assert server.pending_analyses(client.client_id) == 0
    again = client.request("analysis_ack", {"intent_id": "a1"})  # forgotten already
    assert again["body"]["duplicate"] is True


def test_analysis_for_an_absent_client_waits_for_its_hello(
    ctx: zmq.Context, server: Server
) -> None:
    server.deliver("late-game", _analysis_body("a2"))  # EHOSTUNREACH: nobody with that id yet
    wait_until(lambda: server.pending_analyses("late-game") == 1)
    time.sleep(0.4)  # resend attempts while the client is absent: each one EHOSTUNREACH
    assert server.running and server.counters["loop_errors"] == 0
    late = RawClient(ctx, server.control_endpoint, client_id="late-game")
    try:
        hello = late.message("hello", HELLO)
        late.send(hello)
        welcome = late.reply_to(hello["id"])
        assert welcome["body"]["pending_results"] == 1
        pushed = late.recv()
        assert pushed["type"] == "analysis" and pushed["body"]["intent_id"] == "a2"
    finally:
        late.close()


def test_real_analysis_service_delivers_exactly_once_per_intent(
    ctx: zmq.Context, tmp_path: Path
) -> None:
    from daemon.analysis.service import AnalysisService

    timeline = Timeline(max_seconds=60)
    server = Server(
        events="tcp://127.0.0.1:*",
        control="tcp://127.0.0.1:*",
        status_interval=0.2,
        analysis_resend=0.3,
    )
    analysis = AnalysisService(
        timeline=timeline, state_dir=tmp_path / "state", deliver=server.deliver, backend_mode="none"
    )
    analysis.start()
    server.analysis = analysis
    server.start()
    client = RawClient(ctx, server.control_endpoint)
    try:
        client.request("hello", HELLO)
        t0 = time.time()
        for i in range(10):
            result = frame_result(i + 1, t=t0 + i * 0.05)
            timeline.append(result)
            server.on_result(result)
        begin = client.message(
            "intent_begin", {"intent_id": "chest", "text": "open the chest", "t": t0}
        )
        end = client.message("intent_end", {"intent_id": "chest", "t": t0 + 0.5})
        for msg in (begin, begin, end, end, end):  # every request sent more than once
            client.send(msg)
        replies = [client.reply_to(m["id"]) for m in (begin, begin, end, end, end)]
        assert [r["body"]["duplicate"] for r in replies] == [False, True, False, True, True]

        analysis_msg = client.recv(timeout=10)
        assert analysis_msg["type"] == "analysis"
        body = analysis_msg["body"]
        assert body["intent_id"] == "chest" and body["status"] == "summary_only"
        assert body["t_begin"] == t0 and body["t_end"] == t0 + 0.5
        client.request("analysis_ack", {"intent_id": "chest"})
        assert not client.sock.poll(800), "analysis sent again after its ack"
        status = client.request("get_status")["body"]
        assert status["llm"]["backend"] == "none" and status["llm"]["summary_only"] == 1
    finally:
        client.close()
        server.stop()
        analysis.stop()


# ---------------------------------------------------------------------------------- fan-out


def test_subscriber_that_never_reads_does_not_stall_the_others(
    ctx: zmq.Context, server: Server
) -> None:
    """A stuck subscriber fills its queues; the XPUB drops for it and keeps serving the others."""
    stuck = subscriber(ctx, server.events_endpoint, rcvhwm=10)
    good = subscriber(ctx, server.events_endpoint)
    wait_joined(stuck)
    wait_joined(good)
    controller = RawClient(ctx, server.control_endpoint)
    n, batch = 2000, 250
    received: list[int] = []
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        for i in range(start + 1, start + batch + 1):
            server.on_result(frame_result(i, n_faces=32))  # ~6 KB each: queues fill fast
        while len(received) < start + batch:
            received.append(next_event(good, protocol.TOPIC_EMOTION)["body"]["frame"])
    elapsed = time.perf_counter() - t0
    # The control channel answers promptly while events flood.
    t_ping = time.perf_counter()
    assert controller.request("ping")["type"] == "pong"
    ping_ms = (time.perf_counter() - t_ping) * 1000
    controller.close()

    assert received == list(range(1, n + 1)), "the reading subscriber lost or reordered events"
    stuck_events = 0
    # Beats come every 0.2 s, as often as the drain's timeout: stop taking them, or the drain
    # may never see a quiet moment.
    stuck.setsockopt(zmq.UNSUBSCRIBE, protocol.TOPIC_STATUS)
    while stuck.poll(200):
        stuck_events += stuck.recv_multipart()[0] == protocol.TOPIC_EMOTION
    assert stuck_events < n, "the stuck subscriber got everything: nothing was dropped"
    print(
        f"\n{n} events of ~6 KB in {elapsed:.2f} s ({n / elapsed:.0f}/s) to the reader; "
        f"stuck one got {stuck_events}; ping during flood {ping_ms:.1f} ms"
    )
    assert elapsed < 30 and ping_ms < 500
    stuck.close(linger=0)
    good.close(linger=0)


def test_late_joiner_gets_events_from_when_it_joined(ctx: zmq.Context, server: Server) -> None:
    early = subscriber(ctx, server.events_endpoint, protocol.TOPIC_EMOTION, protocol.TOPIC_STATUS)
    wait_joined(early)
    for i in range(1, 51):
        server.on_result(frame_result(i))
    seen = [next_event(early, protocol.TOPIC_EMOTION)["seq"] for _ in range(50)]
    late = subscriber(ctx, server.events_endpoint, protocol.TOPIC_EMOTION, protocol.TOPIC_STATUS)
    wait_joined(late)
    server.on_result(frame_result(51))
    event = next_event(late, protocol.TOPIC_EMOTION)
    assert event["body"]["frame"] == 51 and event["seq"] == seen[-1] + 1
    early.close(linger=0)
    late.close(linger=0)


def test_sdk_client_connects_and_receives(server: Server) -> None:
    from game_sdk.client import EmotionClient
    from game_sdk.types import ConnectionState, EmotionEvent

    sdk = EmotionClient(
        server.control_endpoint,
        server.events_endpoint,
        name="sdk-game",
        context=zmq.Context.instance(),
    )
    try:
        wait_until(lambda: (sdk.poll(), sdk.state)[1] is ConnectionState.CONNECTED)
        got: list[EmotionEvent] = []

        def received() -> bool:
            server.on_result(frame_result(7))
            got.extend(e for e in sdk.poll() if isinstance(e, EmotionEvent))
            return bool(got)

        wait_until(received)
        assert got[0].frame == 7 and got[0].session == server.session
        assert sdk.status is not None and sdk.status["session"] == server.session
    finally:
        sdk.close()


def test_second_server_on_a_taken_port_fails_clearly(server: Server) -> None:
    clash = Server(events=server.events_endpoint, control="tcp://127.0.0.1:*")
    with pytest.raises(BindError, match="cannot bind the events endpoint .*--events"):
        clash.bind()
    clash.stop()


def test_stop_is_prompt_and_idempotent() -> None:
    s = make_server()
    s.on_result(frame_result(1))
    t0 = time.monotonic()
    s.stop()
    s.stop()
    assert time.monotonic() - t0 < 2 and not s.running


# ---------------------------------------------------------------------------------- the process


def _free_port(ctx: zmq.Context) -> int:
    sock = ctx.socket(zmq.REP)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(linger=0)
    return port


@pytest.mark.integration
@pytest.mark.slow
def test_daemon_process_publishes_real_emotions_and_stops_on_sigterm(
    ctx: zmq.Context, tmp_path: Path, tiny_checkpoint: Path, tiny_faces: dict[str, list]
) -> None:
    from tests.facevideo import Segment, write_video

    video = write_video(
        tmp_path / "faces.avi",
        [Segment("happy", 2.0), Segment("surprise", 2.0)],
        tiny_faces,
        fps=10,
    )
    events = f"tcp://127.0.0.1:{_free_port(ctx)}"
    control = f"tcp://127.0.0.1:{_free_port(ctx)}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon",
            "--source",
            f"video:{video}",
            "--model",
            str(tiny_checkpoint),
            "--events",
            events,
            "--control",
            control,
            "--llm",
            "none",
            "--threads",
            "1",
            "--state-dir",
            str(tmp_path / "state"),
            "--lock-path",
            str(tmp_path / "lock"),
            "--status-interval",
            "0.5",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = ""
    try:
        sub = subscriber(ctx, events)
        wait_joined_s = 60  # model load and first status on a busy 2-core machine
        beat = next_event(sub, protocol.TOPIC_STATUS, timeout=wait_joined_s)
        labels = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {"happy", "surprise"} <= labels:
            event = next_event(sub, protocol.TOPIC_EMOTION, timeout=10)
            labels.update(f["label"] for f in event["body"]["faces"])
        assert {"happy", "surprise"} <= labels, f"saw only {labels}"

        game = RawClient(ctx, control)
        assert (
            game.request("hello", {**HELLO, "name": "process-test"})["body"]["session"]
            == beat["session"]
        )
        status = game.request("get_status")["body"]
        assert status["model"]["arch"] == "iter1_cnn3" and status["camera"]["kind"] == "video"
        assert status["state"] == "running" and status["fps"] > 0
        assert status["frames"] > 0 and "classify" in status["stages_ms"]
        game.close()
        sub.close(linger=0)

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, stderr[-3000:]
        assert took < 5.0, f"SIGTERM took {took:.1f} s"
        assert "client connected: process-test" in stderr
        assert "emotiond stopped" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
