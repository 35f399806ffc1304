"""What a game receives from ``EmotionClient.poll()``: small, typed, immutable values.

Each ``from_wire`` builds the value from a message that ``game_sdk.protocol`` already validated,
so these constructors only convert; they never re-check the schema.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from game_sdk.protocol import CLASSES


class ConnectionState(str, enum.Enum):
    """Where the client stands with the daemon (``EmotionClient.state``)."""

    CONNECTING = "connecting"  # no welcome from a daemon yet
    CONNECTED = "connected"  # welcomed, and the daemon's status beats arrive
    DISCONNECTED = "disconnected"  # no message for the liveness timeout: daemon gone or stuck
    CLOSED = "closed"  # close() was called


@dataclass(frozen=True)
class Face:
    """One tracked face; ``id`` stays the same across frames while the face is tracked.

    ``probs`` and ``raw`` map every class of ``CLASSES`` to a probability.
    """

    id: int
    box: tuple[int, int, int, int]  # x, y, width, height in pixels of the camera frame
    probs: dict[str, float]  # smoothed over recent frames (what to show)
    raw: dict[str, float]  # this frame alone, unsmoothed
    label: str  # the class with the highest smoothed probability
    confidence: float  # that probability

    @classmethod
    def from_wire(cls, face: Mapping[str, Any]) -> Face:
        probs = dict(zip(CLASSES, map(float, face["probs"]), strict=True))
        raw = dict(zip(CLASSES, map(float, face.get("raw") or face["probs"]), strict=True))
        x, y, w, h = (int(v) for v in face["box"])
        return cls(
            int(face["id"]), (x, y, w, h), probs, raw, face["label"], float(face["confidence"])
        )


@dataclass(frozen=True)
class EmotionEvent:
    """One processed camera frame, as published by the daemon."""

    seq: int  # per-session counter of emotion events: a jump means events were dropped
    frame: int  # the daemon's frame counter (frames without a publish are not counted here)
    t_capture: float  # Unix wall-clock seconds when the frame was captured
    size: tuple[int, int]  # width, height of the camera frame in pixels
    faces: tuple[Face, ...]
    latency_ms: float | None  # capture to publish, measured by the daemon
    session: str  # the daemon session that produced it

    @property
    def primary(self) -> Face | None:
        """The player: the largest face (ties: the lowest id, i.e. tracked longest), or None."""
        if not self.faces:
            return None
        return max(self.faces, key=lambda f: (f.box[2] * f.box[3], -f.id))

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> EmotionEvent:
        body = msg["body"]
        latency = body.get("latency_ms")
        return cls(
            seq=int(msg["seq"]),
            frame=int(body["frame"]),
            t_capture=float(body["t_capture"]),
            size=(int(body["size"][0]), int(body["size"][1])),
            faces=tuple(Face.from_wire(f) for f in body["faces"]),
            latency_ms=None if latency is None else float(latency),
            session=str(msg.get("session", "")),
        )


@dataclass(frozen=True)
class IntentHandle:
    """Returned by ``begin_intent``; pass it to ``end_intent``."""

    intent_id: str
    text: str
    t_begin: float  # Unix wall-clock seconds of the begin marker


@dataclass(frozen=True)
class Analysis:
    """How the player's emotions during an intent window relate to the stated intent.

    ``status`` is ``"ok"`` (LLM text present; ``reason`` ``invalid_response`` when the model's
    answer lacked the structure), ``"summary_only"`` (the LLM was not asked: ``reason`` says why,
    e.g. ``no_llm``, ``no_frames``) or ``"failed"`` (the LLM was asked and gave no usable answer:
    ``reason`` e.g. ``timeout``, ``model_missing``). ``summary`` always holds the numbers.
    """

    intent_id: str
    intent: str
    status: str
    reason: str | None
    summary: dict[str, Any]  # PROTOCOL.md "Summary": duration_s, share, dominant, peaks, ...
    text: str | None  # the LLM's prose
    structured: dict[str, Any] | None  # {verdict, emotions, suggestion} when the LLM gave them
    backend: str | None  # "ollama", "embedded" or "none"; None when the daemon sent no llm map
    model: str | None
    timings: dict[str, float]  # queue_ms, llm_ms, total_ms
    t_begin: float
    t_end: float
    note: str | None = None  # why ``structured`` is None, or why no LLM could serve (human text)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> Analysis:
        llm = body.get("llm") or {}
        return cls(
            intent_id=body["intent_id"],
            intent=body["intent"],
            status=body["status"],
            reason=body.get("reason"),
            summary=dict(body["summary"]),
            text=llm.get("text"),
            structured=llm.get("structured"),
            backend=llm.get("backend"),
            model=llm.get("model"),
            timings=dict(llm.get("timings") or {}),
            t_begin=float(body["t_begin"]),
            t_end=float(body["t_end"]),
            note=llm.get("note"),
        )


@dataclass(frozen=True)
class ConnectionChange:
    """The client's ``ConnectionState`` changed (``detail`` says why, for logs and UI)."""

    state: ConnectionState
    session: str | None
    detail: str = ""


@dataclass(frozen=True)
class ErrorEvent:
    """The daemon refused a request; ``code`` is a PROTOCOL.md error code, ``ref`` its id."""

    code: str
    message: str
    ref: str | None


@dataclass(frozen=True)
class DaemonStatus:
    """The daemon's status body (PROTOCOL.md, "Status body"); every key is in ``raw``."""

    raw: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def state(self) -> str:
        """``starting``, ``running``, ``degraded`` or ``stopping``."""
        return str(self.raw.get("state", "unknown"))

    @property
    def fps(self) -> float:
        return float(self.raw.get("fps", 0.0))

    @property
    def uptime_s(self) -> float:
        return float(self.raw.get("uptime_s", 0.0))

    @property
    def camera(self) -> Mapping[str, Any]:
        return self.raw.get("camera") or {}

    @property
    def source_kind(self) -> str | None:
        """``webcam``, ``video``, ``images`` or ``sample``."""
        return self.camera.get("kind")

    @property
    def model(self) -> Mapping[str, Any]:
        return self.raw.get("model") or {}

    @property
    def llm(self) -> Mapping[str, Any]:
        return self.raw.get("llm") or {}


Event = EmotionEvent | Analysis | ConnectionChange | ErrorEvent
"""Anything ``EmotionClient.poll()`` returns."""
