"""game_sdk.protocol against PROTOCOL.md: every message type round-trips, hostile frames are refused
with the documented error code, the document's version and byte examples match the code, and
``configure_socket`` really sets the documented options."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from game_sdk import protocol as p

pytestmark = pytest.mark.timeout(30)

DOC = Path(__file__).resolve().parents[1] / "PROTOCOL.md"
SESSION = "5e55105e55105e55105e55105e551050"
CLIENT = "game-1"


def _status_body() -> dict[str, Any]:
    return {
        "state": "running",
        "uptime_s": 12.5,
        "fps": 29.8,
        "version": "0.1.0",
        "frames": 372,
        "faces": 1,
        "clients": 1,
        "dropped_frames": 0,
        "latency_ms": {"p50": 21.4, "p99": 38.0},
        "camera": {"kind": "webcam", "name": "webcam:0", "state": "ok", "error": None},
        "model": {"arch": "resnet50", "device": "cpu", "val_accuracy": 0.66},
        "llm": {"backend": "ollama", "model": "llama3.2:3b", "state": "ready", "queue": 0},
        "pending_results": 0,
    }


def _face(face_id: int, box: list[int], top: int) -> dict[str, Any]:
    probs = [0.05] * len(p.CLASSES)
    probs[top] = 1.0 - 0.05 * (len(p.CLASSES) - 1)
    return {
        "id": face_id,
        "box": box,
        "probs": probs,
        "raw": list(reversed(probs)),
        "label": p.CLASSES[top],
        "confidence": probs[top],
    }


def _emotion_body() -> dict[str, Any]:
    return {
        "frame": 41,
        "t_capture": 1767225600.25,
        "size": [640, 480],
        "latency_ms": 23.5,
        "stages_ms": {"detect": 6.0, "classify": 14.5},
        "faces": [_face(1, [220, 140, 200, 200], 3), _face(2, [10, 10, 60, 60], 4)],
    }


def _analysis_body() -> dict[str, Any]:
    return {
        "intent_id": "a" * 32,
        "intent": "sneak past the guard without being seen",
        "status": "ok",
        "reason": None,
        "summary": {
            "duration_s": 8.0,
            "frames": 240,
            "faces_seen": 1,
            "no_face_s": 0.4,
            "share": {"fear": 0.6, "neutral": 0.4},
            "mean_probs": dict(
                zip(p.CLASSES, [0.02, 0.01, 0.5, 0.02, 0.4, 0.03, 0.02], strict=True)
            ),
            "dominant": "fear",
            "peaks": [{"emotion": "fear", "t": 3.2, "p": 0.91}],
            "transitions": [{"t": 2.5, "from": "neutral", "to": "fear"}],
            "valence_trend": -0.05,
        },
        "llm": {
            "backend": "ollama",
            "model": "llama3.2:3b",
            "text": "The player was tense, which fits a stealth section.",
            "structured": {
                "verdict": "aligned",
                "emotions": ["fear", "neutral"],
                "suggestion": "Keep the guard's patrol unpredictable.",
            },
            "timings": {"queue_ms": 2.0, "llm_ms": 850.0, "total_ms": 860.0},
        },
        "t_begin": 1767225600.0,
        "t_end": 1767225608.0,
    }


# type -> (body, envelope keyword arguments). Every type in SCHEMAS must be here.
SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "hello": ({"name": "my-game", "protocol": "1.0", "sdk": "0.1.0"}, {"client": CLIENT}),
    "get_status": ({}, {"client": CLIENT}),
    "intent_begin": (
        {"intent_id": "b" * 32, "text": "open the chest", "t": 1767225600.0},
        {"client": CLIENT},
    ),
    "intent_end": ({"intent_id": "b" * 32, "t": 1767225604.5}, {"client": CLIENT}),
    "analysis_ack": ({"intent_id": "b" * 32}, {"client": CLIENT}),
    "ping": ({}, {"client": CLIENT}),
    "bye": ({}, {"client": CLIENT}),
    "welcome": (
        {
            "daemon": "0.1.0",
            "protocol": "1.0",
            "session": SESSION,
            "classes": list(p.CLASSES),
            "state": _status_body(),
            "latest": None,
            "events": p.DEFAULT_EVENTS_ENDPOINT,
            "pending_results": 0,
        },
        {"session": SESSION, "ref": "r" * 32},
    ),
    "status": (_status_body(), {"session": SESSION}),
    "ack": (
        {"of": "intent_begin", "intent_id": "b" * 32, "duplicate": False},
        {"session": SESSION, "ref": "r" * 32},
    ),
    "error": (p.error_body("unknown_intent", "no open intent bbbb"), {"session": SESSION}),
    "analysis": (_analysis_body(), {"session": SESSION}),
    "pong": ({}, {"session": SESSION, "ref": "r" * 32}),
    "emotion": (_emotion_body(), {"session": SESSION}),
}


def sample(type_: str, **changes: Any) -> dict[str, Any]:
    body, env = copy.deepcopy(SAMPLES[type_])
    msg = p.make_message(type_, body, seq=7, **env)
    msg.update(changes)
    return msg


def frame_of(msg: Any) -> bytes:
    """Pack without validating: how a buggy or hostile peer would."""
    return msgpack.packb(msg, use_bin_type=True)


def refused(frame: bytes, **kwargs: Any) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frame, **kwargs)
    return info.value


# ---------------------------------------------------------------------------- the document


def test_document_version_equals_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"^\*\*Protocol version: (\d+\.\d+)\*\*", text, re.M)
    assert found, "PROTOCOL.md must state 'Protocol version: X.Y' at the top"
    assert found.group(1) == p.PROTOCOL_VERSION
    assert p.PROTOCOL_MAJOR == int(p.PROTOCOL_VERSION.split(".")[0])


def example_hello() -> dict[str, Any]:
    """The ``hello`` of PROTOCOL.md, "Worked examples"."""
    return p.make_message(
        "hello",
        {"name": "my-game", "protocol": "1.0", "sdk": "0.1.0"},
        seq=1,
        id="0f8fad5bd9cb469fa16570867728950e",
        client="game-1",
        ts=1767225600.0,
    )


def example_emotion() -> dict[str, Any]:
    """The ``emotion`` event of PROTOCOL.md, "Worked examples"."""
    return p.make_message(
        "emotion",
        {
            "frame": 42,
            "t_capture": 1767225600.5,
            "size": [640, 480],
            "latency_ms": 24.0,
            "faces": [
                {
                    "id": 1,
                    "box": [220, 140, 200, 200],
                    "probs": [0.0, 0.0, 0.0, 0.75, 0.25, 0.0, 0.0],
                    "label": "happy",
                    "confidence": 0.75,
                }
            ],
        },
        seq=42,
        id="7c9e6679742540de944be07fc1f90ae7",
        session="5e55105e55105e55105e55105e551050",
        ts=1767225600.5625,
    )


def hex_lines(frame: bytes) -> str:
    return "\n".join(frame[i : i + 16].hex(" ") for i in range(0, len(frame), 16))


def _doc_hex(name: str) -> bytes:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- hex:{name} -->\s*```text\n(.*?)```", text, re.S)
    assert found, f"PROTOCOL.md has no hex block for {name}"
    return bytes.fromhex(found.group(1).replace("\n", " "))


@pytest.mark.parametrize("name", ["hello", "emotion"])
def test_document_hex_examples_equal_the_code(name: str) -> None:
    msg = example_hello() if name == "hello" else example_emotion()
    frame = p.encode(msg) if name == "hello" else p.encode_event(p.TOPIC_EMOTION, msg)[1]
    assert _doc_hex(name) == frame, f"regenerate with:\n{hex_lines(frame)}"
    assert p.decode(_doc_hex(name), max_bytes=p.MAX_EVENT_BYTES) == msg


def test_every_message_type_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for type_ in p.SCHEMAS:
        assert re.search(rf"^### `{type_}`", text, re.M), f"PROTOCOL.md lacks a section for {type_}"
    for code in p.ERROR_CODES:
        assert f"`{code}`" in text


# ---------------------------------------------------------------------------- round trips


def test_samples_cover_every_type() -> None:
    assert set(SAMPLES) == set(p.SCHEMAS)
    assert p.CLIENT_TYPES | p.DAEMON_TYPES | set(p.EVENT_TYPES.values()) == set(p.SCHEMAS)
    assert not p.CLIENT_TYPES & p.DAEMON_TYPES


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_round_trip(type_: str) -> None:
    msg = sample(type_)
    frame = p.encode(msg)
    assert isinstance(frame, bytes) and len(frame) <= p.MAX_FRAME_BYTES
    assert p.decode(frame) == msg


@pytest.mark.parametrize("topic", sorted(p.EVENT_TYPES))
def test_event_round_trip(topic: bytes) -> None:
    msg = sample(p.EVENT_TYPES[topic])
    frames = p.encode_event(topic, msg)
    assert frames[0] == topic
    assert p.decode_event(frames) == (topic, msg)


def test_unknown_fields_are_ignored_and_kept() -> None:
    msg = sample("intent_begin", future_envelope_key=[1, 2])
    msg["body"]["mood_hint"] = {"x": 1}
    assert p.decode(frame_of(msg)) == msg


def test_make_message_defaults() -> None:
    msg = p.make_message("ping", {}, seq=3, client="c")
    assert msg["v"] == p.PROTOCOL_MAJOR and msg["seq"] == 3 and msg["body"] == {}
    assert re.fullmatch(r"[0-9a-f]{32}", msg["id"]) and msg["id"] != p.new_id()
    assert "session" not in msg and "ref" not in msg
    assert abs(msg["ts"] - __import__("time").time()) < 5


def test_error_body() -> None:
    assert p.error_body("busy", "x" * 5000)["message"] == "x" * 1000
    with pytest.raises(ValueError):
        p.error_body("no_such_code", "x")


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1",  # never-used msgpack byte
        b"hello world",
        frame_of({"v": 1})[:-1],  # truncated
        frame_of({"v": 1}) + b"\x00",  # trailing data
        b"",
        frame_of([1, 2, 3]),  # not a map
        frame_of("a string"),
        b"\xdd\xff\xff\xff\xff",  # array declaring 4 billion entries
        b"\xdf\xff\xff\xff\xff",  # map declaring 4 billion entries
        b"\x81\xa4body\xdb\xff\xff\xff\xf0",  # str declaring 4 GB inside a map
        b"\x81\xa1x\xd4\x01\x00",  # ext type
        b"\x81\x01\x02",  # integer map key
        b"\x91" * 5000 + b"\x80",  # 5000 levels of nesting: refused by the unpacker itself
    ],
)
def test_garbage_is_bad_frame(frame: bytes) -> None:
    assert refused(frame).code == "bad_frame"


def test_oversized_frame_is_too_large_before_parsing() -> None:
    big = b"\xc1" * (p.MAX_FRAME_BYTES + 1)  # garbage: only the size check can name it
    assert refused(big).code == "too_large"
    assert refused(b"\x80" * 100, max_bytes=10).code == "too_large"


def test_encode_refuses_frames_over_the_limit() -> None:
    msg = sample("welcome")
    msg["body"]["state"]["notes"] = {f"k{i}": "x" * 300 for i in range(250)}
    with pytest.raises(p.ProtocolError) as info:
        p.encode(msg)
    assert info.value.code == "too_large" and info.value.ref == msg["id"]


def test_deep_nesting_is_invalid() -> None:
    nested: Any = {}
    for _ in range(p.MAX_DEPTH):
        nested = {"n": nested}
    msg = sample("hello")
    msg["body"]["extra"] = nested
    err = refused(frame_of(msg))
    assert err.code == "invalid" and "nesting" in err.message and err.ref == msg["id"]
    with pytest.raises(p.ProtocolError):
        p.encode(msg)


def test_wide_containers_are_refused() -> None:
    msg = sample("hello")
    msg["body"]["extra"] = list(range(p.MAX_ITEMS + 1))
    assert refused(frame_of(msg)).code == "bad_frame"  # the unpacker's declared-length limit
    faces = [_face(i, [0, 0, 10, 10], 0) for i in range(p.MAX_FACES + 1)]
    msg = sample("emotion")
    msg["body"]["faces"] = faces
    assert refused(frame_of(msg), max_bytes=p.MAX_EVENT_BYTES).code == "invalid"


def test_wrong_major_version_is_bad_version() -> None:
    msg = sample("hello", v=2)
    err = refused(frame_of(msg))
    assert err.code == "bad_version" and err.ref == msg["id"]


def test_unknown_type_is_unknown_type() -> None:
    msg = sample("hello", type="teleport")
    err = refused(frame_of(msg))
    assert err.code == "unknown_type" and err.ref == msg["id"]


def test_type_from_the_wrong_direction_is_unknown_type() -> None:
    err = refused(p.encode(sample("welcome")), allowed=p.CLIENT_TYPES)
    assert err.code == "unknown_type"
    assert p.decode(p.encode(sample("hello")), allowed=p.CLIENT_TYPES)["type"] == "hello"


def _without(msg: dict[str, Any], *path: str) -> dict[str, Any]:
    target = msg
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return msg


@pytest.mark.parametrize(
    ("type_", "path"),
    [
        ("hello", ("id",)),
        ("hello", ("ts",)),
        ("hello", ("body",)),
        ("hello", ("client",)),  # client -> daemon messages name their client
        ("hello", ("body", "name")),
        ("intent_begin", ("body", "t")),
        ("ack", ("ref",)),  # replies name the request they answer
        ("ack", ("session",)),  # daemon messages name their session
        ("welcome", ("body", "state", "fps")),
        ("emotion", ("body", "faces")),
        ("analysis", ("body", "summary", "duration_s")),
        ("analysis", ("body", "llm", "backend")),
    ],
)
def test_missing_field_is_invalid(type_: str, path: tuple[str, ...]) -> None:
    err = refused(frame_of(_without(sample(type_), *path)), max_bytes=p.MAX_EVENT_BYTES)
    assert err.code == "invalid" and path[-1] in err.message


@pytest.mark.parametrize(
    ("type_", "path", "value"),
    [
        ("hello", ("seq",), "7"),
        ("hello", ("seq",), -1),
        ("hello", ("seq",), True),  # bool is not an int on the wire
        ("hello", ("ts",), math.nan),
        ("hello", ("ts",), "now"),
        ("hello", ("id",), ""),
        ("hello", ("body",), []),
        ("intent_begin", ("body", "t"), None),
        ("intent_begin", ("body", "text"), 42),
        ("emotion", ("body", "size"), [640]),
        ("emotion", ("body", "faces", 0, "probs"), [0.5] * 6),
        ("emotion", ("body", "faces", 0, "box"), [1, 2, 3, 4.5]),
        ("emotion", ("body", "faces", 0, "id"), -3),
        ("analysis", ("body", "status"), "great"),
        ("analysis", ("body", "llm", "backend"), "gpt"),
        ("analysis", ("body", "summary", "peaks"), {"fear": {"t": 1.0, "p": 0.9}}),
        ("analysis", ("body", "summary", "share", "fear"), "60%"),
        ("status", ("body", "camera", "name"), 5),
        ("error", ("ref",), 5),
    ],
)
def test_wrong_type_or_value_is_invalid(type_: str, path: tuple[Any, ...], value: Any) -> None:
    msg = sample(type_)
    target: Any = msg
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert refused(frame_of(msg), max_bytes=p.MAX_EVENT_BYTES).code == "invalid"
    with pytest.raises(p.ProtocolError):
        p.encode(msg)


@pytest.mark.parametrize(
    ("type_", "key", "limit"),
    [
        ("intent_begin", "text", p.MAX_INTENT_TEXT),
        ("intent_begin", "intent_id", p.MAX_ID_LEN),
        ("hello", "name", p.MAX_NAME_LEN),
    ],
)
def test_too_long_strings_are_invalid(type_: str, key: str, limit: int) -> None:
    msg = sample(type_)
    msg["body"][key] = "é" * limit  # the limit counts characters, not bytes
    assert p.decode(p.encode(msg)) == msg
    msg["body"][key] = "é" * (limit + 1)
    err = refused(frame_of(msg))
    assert err.code == "invalid" and key in err.message


def test_error_may_have_nil_ref() -> None:
    msg = sample("error", ref=None)
    assert p.decode(frame_of(msg))["ref"] is None


def test_event_frames_are_checked() -> None:
    _, payload = p.encode_event(p.TOPIC_EMOTION, sample("emotion"))
    with pytest.raises(p.ProtocolError) as info:
        p.decode_event([p.TOPIC_STATUS, payload])
    assert info.value.code == "invalid"
    with pytest.raises(p.ProtocolError) as info:
        p.decode_event([b"gossip", payload])
    assert info.value.code == "unknown_type"
    with pytest.raises(p.ProtocolError) as info:
        p.decode_event([payload])
    assert info.value.code == "bad_frame"
    with pytest.raises(p.ProtocolError):
        p.encode_event(p.TOPIC_STATUS, sample("emotion"))


def test_encode_refuses_values_msgpack_cannot_carry() -> None:
    msg = sample("hello")
    msg["body"]["extra"] = object()
    with pytest.raises(p.ProtocolError) as info:
        p.encode(msg)
    assert info.value.code == "invalid"


# ---------------------------------------------------------------------------- sockets


@pytest.mark.parametrize("role", sorted(p.SOCKET_ROLES))
def test_configure_socket_sets_the_documented_options(role: str) -> None:
    kinds = {
        "xpub": zmq.XPUB,
        "sub": zmq.SUB,
        "router": zmq.ROUTER,
        "dealer": zmq.DEALER,
        "push": zmq.PUSH,
        "pull": zmq.PULL,
    }
    ctx = zmq.Context()
    sock = ctx.socket(kinds[role])
    try:
        p.configure_socket(sock, role)
        expected = {
            zmq.LINGER: 0 if role in ("xpub", "sub") else p.LINGER_MS,
            zmq.SNDHWM: p.CONTROL_HWM if role in ("router", "dealer") else p.EVENTS_HWM,
            zmq.RCVHWM: p.CONTROL_HWM if role in ("router", "dealer") else p.EVENTS_HWM,
            zmq.IMMEDIATE: 0,
        }
        if role != "push":
            expected[zmq.MAXMSGSIZE] = p.SOCKET_MAX_MSG_SIZE
        if role in ("router", "dealer"):
            expected[zmq.HEARTBEAT_IVL] = p.HEARTBEAT_IVL_MS
            expected[zmq.HEARTBEAT_TIMEOUT] = p.HEARTBEAT_TIMEOUT_MS
            expected[zmq.HEARTBEAT_TTL] = p.HEARTBEAT_TIMEOUT_MS
        if role in ("dealer", "sub"):
            expected[zmq.RECONNECT_IVL] = p.RECONNECT_IVL_MS
            expected[zmq.RECONNECT_IVL_MAX] = p.RECONNECT_IVL_MAX_MS
        actual = {opt: sock.getsockopt(opt) for opt in expected}
        assert actual == expected
    finally:
        sock.close(linger=0)
        ctx.term()


def test_configure_socket_rejects_unknown_roles() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    try:
        with pytest.raises(ValueError):
            p.configure_socket(sock, "pair")
    finally:
        sock.close(linger=0)
        ctx.term()


def test_router_options_change_behaviour() -> None:
    """ROUTER_MANDATORY is write-only in libzmq, so check what it does: an unknown peer raises."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    try:
        p.configure_socket(router, "router")
        router.bind("tcp://127.0.0.1:*")
        with pytest.raises(zmq.ZMQError) as info:
            router.send_multipart([b"nobody", b"x"], zmq.NOBLOCK)
        assert info.value.errno == zmq.EHOSTUNREACH
    finally:
        router.close(linger=0)
        ctx.term()
