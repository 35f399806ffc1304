"""Raw protocol clients for tests: a DEALER and SUBs that speak ``game_sdk.protocol`` only.

No SDK logic here, so tests can send what a buggy or hostile client would, and ``HOSTILE``
lists such frames with the error code each must get.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgpack
import zmq

from game_sdk import protocol

TIMEOUT_S = 3.0
HELLO = {"name": "test-game", "protocol": protocol.PROTOCOL_VERSION, "sdk": "raw-test"}


class RawClient:
    """A DEALER speaking the protocol through ``game_sdk.protocol`` only (no SDK logic)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, client_id: str | None = None) -> None:
        self.client_id = client_id or protocol.new_id()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.client_id.encode())
        protocol.configure_socket(self.sock, "dealer")
        self.sock.connect(endpoint)
        self.seq = 0

    def message(self, kind: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.seq += 1
        return protocol.make_message(kind, body, seq=self.seq, client=self.client_id, **kw)

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.send(protocol.encode(msg))

    def send_raw(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no message from the daemon within {timeout} s")
        return protocol.decode(self.sock.recv())

    def reply_to(self, ref: str | None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """The reply with ``ref`` (skipping pushed analyses); ``None`` matches a ref-less error."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("ref") == ref and msg["type"] != "analysis":
                return msg

    def request(self, kind: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        msg = self.message(kind, body or {}, **kw)
        self.send(msg)
        return self.reply_to(msg["id"])

    def close(self) -> None:
        self.sock.close(linger=0)


def subscriber(
    ctx: zmq.Context, endpoint: str, *topics: bytes, rcvhwm: int | None = None
) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    protocol.configure_socket(sock, "sub")
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sock.setsockopt(zmq.RCVBUF, 4096)
    for topic in topics or (protocol.TOPIC_EMOTION, protocol.TOPIC_STATUS):
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def next_event(sock: zmq.Socket, topic: bytes, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000) + 1):
            got, msg = protocol.decode_event(sock.recv_multipart())
            if got == topic:
                return msg
    raise AssertionError(f"no {topic!r} event within {timeout} s")


def wait_joined(sock: zmq.Socket) -> dict[str, Any]:
    """The slow-joiner guard: a status beat proves the subscription reached the XPUB."""
    return next_event(sock, protocol.TOPIC_STATUS)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def envelope(client_id: str, **over: Any) -> dict[str, Any]:
    msg = protocol.make_message("ping", {}, seq=1, client=client_id)
    msg.update(over)
    return msg


HOSTILE = {
    "garbage": (lambda cid: [os.urandom(64) + b"\xc1"], "bad_frame"),
    "empty": (lambda cid: [b""], "bad_frame"),
    "not_a_map": (lambda cid: [msgpack.packb([1, 2, 3])], "bad_frame"),
    "oversized": (
        lambda cid: [msgpack.packb({**envelope(cid), "pad": "x" * 100_000})],
        "too_large",
    ),
    "wrong_types": (
        lambda cid: [
            msgpack.packb(
                envelope(
                    cid, type="intent_begin", body={"intent_id": "a", "text": "b", "t": "yesterday"}
                )
            )
        ],
        "invalid",
    ),
    "missing_body": (
        lambda cid: [msgpack.packb({k: v for k, v in envelope(cid).items() if k != "body"})],
        "invalid",
    ),
    "unknown_type": (
        lambda cid: [msgpack.packb(envelope(cid, type="launch_missiles"))],
        "unknown_type",
    ),
    "daemon_type": (
        lambda cid: [msgpack.packb(envelope(cid, type="pong", session="s", ref="r"))],
        "unknown_type",
    ),
    "bad_version": (lambda cid: [msgpack.packb(envelope(cid, v=2))], "bad_version"),
    "no_client": (
        lambda cid: [msgpack.packb({k: v for k, v in envelope(cid).items() if k != "client"})],
        "invalid",
    ),
    "nested_bomb": (lambda cid: [msgpack.packb(envelope(cid, body=_nested(50)))], "invalid"),
    "deep_array_bomb": (lambda cid: [b"\x91" * 60_000 + b"\xc0"], "bad_frame"),
    "multipart": (lambda cid: [protocol.encode(envelope(cid)), b"second frame"], "bad_frame"),
    "nan_time": (
        lambda cid: [
            msgpack.packb(
                envelope(cid, type="intent_end", body={"intent_id": "a", "t": float("nan")})
            )
        ],
        "invalid",
    ),
}
