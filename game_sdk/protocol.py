"""The wire protocol, implemented once: envelope, message schemas, encoding, safe decoding, sockets.

``PROTOCOL.md`` is the contract; this module is its only implementation, imported by the SDK and by
the daemon alike. A new message type is one entry in ``SCHEMAS`` (plus ``CLIENT_TYPES`` or
``DAEMON_TYPES``) and one section in the document.

Decoding treats every frame as hostile, cheapest check first: frame size, then msgpack with hard
length limits, then one walk over the result (nesting depth, container sizes, string keys), then
the envelope and the type's schema. Unknown fields are ignored, never rejected, so a minor version
can add optional fields. Pure Python on top of msgpack; pyzmq is imported only by
``configure_socket``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
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

MAX_FRAME_BYTES = 65_536
"""Largest control frame (one msgpack map) a receiver accepts: larger gets ``too_large``."""
MAX_EVENT_BYTES = 262_144
"""Largest event payload (the msgpack frame after the topic frame)."""
SOCKET_MAX_MSG_SIZE = 1 << 20
"""``ZMQ_MAXMSGSIZE`` on every receiving socket: beyond it libzmq drops the frame and the peer."""
MAX_ID_LEN = 64
MAX_NAME_LEN = 64
MAX_INTENT_TEXT = 1000
MAX_TEXT = 16_000
"""Longest free text (the LLM's answer)."""
MAX_DEPTH = 8
"""Deepest nesting of maps and arrays; the envelope map is level 1."""
MAX_ITEMS = 256
"""Most entries of any one map or array (schemas set smaller limits on named fields)."""
MAX_FACES = 32

ERROR_CODES = frozenset(
    {
        "bad_frame",
        "too_large",
        "bad_version",
        "unknown_type",
        "invalid",
        "unknown_intent",
        "busy",
        "internal",
    }
)
ANALYSIS_STATUSES = frozenset({"ok", "summary_only", "failed"})
ANALYSIS_REASONS = frozenset(
    {
        "ollama_unreachable",
        "model_missing",
        "timeout",
        "llm_error",
        "invalid_response",
        "no_llm",
        "no_frames",
        "busy",
        "internal",
    }
)
LLM_BACKENDS = frozenset({"ollama", "embedded", "none"})


class ProtocolError(SidecarError, ValueError):
    """A message that breaks PROTOCOL.md.

    Attributes:
        code: the error code a daemon sends back (one of ``ERROR_CODES``).
        message: what is wrong, for logs and the ``error`` reply.
        ref: the ``id`` of the offending message when it could be read, else None.
    """

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref


# --------------------------------------------------------------------------------------------
# Schemas: a message type is a map of field name -> Field. Unknown fields are ignored.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """The type and limits of one field (``PROTOCOL.md`` field tables, as data)."""

    kind: str  # "str" | "int" | "float" | "bool" | "map" | "list" | "any"
    required: bool = True
    nullable: bool = False
    max_len: int | None = None  # str: characters; list/map: entries
    min_len: int = 0
    exact_len: int | None = None
    minimum: float | None = None
    items: Field | None = None  # element of a list; value of a free-keyed map
    fields: Mapping[str, Field] | None = None  # known keys of a map (others are ignored)
    choices: frozenset[str] | None = None


def _str(max_len: int, *, min_len: int = 0, choices: frozenset[str] | None = None) -> Field:
    return Field("str", max_len=max_len, min_len=min_len, choices=choices)


def _opt(field: Field, *, nullable: bool = False) -> Field:
    """The same field, not required (and optionally allowed to be nil)."""
    return replace(field, required=False, nullable=nullable)


def _list(items: Field, max_len: int = MAX_ITEMS, *, exact_len: int | None = None) -> Field:
    return Field("list", max_len=max_len, items=items, exact_len=exact_len)


def _map(fields: Mapping[str, Field] | None = None, *, values: Field | None = None) -> Field:
    return Field("map", max_len=MAX_ITEMS, fields=fields, items=values)


_ID = _str(MAX_ID_LEN, min_len=1)
_INT = Field("int")
_COUNT = Field("int", minimum=0)
_FLOAT = Field("float")
_SECONDS = Field("float", minimum=0)
_PROB = Field("float", minimum=0)
_BOOL = Field("bool")
_LABEL = _str(16)
_FREE = _map()

FACE: dict[str, Field] = {
    "id": _COUNT,
    "box": _list(_INT, exact_len=4),
    "probs": _list(_PROB, exact_len=len(CLASSES)),
    "raw": _opt(_list(_PROB, exact_len=len(CLASSES))),
    "label": _LABEL,
    "confidence": _PROB,
}

STATUS: dict[str, Field] = {
    "state": _str(16),
    "uptime_s": _SECONDS,
    "fps": _SECONDS,
    "version": _opt(_str(32)),
    "frames": _opt(_COUNT),
    "faces": _opt(_COUNT),
    "clients": _opt(_COUNT),
    "dropped_frames": _opt(_COUNT),
    "latency_ms": _opt(_map(values=_FLOAT)),
    "camera": _opt(
        _map(
            {
                "kind": _opt(_str(16)),
                "name": _opt(_str(256)),
                "state": _opt(_str(16)),
                "error": _opt(_str(1000), nullable=True),
            }
        )
    ),
    "model": _opt(
        _map(
            {
                "arch": _opt(_str(64)),
                "device": _opt(_str(32)),
                "val_accuracy": _opt(_FLOAT, nullable=True),
            }
        )
    ),
    "llm": _opt(
        _map(
            {
                "backend": _opt(_str(16)),
                "model": _opt(_str(128), nullable=True),
                "state": _opt(_str(32)),
                "queue": _opt(_COUNT),
            }
        )
    ),
    "pending_results": _opt(_COUNT),
}

SUMMARY: dict[str, Field] = {
    "duration_s": _SECONDS,
    "frames": _COUNT,
    "faces_seen": _COUNT,
    "no_face_s": _SECONDS,
    "share": _opt(_map(values=_PROB)),
    "mean_probs": _opt(_map(values=_PROB)),
    "dominant": _opt(_LABEL, nullable=True),
    "peaks": _opt(_list(_map({"emotion": _LABEL, "t": _FLOAT, "p": _PROB}), 16)),
    "transitions": _opt(_list(_map({"t": _FLOAT, "from": _LABEL, "to": _LABEL}), 64)),
    "valence_trend": _opt(_FLOAT, nullable=True),
    "valence_mean": _opt(_FLOAT, nullable=True),
    "player": _opt(
        _map({"id": _COUNT, "seen_s": _SECONDS, "samples": _opt(_COUNT)}), nullable=True
    ),
    "curve": _opt(_list(_map({"t": _FLOAT, "probs": _list(_PROB, exact_len=len(CLASSES))}))),
}

LLM: dict[str, Field] = {
    "backend": _str(16, choices=LLM_BACKENDS),
    "model": _opt(_str(128), nullable=True),
    "text": _opt(_str(MAX_TEXT), nullable=True),
    "structured": _opt(
        _map(
            {
                "verdict": _opt(_str(1000)),
                "emotions": _opt(_list(_LABEL, len(CLASSES))),
                "suggestion": _opt(_str(1000)),
            }
        ),
        nullable=True,
    ),
    "timings": _opt(
        _map({"queue_ms": _opt(_SECONDS), "llm_ms": _opt(_SECONDS), "total_ms": _opt(_SECONDS)})
    ),
}

SCHEMAS: dict[str, dict[str, Field]] = {
    # client -> daemon (control)
    "hello": {"name": _str(MAX_NAME_LEN), "protocol": _str(16), "sdk": _opt(_str(32))},
    "get_status": {},
    "intent_begin": {"intent_id": _ID, "text": _str(MAX_INTENT_TEXT, min_len=1), "t": _FLOAT},
    "intent_end": {"intent_id": _ID, "t": _FLOAT},
    "analysis_ack": {"intent_id": _ID},
    "ping": {},
    "bye": {},
    # daemon -> client (control)
    "welcome": {
        "daemon": _str(32),
        "protocol": _str(16),
        "session": _ID,
        "classes": _list(_LABEL, exact_len=len(CLASSES)),
        "state": _map(STATUS),
        "latest": _opt(_map(), nullable=True),
        "events": _opt(_str(256)),
        "pending_results": _opt(_COUNT),
    },
    "ack": {"of": _str(32), "intent_id": _opt(_ID), "duplicate": _opt(_BOOL)},
    "error": {"code": _str(32), "message": _str(1000), "fatal": _opt(_BOOL)},
    "analysis": {
        "intent_id": _ID,
        "intent": _str(MAX_INTENT_TEXT),
        "status": _str(16, choices=ANALYSIS_STATUSES),
        "reason": _opt(_str(64), nullable=True),
        "summary": _map(SUMMARY),
        "llm": _opt(_map(LLM), nullable=True),
        "t_begin": _FLOAT,
        "t_end": _FLOAT,
    },
    "pong": {},
    # daemon -> everyone (events); "status" is also the control reply to "get_status"
    "status": STATUS,
    "emotion": {
        "frame": _COUNT,
        "t_capture": _FLOAT,
        "size": _list(_COUNT, exact_len=2),
        "latency_ms": _opt(_SECONDS),
        "stages_ms": _opt(_map(values=_FLOAT)),
        "faces": _list(_map(FACE), MAX_FACES),
    },
}

CLIENT_TYPES = frozenset(
    {"hello", "get_status", "intent_begin", "intent_end", "analysis_ack", "ping", "bye"}
)
DAEMON_TYPES = frozenset({"welcome", "status", "ack", "error", "analysis", "pong"})
EVENT_TYPES: dict[bytes, str] = {TOPIC_EMOTION: "emotion", TOPIC_STATUS: "status"}
REPLY_TYPES = frozenset({"welcome", "ack", "pong"})
"""Control replies that always carry ``ref``. ``status`` carries it when it answers
``get_status``; ``error`` when the offending request's id could be read (else nil or absent)."""

ENVELOPE: dict[str, Field] = {
    "v": _INT,
    "type": _str(32, min_len=1),
    "id": _ID,
    "seq": _COUNT,
    "ts": _FLOAT,
    "client": _opt(_ID),
    "session": _opt(_ID),
    "ref": _opt(_ID, nullable=True),
    "body": _map(),
}
_CLIENT_ENVELOPE = {**ENVELOPE, "client": _ID}
_DAEMON_ENVELOPE = {**ENVELOPE, "session": _ID}
_REPLY_ENVELOPE = {**_DAEMON_ENVELOPE, "ref": _ID}


def _envelope_for(type_: str) -> Mapping[str, Field]:
    if type_ in CLIENT_TYPES:
        return _CLIENT_ENVELOPE
    if type_ in REPLY_TYPES:
        return _REPLY_ENVELOPE
    return _DAEMON_ENVELOPE


# --------------------------------------------------------------------------------------------
# Building and encoding
# --------------------------------------------------------------------------------------------


def new_id() -> str:
    """A fresh message / intent / client id: 32 lowercase hex digits (uuid4)."""
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
    """Build an envelope (not validated until ``encode``). ``None`` keys are left out.

    Example::

        msg = make_message("ping", {}, seq=1, client="game-1")
        frame = encode(msg)
    """
    msg: dict[str, Any] = {
        "v": PROTOCOL_MAJOR,
        "type": type,
        "id": id or new_id(),
        "seq": int(seq),
        "ts": time.time() if ts is None else float(ts),
    }
    if client is not None:
        msg["client"] = client
    if session is not None:
        msg["session"] = session
    if ref is not None:
        msg["ref"] = ref
    msg["body"] = dict(body or {})
    return msg


def error_body(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    """The body of an ``error`` reply; ``message`` is cut to the protocol's 1000 characters."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}; use one of {sorted(ERROR_CODES)}")
    return {"code": code, "message": message[:1000], "fatal": bool(fatal)}


def _pack(msg: Mapping[str, Any]) -> bytes:
    try:
        return msgpack.packb(msg, use_bin_type=True, use_single_float=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError("invalid", f"not serialisable: {exc}", msg.get("id")) from exc


def encode(msg: Mapping[str, Any]) -> bytes:
    """Validate a control message and pack it into one frame.

    Raises:
        ProtocolError: ``invalid``/``unknown_type``/``bad_version`` when the message breaks its
            schema, ``too_large`` when the frame would exceed ``MAX_FRAME_BYTES``.
    """
    validate(msg)
    frame = _pack(msg)
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(
            "too_large",
            f"{msg['type']} frame is {len(frame)} bytes (limit {MAX_FRAME_BYTES})",
            msg.get("id"),
        )
    return frame


def encode_event(topic: bytes, msg: Mapping[str, Any]) -> list[bytes]:
    """Frames ``[topic, payload]`` for the events channel (validated like ``encode``)."""
    if EVENT_TYPES.get(topic) != msg.get("type"):
        raise ProtocolError(
            "invalid", f"message type {msg.get('type')!r} does not belong on topic {topic!r}"
        )
    validate(msg)
    payload = _pack(msg)
    if len(payload) > MAX_EVENT_BYTES:
        raise ProtocolError(
            "too_large", f"event is {len(payload)} bytes (limit {MAX_EVENT_BYTES})", msg.get("id")
        )
    return [topic, payload]


# --------------------------------------------------------------------------------------------
# Decoding and validation
# --------------------------------------------------------------------------------------------


def _unpack(frame: Any, max_bytes: int) -> Any:
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
            use_list=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
    except Exception as exc:  # noqa: BLE001 - msgpack raises assorted errors on hostile input
        raise ProtocolError("bad_frame", f"not one msgpack map: {type(exc).__name__}") from exc


def _walk(value: Any) -> None:
    """Nesting depth, container sizes and string keys of any value (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise ProtocolError("invalid", f"nesting deeper than {MAX_DEPTH} levels")
            if len(item) > MAX_ITEMS:
                raise ProtocolError("invalid", f"a map has more than {MAX_ITEMS} entries")
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise ProtocolError("invalid", "map keys must be strings")
                if isinstance(sub, (dict, list)):
                    stack.append((sub, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise ProtocolError("invalid", f"nesting deeper than {MAX_DEPTH} levels")
            if len(item) > MAX_ITEMS:
                raise ProtocolError("invalid", f"an array has more than {MAX_ITEMS} entries")
            stack.extend((sub, depth + 1) for sub in item if isinstance(sub, (dict, list)))


_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "map": (dict,),
    "list": (list,),
    "any": (object,),
}


def _check(where: str, value: Any, spec: Field) -> None:
    if value is None:
        if spec.nullable:
            return
        raise ProtocolError("invalid", f"{where} must not be nil")
    is_kind = isinstance(value, _KINDS[spec.kind])  # a plain bool: no narrowing of ``value``
    if not is_kind or (isinstance(value, bool) and spec.kind in ("int", "float")):
        raise ProtocolError("invalid", f"{where} must be {spec.kind}, not {type(value).__name__}")
    kind = spec.kind
    if kind in ("int", "float"):
        if kind == "float" and not math.isfinite(value):
            raise ProtocolError("invalid", f"{where} must be finite")
        if kind == "int" and not -(2**63) <= value < 2**64:
            raise ProtocolError("invalid", f"{where} is out of the 64-bit range")
        if spec.minimum is not None and value < spec.minimum:
            raise ProtocolError("invalid", f"{where} must be >= {spec.minimum}")
        return
    if kind in ("str", "list", "map"):
        n = len(value)
        if spec.max_len is not None and n > spec.max_len:
            raise ProtocolError("invalid", f"{where} is longer than {spec.max_len}")
        if n < spec.min_len:
            raise ProtocolError("invalid", f"{where} must not be empty")
        if spec.exact_len is not None and n != spec.exact_len:
            raise ProtocolError("invalid", f"{where} must have {spec.exact_len} entries")
    if kind == "str" and spec.choices is not None and value not in spec.choices:
        raise ProtocolError("invalid", f"{where} must be one of {sorted(spec.choices)}")
    elif kind == "list" and spec.items is not None:
        for i, item in enumerate(value):
            _check(f"{where}[{i}]", item, spec.items)
    elif kind == "map":
        if spec.fields is not None:
            _check_fields(value, spec.fields, where)
        if spec.items is not None:
            for key, item in value.items():
                _check(f"{where}.{key}", item, spec.items)


def _check_fields(obj: Mapping[str, Any], fields: Mapping[str, Field], where: str) -> None:
    for name, spec in fields.items():
        if name in obj:
            _check(f"{where}.{name}", obj[name], spec)
        elif spec.required:
            raise ProtocolError("invalid", f"{where} is missing {name!r}")


def validate(msg: Any) -> None:
    """Check limits (nesting, sizes, string keys), the envelope and the body's schema.

    Unknown fields are allowed (and ignored).

    Raises:
        ProtocolError: with ``ref`` set to the message's ``id`` when it has a readable one.
    """
    if not isinstance(msg, dict):
        raise ProtocolError("bad_frame", "message is not a map")
    msg_id = msg.get("id")
    ref = msg_id if isinstance(msg_id, str) and 0 < len(msg_id) <= MAX_ID_LEN else None
    try:
        _walk(msg)
        version = msg.get("v")
        if isinstance(version, int) and not isinstance(version, bool) and version != PROTOCOL_MAJOR:
            raise ProtocolError("bad_version", f"protocol major {version} is not {PROTOCOL_MAJOR}")
        type_ = msg.get("type")
        if not isinstance(type_, str) or not type_:
            _check_fields(msg, ENVELOPE, "envelope")  # names the problem precisely
            raise ProtocolError("invalid", "envelope.type must be a non-empty string")
        schema = SCHEMAS.get(type_)
        if schema is None:
            raise ProtocolError("unknown_type", f"unknown message type {type_[:32]!r}")
        _check_fields(msg, _envelope_for(type_), "envelope")
        _check_fields(msg["body"], schema, type_)
    except ProtocolError as exc:
        exc.ref = exc.ref or ref
        raise


def decode(
    frame: bytes, *, max_bytes: int = MAX_FRAME_BYTES, allowed: Collection[str] | None = None
) -> dict[str, Any]:
    """Decode and validate one untrusted frame.

    Args:
        frame: the msgpack payload.
        max_bytes: size limit checked before anything is parsed.
        allowed: message types this receiver accepts (e.g. ``CLIENT_TYPES`` on the daemon's
            ROUTER); another known type is refused as ``unknown_type``.

    Raises:
        ProtocolError: ``too_large``, ``bad_frame``, ``bad_version``, ``unknown_type`` or
            ``invalid`` (see PROTOCOL.md, "Errors"); ``ref`` is the message id when readable.
    """
    msg = _unpack(frame, max_bytes)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_frame", f"frame holds a {type(msg).__name__}, not a map")
    validate(msg)
    if allowed is not None and msg["type"] not in allowed:
        raise ProtocolError("unknown_type", f"{msg['type']!r} is not accepted here", msg["id"])
    return msg


def decode_event(frames: list[bytes]) -> tuple[bytes, dict[str, Any]]:
    """Decode ``[topic, payload]`` from the events channel; raises ``ProtocolError``."""
    if len(frames) != 2:
        raise ProtocolError("bad_frame", f"event has {len(frames)} frames, expected 2")
    topic = bytes(frames[0])
    expected = EVENT_TYPES.get(topic)
    if expected is None:
        raise ProtocolError("unknown_type", f"unknown topic {topic[:32]!r}")
    msg = decode(frames[1], max_bytes=MAX_EVENT_BYTES)
    if msg["type"] != expected:
        raise ProtocolError("invalid", f"type {msg['type']!r} on topic {topic!r}", msg["id"])
    return topic, msg


# --------------------------------------------------------------------------------------------
# Sockets: every option in one place (PROTOCOL.md, "Socket options")
# --------------------------------------------------------------------------------------------

SOCKET_ROLES = frozenset({"xpub", "sub", "router", "dealer", "push", "pull"})
LINGER_MS = 200
"""Control sockets give queued replies/markers this long to leave on close; events sockets 0."""
EVENTS_HWM = 1000
CONTROL_HWM = 1000
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000


def configure_socket(sock: Any, role: str) -> None:
    """Set the options of PROTOCOL.md ("Socket options") on a pyzmq socket, before bind/connect.

    ``role`` is one of ``xpub``, ``sub``, ``router``, ``dealer``, ``push``, ``pull``.

    ``IMMEDIATE`` is deliberately left off on the dealer: a game that starts before the daemon
    queues its ``hello`` and markers in ZeroMQ, and they leave as soon as the daemon binds.
    """
    import zmq

    if role not in SOCKET_ROLES:
        raise ValueError(f"unknown socket role {role!r}; use one of {sorted(SOCKET_ROLES)}")
    sock.setsockopt(zmq.LINGER, 0 if role in ("xpub", "sub") else LINGER_MS)
    if role in ("xpub", "sub", "router", "dealer", "pull"):
        sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MSG_SIZE)
    hwm = CONTROL_HWM if role in ("router", "dealer") else EVENTS_HWM
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if role in ("router", "dealer"):
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    if role == "router":
        # Sending to a gone client raises EHOSTUNREACH instead of vanishing silently; a client
        # that reconnects with the same routing id (a restarted game) takes its identity over.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if role in ("dealer", "sub"):
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    if role == "xpub":
        # Best effort: a slow subscriber loses events; the publisher never blocks.
        sock.setsockopt(zmq.XPUB_NODROP, 0)
