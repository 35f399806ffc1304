"""The wire protocol, implemented once: envelope, message schemas, encoding, safe decoding, sockets.

``PROTOCOL.md`` is the contract; this module is its only implementation, imported by the SDK and by
the daemon alike. A new message type is one entry in ``SCHEMAS`` and one section in the document.
Decoding treats every frame as hostile: size first, then msgpack with hard limits, then nesting
depth, then the envelope and the type's schema. Nothing here imports more than pyzmq and msgpack.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from game_sdk.errors import SidecarError

PROTOCOL_VERSION = "1.0"
PROTOCOL_MAJOR = 1

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

DEFAULT_EVENTS_ENDPOINT = "tcp://127.0.0.1:5680"
DEFAULT_CONTROL_ENDPOINT = "tcp://127.0.0.1:5681"
TOPIC_EMOTION = b"emotion"
TOPIC_STATUS = b"status"
TOPICS = (TOPIC_EMOTION, TOPIC_STATUS)

MAX_FRAME_BYTES = 65_536
"""Largest control frame a receiver accepts; larger ones get ``error`` ``too_large``."""
MAX_EVENT_BYTES = 262_144
SOCKET_MAX_MSG_SIZE = 1 << 20
"""``ZMQ_MAXMSGSIZE`` on every receiving socket: beyond it libzmq drops the frame and the peer."""
MAX_ID_LEN = 64
MAX_NAME_LEN = 64
MAX_INTENT_TEXT = 1000
MAX_TEXT = 16_000
MAX_DEPTH = 8
MAX_ITEMS = 1024
MAX_FACES = 32

ERROR_CODES = frozenset(
    {"bad_frame", "too_large", "bad_version", "unknown_type", "invalid", "unknown_intent", "busy", "internal"}
)


class ProtocolError(SidecarError, ValueError):
    """A frame that cannot be accepted; ``code`` is the error code sent back to its sender."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref


# --------------------------------------------------------------------------------------------
# Schemas: one entry per message type. A field is (type spec, required); type specs are below.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    kind: str  # str, int, float, bool, map, list, any
    required: bool = True
    max_len: int | None = None
    items: str | None = None  # element kind for lists
    nullable: bool = False
    exact_len: int | None = None


def _s(max_len: int, required: bool = True, nullable: bool = False) -> Field:
    return Field("str", required, max_len, nullable=nullable)


_ID = _s(MAX_ID_LEN)
_T = Field("float")

FACE_FIELDS: dict[str, Field] = {
    "id": Field("int"),
    "box": Field("list", items="int", exact_len=4),
    "probs": Field("list", items="float", exact_len=len(CLASSES)),
    "raw": Field("list", items="float", exact_len=len(CLASSES), required=False),
    "label": _s(16),
    "confidence": Field("float"),
}

SCHEMAS: dict[str, dict[str, Field]] = {
    # client -> daemon (control)
    "hello": {"name": _s(MAX_NAME_LEN), "sdk": _s(32, required=False), "protocol": _s(16, required=False)},
    "get_status": {},
    "intent_begin": {"intent_id": _ID, "text": _s(MAX_INTENT_TEXT), "t": _T},
    "intent_end": {"intent_id": _ID, "t": _T},
    "analysis_ack": {"intent_id": _ID},
    "ping": {},
    "bye": {},
    # daemon -> client (control)
    "welcome": {
        "daemon": _s(32),
        "protocol": _s(16),
        "session": _ID,
        "classes": Field("list", items="str", exact_len=len(CLASSES)),
        "state": Field("map"),
        "latest": Field("map", nullable=True, required=False),
        "events": _s(256, required=False),
        "pending_results": Field("int", required=False),
    },
    "status": {"status": Field("map")},
    "ack": {"of": _s(32), "intent_id": _s(MAX_ID_LEN, required=False), "duplicate": Field("bool", required=False)},
    "error": {"code": _s(32), "message": _s(1000), "fatal": Field("bool", required=False)},
    "analysis": {
        "intent_id": _ID,
        "intent": _s(MAX_INTENT_TEXT),
        "status": _s(16),
        "reason": _s(64, required=False, nullable=True),
        "summary": Field("map"),
        "llm": Field("map", nullable=True, required=False),
        "t_begin": _T,
        "t_end": _T,
    },
    "pong": {},
    # daemon -> everyone (events)
    "emotion": {
        "frame": Field("int"),
        "t_capture": _T,
        "size": Field("list", items="int", exact_len=2),
        "latency_ms": Field("float", required=False),
        "faces": Field("list", items="map", max_len=MAX_FACES),
    },
}

CLIENT_TYPES = frozenset({"hello", "get_status", "intent_begin", "intent_end", "analysis_ack", "ping", "bye"})
DAEMON_TYPES = frozenset({"welcome", "status", "ack", "error", "analysis", "pong"})
EVENT_TYPES = {TOPIC_EMOTION: "emotion", TOPIC_STATUS: "status"}
REPLY_TYPES = frozenset({"welcome", "status", "ack", "error", "pong"})

ENVELOPE: dict[str, Field] = {
    "v": Field("int"),
    "type": _s(32),
    "id": _ID,
    "seq": Field("int"),
    "ts": Field("float"),
    "client": _s(MAX_ID_LEN, required=False),
    "session": _s(MAX_ID_LEN, required=False),
    "ref": _s(MAX_ID_LEN, required=False, nullable=True),
    "body": Field("map"),
}


# --------------------------------------------------------------------------------------------
# Building and encoding
# --------------------------------------------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex


def make_message(
    type: str,
    body: Mapping[str, Any] | None = None,
    *,
    seq: int,
    id: str | None = None,
    client: str | None = None,
    session: str | None = None,
    ref: str | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """Build an envelope. Optional keys are left out when ``None``."""
    msg: dict[str, Any] = {
        "v": PROTOCOL_MAJOR,
        "type": type,
        "id": id or new_id(),
        "seq": int(seq),
        "ts": time.time() if ts is None else float(ts),
        "body": dict(body or {}),
    }
    if client is not None:
        msg["client"] = client
    if session is not None:
        msg["session"] = session
    if ref is not None:
        msg["ref"] = ref
    return msg


def error_body(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return {"code": code, "message": message[:1000], "fatal": fatal}


def _pack(msg: Mapping[str, Any]) -> bytes:
    return msgpack.packb(msg, use_bin_type=True, use_single_float=False)


def encode(msg: Mapping[str, Any]) -> bytes:
    """Validate a control message and pack it into one frame."""
    validate(msg)
    frame = _pack(msg)
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"{msg['type']} frame is {len(frame)} bytes (limit {MAX_FRAME_BYTES})", msg.get("id"))
    return frame


def encode_event(topic: bytes, msg: Mapping[str, Any]) -> list[bytes]:
    """Frames ``[topic, payload]`` for the events channel."""
    if EVENT_TYPES.get(topic) != msg.get("type"):
        raise ProtocolError("invalid", f"message type {msg.get('type')!r} does not belong on topic {topic!r}")
    validate(msg)
    return [topic, _pack(msg)]


# --------------------------------------------------------------------------------------------
# Decoding and validation
# --------------------------------------------------------------------------------------------


def _unpack(frame: bytes, max_bytes: int) -> Any:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError("bad_frame", "frame is not bytes")
    if len(frame) > max_bytes:
        raise ProtocolError("too_large", f"frame is {len(frame)} bytes (limit {max_bytes})")
    if len(frame) == 0:
        raise ProtocolError("bad_frame", "empty frame")
    try:
        return msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError("bad_frame", f"not a msgpack map: {type(exc).__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - msgpack raises assorted errors on hostile input
        raise ProtocolError("bad_frame", f"undecodable frame: {type(exc).__name__}") from exc


def _depth(value: Any, limit: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ProtocolError("invalid", f"nesting deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "map": (dict,),
    "list": (list,),
}


def _check(name: str, value: Any, spec: Field, where: str) -> None:
    if value is None:
        if spec.nullable or not spec.required:
            return
        raise ProtocolError("invalid", f"{where}.{name} must not be nil")
    kinds = _KINDS[spec.kind]
    if isinstance(value, bool) and spec.kind != "bool" or not isinstance(value, kinds):
        raise ProtocolError("invalid", f"{where}.{name} must be {spec.kind}, not {type(value).__name__}")
    if spec.kind == "float" and not math.isfinite(value):
        raise ProtocolError("invalid", f"{where}.{name} must be finite")
    if spec.kind == "int" and not -(2**63) <= value < 2**64:
        raise ProtocolError("invalid", f"{where}.{name} out of range")
    if spec.max_len is not None and len(value) > spec.max_len:
        raise ProtocolError("invalid", f"{where}.{name} longer than {spec.max_len}")
    if spec.exact_len is not None and len(value) != spec.exact_len:
        raise ProtocolError("invalid", f"{where}.{name} must have {spec.exact_len} items")
    if spec.kind == "list" and spec.items:
        item = Field(spec.items)
        for i, v in enumerate(value):
            _check(f"{name}[{i}]", v, item, where)


def _check_fields(obj: Mapping[str, Any], fields: Mapping[str, Field], where: str) -> None:
    for name, spec in fields.items():
        if name not in obj:
            if spec.required:
                raise ProtocolError("invalid", f"{where} is missing {name!r}")
            continue
        _check(name, obj[name], spec, where)


def validate(msg: Any) -> None:
    """Check an envelope and its body against the schema; unknown fields are allowed (ignored)."""
    if not isinstance(msg, dict):
        raise ProtocolError("bad_frame", "message is not a map")
    ref = msg.get("id") if isinstance(msg.get("id"), str) else None
    try:
        version = msg.get("v")
        if isinstance(version, int) and not isinstance(version, bool) and version != PROTOCOL_MAJOR:
            raise ProtocolError("bad_version", f"protocol major {version} is not {PROTOCOL_MAJOR}")
        _check_fields(msg, ENVELOPE, "envelope")
        schema = SCHEMAS.get(msg["type"])
        if schema is None:
            raise ProtocolError("unknown_type", f"unknown message type {msg['type']!r}")
        body = msg["body"]
        _check_fields(body, schema, msg["type"])
        if msg["type"] == "emotion":
            for i, face in enumerate(body["faces"]):
                _check_fields(face, FACE_FIELDS, f"emotion.faces[{i}]")
    except ProtocolError as exc:
        exc.ref = exc.ref or ref
        raise


def decode(frame: bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """Decode and validate one untrusted control frame; raises ``ProtocolError``."""
    msg = _unpack(frame, max_bytes)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_frame", "message is not a map")
    _depth(msg, MAX_DEPTH)
    validate(msg)
    return msg


def decode_event(frames: list[bytes]) -> tuple[bytes, dict[str, Any]]:
    """Decode ``[topic, payload]`` from the events channel."""
    if len(frames) != 2:
        raise ProtocolError("bad_frame", f"event has {len(frames)} frames, expected 2")
    topic = bytes(frames[0])
    expected = EVENT_TYPES.get(topic)
    if expected is None:
        raise ProtocolError("unknown_type", f"unknown topic {topic!r}")
    msg = decode(frames[1], max_bytes=MAX_EVENT_BYTES)
    if msg["type"] != expected:
        raise ProtocolError("invalid", f"type {msg['type']!r} on topic {topic!r}")
    return topic, msg


# --------------------------------------------------------------------------------------------
# Sockets: every option in one place
# --------------------------------------------------------------------------------------------

HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
EVENTS_HWM = 1000
CONTROL_HWM = 1000
LINGER_MS = 200


def configure_socket(sock: Any, role: str) -> None:
    """Set the bounded options of ``PROTOCOL.md`` ("Socket options") on a pyzmq socket.

    ``role`` is one of ``xpub``, ``sub``, ``router``, ``dealer``, ``push``, ``pull``.
    """
    import zmq

    if role not in {"xpub", "sub", "router", "dealer", "push", "pull"}:
        raise ValueError(f"unknown socket role {role!r}")
    sock.setsockopt(zmq.LINGER, 0 if role in {"xpub", "sub"} else LINGER_MS)
    if role in {"xpub", "sub", "router", "dealer"}:
        sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MSG_SIZE)
    hwm = EVENTS_HWM if role in {"xpub", "sub"} else CONTROL_HWM
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if role in {"router", "dealer"}:
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    if role == "router":
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if role in {"dealer", "sub"}:
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    if role == "xpub":
        # A slow subscriber loses events (best effort); the publisher never blocks.
        sock.setsockopt(zmq.XPUB_NODROP, 0)
        sock.setsockopt(zmq.SNDTIMEO, 0)
