"""What a game receives from ``EmotionClient.poll()``: small typed, immutable values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from game_sdk.protocol import CLASSES


class ConnectionState(str, enum.Enum):
    CONNECTING = "connecting"  # no answer from a daemon yet
    CONNECTED = "connected"  # the daemon answered and its status beats arrive
    DISCONNECTED = "disconnected"  # no beat for the liveness timeout: daemon gone or restarting
    CLOSED = "closed"  # close() was called


@dataclass(frozen=True)
class Face:
    """One tracked face: ``id`` stays the same across frames while the face is tracked."""

    id: int
    box: tuple[int, int, int, int]  # x, y, width, height in pixels of the camera frame
    probs: Mapping[str, float]  # smoothed probabilities, one per class
    raw: Mapping[str, float]  # this frame's probabilities, unsmoothed
    label: str
    confidence: float

    @classmethod
    def from_wire(cls, face: Mapping[str, Any]) -> Face:
        probs = dict(zip(CLASSES, face["probs"]))
        raw = dict(zip(CLASSES, face.get("raw") or face["probs"]))
        return cls(int(face["id"]), tuple(face["box"]), probs, raw, face["label"], float(face["confidence"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class EmotionEvent:
    """One processed camera frame."""

    seq: int  # per-session event counter: a jump means events were dropped
    frame: int
    t_capture: float  # Unix wall-clock seconds when the frame was captured
    size: tuple[int, int]
    faces: tuple[Face, ...]
    latency_ms: float | None
    session: str

    @property
    def primary(self) -> Face | None:
        """The player: the largest face in the frame (None when no face is seen)."""
        if not self.faces:
            return None
        return max(self.faces, key=lambda f: f.box[2] * f.box[3])

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> EmotionEvent:
        body = msg["body"]
        return cls(
            seq=int(msg["seq"]),
            frame=int(body["frame"]),
            t_capture=float(body["t_capture"]),
            size=(int(body["size"][0]), int(body["size"][1])),
            faces=tuple(Face.from_wire(f) for f in body["faces"]),
            latency_ms=body.get("latency_ms"),
            session=str(msg.get("session", "")),
        )


@dataclass(frozen=True)
class IntentHandle:
    """Returned by ``begin_intent``; pass it to ``end_intent``."""

    intent_id: str
    text: str
    t_begin: float


@dataclass(frozen=True)
class Analysis:
    """How the player's emotions during an intent window relate to the intent."""

    intent_id: str
    intent: str
    status: str  # "ok", "summary_only" (no LLM) or "failed" (see reason)
    reason: str | None
    summary: Mapping[str, Any]
    text: str | None  # the LLM's prose
    structured: Mapping[str, Any] | None  # verdict, emotions, suggestion (when the LLM gave them)
    backend: str | None  # "ollama", "embedded" or "none"
    model: str | None
    timings: Mapping[str, Any]
    t_begin: float
    t_end: float

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> Analysis:
        llm = body.get("llm") or {}
        return cls(
            intent_id=body["intent_id"],
            intent=body["intent"],
            status=body["status"],
            reason=body.get("reason"),
            summary=body.get("summary") or {},
            text=llm.get("text"),
            structured=llm.get("structured"),
            backend=llm.get("backend", "none"),
            model=llm.get("model"),
            timings=llm.get("timings") or {},
            t_begin=float(body["t_begin"]),
            t_end=float(body["t_end"]),
        )


@dataclass(frozen=True)
class ConnectionChange:
    state: ConnectionState
    session: str | None
    detail: str = ""


@dataclass(frozen=True)
class ErrorEvent:
    """The daemon refused a request (``code`` as in PROTOCOL.md)."""

    code: str
    message: str
    ref: str | None


@dataclass(frozen=True)
class DaemonStatus:
    """The daemon's status body (PROTOCOL.md, "Status body"); unknown keys stay in ``raw``."""

    raw: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def fps(self) -> float:
        return float(self.raw.get("fps", 0.0))

    @property
    def camera(self) -> Mapping[str, Any]:
        return self.raw.get("camera") or {}

    @property
    def source_kind(self) -> str | None:
        """``webcam``, ``video``, ``images`` or ``sample``."""
        return self.camera.get("kind")

    @property
    def llm(self) -> Mapping[str, Any]:
        return self.raw.get("llm") or {}


Event = EmotionEvent | Analysis | ConnectionChange | ErrorEvent
