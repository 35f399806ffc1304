"""End to end: a real ``emotiond`` child process (tests/daemonproc.py) and the real
``game_sdk.EmotionClient`` on 127.0.0.1, on videos written here from real FER2013 faces and
classified with the checkpoint trained in-session (``tiny_checkpoint``).

What each test shows: labels follow a known expression script; acknowledged intent markers
survive daemon restarts and crashes; hostile control frames are refused while a game keeps being
served; a subscriber that never reads stalls nobody; camera faults are reported and retried;
SIGTERM is clean; a second daemon on the same lock exits with the documented code; the SDK
example runs as printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from game_sdk import (
    Analysis,
    ConnectionState,
    EmotionClient,
    EmotionEvent,
    ErrorEvent,
    Event,
    protocol,
)
from tests.daemonproc import REPO, DaemonProcess
from tests.facevideo import Segment, write_video
from tests.rawzmq import HELLO, HOSTILE, RawClient, next_event, subscriber, wait_joined

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FPS = 15.0
# The first segment is longer: a game that started before the daemon reconnects within
# RECONNECT_IVL_MAX (2 s), and the video plays from the moment the daemon is up.
SCRIPT = (
    Segment("happy", 4.0),
    Segment("surprise", 2.0),
    Segment("angry", 2.0),
    Segment("neutral", 2.0),
)
SETTLE_FRAMES = 8  # the smoothed label may lag a segment change by this many frames (~0.5 s)
TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------------ helpers


def poll_until(
    client: EmotionClient,
    done: Callable[[list[Event]], bool],
    timeout: float = TIMEOUT_S,
    what: str = "condition",
) -> list[Event]:
    """Call ``poll()`` as a game loop would (every ~5 ms) until ``done(events so far)``."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while True:
        events.extend(client.poll())
        if done(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} not reached within {timeout:g} s; state {client.state.value}, "
                f"{len(events)} events, last: {events[-3:]}"
            )
        time.sleep(0.005)


def emotions(events: list[Event]) -> list[EmotionEvent]:
    return [e for e in events if isinstance(e, EmotionEvent)]


def analyses(events: list[Event]) -> list[Analysis]:
    return [e for e in events if isinstance(e, Analysis)]


def client_for(daemon: DaemonProcess, **kw: Any) -> EmotionClient:
    return EmotionClient(daemon.control, daemon.events, **kw)


def script_label(index: int) -> tuple[int, str] | None:
    """The script segment (number, label) that shows video frame ``index``, or None past the end."""
    start = 0
    for number, seg in enumerate(SCRIPT):
        n = int(round(seg.seconds * FPS))
        if index < start + n:
            return number, seg.label
        start += n
    return None


SCRIPT_FRAMES = sum(int(round(seg.seconds * FPS)) for seg in SCRIPT)


@pytest.fixture(scope="module")
def script_video(tmp_path_factory: pytest.TempPathFactory, tiny_faces: dict[str, list]) -> Path:
    path = tmp_path_factory.mktemp("e2e-video") / "script.avi"
    return write_video(path, SCRIPT, tiny_faces, fps=FPS)


@pytest.fixture(scope="module")
def live_daemon(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, script_video: Path
) -> Iterator[DaemonProcess]:
    """One daemon looping the script video, shared by the tests that do not stop it."""
    with DaemonProcess(
        tmp_path_factory.mktemp("live-daemon"),
        model=tiny_checkpoint,
        source=f"video:{script_video}",
    ) as daemon:
        yield daemon


@pytest.fixture
def game(live_daemon: DaemonProcess) -> Iterator[EmotionClient]:
    """An SDK client connected to ``live_daemon`` that has received its first emotion event."""
    with client_for(live_daemon, name="e2e-game") as client:
        poll_until(
            client,
            lambda ev: client.state is ConnectionState.CONNECTED and bool(emotions(ev)),
            what="welcome and a first emotion event",
        )
        yield client


# ------------------------------------------------------------------------------------ tests


def test_sdk_receives_labels_that_follow_the_script(
    tmp_path: Path, tiny_checkpoint: Path, script_video: Path
) -> None:
    daemon = DaemonProcess(
        tmp_path,
        model=tiny_checkpoint,
        source=f"video:{script_video}",
        args=["--no-loop-video"],
    )
    # The game starts first: its SUB connects as soon as the daemon binds, so it sees the video
    # from (nearly) its first frame.
    client = client_for(daemon, name="script-test")
    try:
        daemon.start()

        def finished(events: list[Event]) -> bool:
            status = client.status
            got = emotions(events)
            return (
                status is not None
                and status.camera.get("state") == "ended"
                and bool(got)
                and got[-1].frame == status.get("frames")
            )

        got = emotions(poll_until(client, finished, what="the end of the video"))
    finally:
        client.close()
        daemon.stop()

    status = client.status
    assert status is not None
    # Every video frame went through the pipeline, so an event's ``frame`` (the pipeline's
    # counter, from 1) is the video frame index + 1.
    assert status["frames"] == SCRIPT_FRAMES and status.get("errors") == 0, status.raw
    assert client.dropped_events == 0
    seqs = [e.seq for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "emotion events have gaps"
    frames = [e.frame for e in got]
    assert frames == list(range(frames[0], frames[-1] + 1))
    reconnect_frames = protocol.RECONNECT_IVL_MAX_MS / 1000 * FPS
    assert frames[0] <= reconnect_frames + 8, f"the game missed the first {frames[0] - 1} frames"
    # Capture times are the video played in real time: one frame every 1/FPS s.
    period = (got[-1].t_capture - got[0].t_capture) / (frames[-1] - frames[0])
    assert period == pytest.approx(1 / FPS, rel=0.15)

    with_face = [e for e in got if e.primary is not None]
    assert len(with_face) >= 0.95 * len(got), "the detector lost the face too often"
    assert {f.id for e in got for f in e.faces} == {with_face[0].primary.id}, "face id changed"

    by_segment: dict[int, Counter[str]] = {}
    for event in with_face:
        where = script_label(event.frame - 1)
        assert where is not None, f"frame {event.frame} is past the script"
        number, _ = where
        start = sum(int(round(s.seconds * FPS)) for s in SCRIPT[:number])
        if event.frame - 1 - start >= SETTLE_FRAMES:
            by_segment.setdefault(number, Counter())[event.primary.label] += 1
    report = {SCRIPT[n].label: dict(c) for n, c in sorted(by_segment.items())}
    for number, seg in enumerate(SCRIPT):
        counts = by_segment.get(number, Counter())
        total = sum(counts.values())
        assert total >= 15, f"too few frames of {seg.label}: {report}"
        assert counts[seg.label] >= 0.8 * total, f"segment {seg.label}: {report}"
    print(f"\nfirst frame seen {frames[0]}, labels per segment after settling: {report}")


def probe_intent(daemon: DaemonProcess, client_id: str, begin: dict[str, Any]) -> dict[str, Any]:
    """Ask the daemon, as ``client_id`` but on a socket of our own, to begin a begun intent again.

    An ``ack`` with ``duplicate: true`` proves the daemon already knew that marker.
    """
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    protocol.configure_socket(sock, "dealer")
    sock.setsockopt(zmq.ROUTING_ID, f"probe-{protocol.new_id()}".encode())
    sock.connect(daemon.control)
    try:
        msg = protocol.make_message("intent_begin", begin, seq=1, client=client_id)
        sock.send(protocol.encode(msg))
        deadline = time.monotonic() + 10
        while sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            reply = protocol.decode(sock.recv(), allowed=protocol.DAEMON_TYPES)
            if reply.get("ref") == msg["id"]:
                return reply
        raise AssertionError("the daemon did not answer the probe")
    finally:
        sock.close(linger=0)


def live_frame(client: EmotionClient) -> bool:
    """Whether the client has an emotion event from the daemon session it is connected to."""
    latest = client.latest()
    return latest is not None and latest.session == client.session


def test_restart_and_crash_lose_no_acknowledged_marker(
    tmp_path: Path, tiny_checkpoint: Path, script_video: Path
) -> None:
    daemon = DaemonProcess(tmp_path, model=tiny_checkpoint, source=f"video:{script_video}")
    client_id = "restart-test-game"
    seen: list[Event] = []  # everything poll() returned, across the whole session

    def until(done: Callable[[], bool], what: str) -> None:
        def record(events: list[Event]) -> bool:
            seen.extend(events)
            events.clear()
            return done()

        poll_until(client, record, what=what)

    with daemon, client_for(daemon, client_id=client_id, name="restart-test") as client:
        until(lambda: client.state is ConnectionState.CONNECTED, "welcome")
        first_session = client.session

        # 1. Begun and acknowledged; the daemon restarts (SIGTERM) before the end.
        chest = client.begin_intent("open the chest")
        until(lambda: client.unacknowledged == 0, "the begin's ack")
        daemon.restart()
        begin = {"intent_id": chest.intent_id, "text": chest.text, "t": chest.t_begin}
        known = probe_intent(daemon, client_id, begin)
        assert known["type"] == "ack" and known["body"]["duplicate"] is True, known
        until(
            lambda: client.state is ConnectionState.CONNECTED and client.session != first_session,
            "reconnection after the restart",
        )
        until(lambda: live_frame(client), "a frame from the restarted daemon")
        client.end_intent(chest)
        until(lambda: client.unacknowledged == 0, "the end's ack")

        # 2. The daemon crashes (SIGKILL); a marker is begun while it is down, ended once it is
        # back. The first intent's result, persisted before the crash, must still arrive.
        daemon.kill()
        lever = client.begin_intent("pull the lever")
        daemon.start()
        until(
            lambda: client.state is ConnectionState.CONNECTED and client.unacknowledged == 0,
            "the begin sent while the daemon was down",
        )
        # A loaded machine may take a while from "ready" to the first frame; the window must
        # reach into the new daemon's life to have frames to summarise.
        until(lambda: live_frame(client), "a frame from the restarted daemon")
        client.end_intent(lever)

        wanted = {chest.intent_id, lever.intent_id}
        until(lambda: {a.intent_id for a in analyses(seen)} >= wanted, "both analyses")
        # The daemon resends a result until our ack reaches it, the SDK delivers it once: wait
        # until the daemon holds nothing for us, then count.
        until(
            lambda: client.status is not None and client.status.get("pending_results") == 0,
            "the daemon to drop the acknowledged results",
        )

    assert not [e for e in seen if isinstance(e, ErrorEvent)], seen
    got = {a.intent_id: a for a in analyses(seen)}
    assert len(analyses(seen)) == len(got) == 2, analyses(seen)
    for handle in (chest, lever):
        analysis = got[handle.intent_id]
        assert analysis.intent == handle.text
        assert analysis.t_begin == handle.t_begin  # the marker's own time, not a resend's
        assert analysis.backend in (None, "none"), analysis
        # Each window reaches into a running daemon's life, so it has frames to summarise.
        assert (analysis.status, analysis.reason) == ("summary_only", "no_llm"), analysis
        assert analysis.summary["frames"] > 0
    assert daemon.starts == 3


def envelope(client_id: str, **over: Any) -> dict[str, Any]:
    msg = protocol.make_message("ping", {}, seq=1, client=client_id)
    msg.update(over)
    return msg


# The daemon-level cases beyond tests/test_server.py's table: lengths declared far beyond the
# frame, containers over the decoder's limits, strings over the schema's.
HOSTILE_MORE = {
    "declared_huge_map": (lambda cid: [b"\xdf\xff\xff\xff\xff\xa1a"], "bad_frame"),
    "declared_huge_str": (lambda cid: [b"\x81\xa1v\xdb\xff\xff\xff\xf0abc"], "bad_frame"),
    "wide_map": (
        lambda cid: [msgpack.packb({**envelope(cid), **{f"k{i}": i for i in range(1000)}})],
        "bad_frame",
    ),
    "huge_string": (
        lambda cid: [
            msgpack.packb(envelope(cid, type="hello", body={**HELLO, "name": "n" * 60_000}))
        ],
        "invalid",
    ),
    "huge_intent_text": (
        lambda cid: [
            msgpack.packb(
                envelope(
                    cid,
                    type="intent_begin",
                    body={"intent_id": "i1", "text": "t" * 5000, "t": time.time()},
                )
            )
        ],
        "invalid",
    ),
    "seq_is_a_string": (lambda cid: [msgpack.packb(envelope(cid, seq="one"))], "invalid"),
    "body_is_a_list": (lambda cid: [msgpack.packb(envelope(cid, body=[1]))], "invalid"),
}


def ping_until_pong(raw: RawClient, timeout: float = 10.0) -> None:
    """Ping every second (as the SDK resends) until a pong: the socket may be reconnecting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = raw.message("ping", {})
        raw.send(msg)
        try:
            if raw.reply_to(msg["id"], timeout=1.0)["type"] == "pong":
                return
        except AssertionError:
            continue
    raise AssertionError(f"no pong within {timeout} s")


def test_hostile_input_is_refused_while_a_game_keeps_being_served(
    live_daemon: DaemonProcess, game: EmotionClient
) -> None:
    ctx = zmq.Context.instance()
    attacker = RawClient(ctx, live_daemon.control)
    seen: list[Event] = list(game.poll())
    try:
        cases = {**HOSTILE, **HOSTILE_MORE}
        for name, (build, code) in sorted(cases.items()):
            frames = build(attacker.client_id)
            attacker.send_raw(*frames)
            error = attacker.recv(timeout=10)
            assert error["type"] == "error", (name, error)
            assert error["body"]["code"] == code, (name, error["body"])
            assert error["body"].get("fatal", False) is (code == "bad_version"), name
            seen.extend(game.poll())

        # Over ZMQ_MAXMSGSIZE: libzmq drops the frame and the connection; no reply. The
        # attacker's DEALER reconnects by itself and is served again.
        attacker.send_raw(b"\x00" * (protocol.SOCKET_MAX_MSG_SIZE + 1))
        assert not attacker.sock.poll(500), "an over-size frame got an answer"
        ping_until_pong(attacker)

        # The game never noticed: events kept coming, without gaps, and its requests are served.
        before = len(emotions(seen))
        game.request_status()
        seen.extend(
            poll_until(
                game,
                lambda ev: game.unacknowledged == 0 and len(emotions(ev)) >= 5,
                what="a status reply and more events after the attack",
            )
        )
    finally:
        attacker.close()
    assert len(emotions(seen)) > before + 4
    assert game.state is ConnectionState.CONNECTED
    assert game.dropped_events == 0
    assert not [e for e in seen if isinstance(e, ErrorEvent)]
    assert live_daemon.running
    log = live_daemon.log()
    assert "refused a request" in log and "Traceback" not in log


def test_late_and_stuck_subscribers_do_not_stall_the_daemon(
    live_daemon: DaemonProcess, game: EmotionClient
) -> None:
    """A SUB that never reads (tiny queues) and one that joins late, beside a game.

    tests/test_server.py floods an in-process server until the stuck queue overflows; here the
    real daemon keeps its pace and a reading game sees every event.
    """
    ctx = zmq.Context.instance()
    stuck = subscriber(ctx, live_daemon.events, rcvhwm=1)
    wait_joined(stuck)  # the one read it ever does: proof its subscription is in place
    frames_at_start = game.status.get("frames") if game.status else None
    seen = poll_until(game, lambda ev: len(emotions(ev)) >= 20, what="20 events")
    late = subscriber(ctx, live_daemon.events)
    try:
        wait_joined(late)
        first_late = next_event(late, protocol.TOPIC_EMOTION)
        seen += poll_until(game, lambda ev: len(emotions(ev)) >= 20, what="20 more events")
        status = live_daemon.status()
    finally:
        stuck.close(linger=0)
        late.close(linger=0)
    got = emotions(seen)
    seqs = [e.seq for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and game.dropped_events == 0
    assert first_late["seq"] > seqs[0]  # it joined mid-stream and got the live sequence
    assert frames_at_start is not None and status["frames"] >= frames_at_start + 40
    # The video plays at FPS; the daemon kept up with it while the stuck SUB held its queue.
    assert status["fps"] >= 0.8 * FPS, status["fps"]
    period = (got[-1].t_capture - got[0].t_capture) / (got[-1].frame - got[0].frame)
    assert period == pytest.approx(1 / FPS, rel=0.2)


def test_sdk_minimal_example_runs_against_the_daemon(live_daemon: DaemonProcess) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "sdk_minimal.py"),
            "--control",
            live_daemon.control,
            "--events",
            live_daemon.events,
            "--seconds",
            "4",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    labels = "|".join(protocol.CLASSES)
    assert re.search(rf"^player: ({labels}) \d\.\d\d$", out, re.M), out
    found = re.search(r"^analysis of 'open the chest': summary_only \((\w+)\)", out, re.M)
    assert found and found.group(1) == "no_llm", out
    assert "Traceback" not in proc.stderr


def test_camera_fault_lock_and_sigterm(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A video that cannot be decoded, then vanishes: reported and retried while the daemon
    serves; a second daemon on the same lock exits 4; SIGTERM during a retry exits 0 in < 5 s."""
    clip = tmp_path / "camera.avi"
    clip.write_bytes(b"not a video at all" * 100)
    daemon = DaemonProcess(tmp_path / "first", model=tiny_checkpoint, source=f"video:{clip}")
    with daemon, client_for(daemon, name="fault-test") as client:

        def camera() -> dict[str, Any]:
            return dict(client.status.camera) if client.status else {}

        poll_until(
            client,
            lambda _: client.state is ConnectionState.CONNECTED and camera().get("retries", 0) >= 1,
            what="a camera failure",
        )
        assert camera()["state"] == "failed" and "cannot decode" in camera()["error"]
        assert client.status.state == "degraded"
        clip.unlink()
        poll_until(
            client,
            lambda _: "not found" in (camera().get("error") or ""),
            what="the missing file to be reported",
        )
        retries = camera()["retries"]
        assert retries >= 2 and camera()["state"] == "failed"
        client.request_status()
        poll_until(client, lambda _: client.unacknowledged == 0, what="a status reply")

        second = DaemonProcess(tmp_path / "second", model=tiny_checkpoint, source=f"video:{clip}")
        second.argv[second.argv.index("--lock-path") + 1] = str(
            tmp_path / "first" / "emotiond.lock"
        )
        second.argv[second.argv.index("--source") + 1] = "sample"
        with pytest.raises(AssertionError, match="exited with 4") as refused:
            second.start()
        assert f"already running (pid {daemon.proc.pid}" in str(refused.value)

        t0 = time.monotonic()
        code = daemon.stop()
        took = time.monotonic() - t0
    assert code == 0 and took < 5.0, (code, took)
    assert "emotiond stopped" in daemon.log()
