"""Per-frame results and the bounded ring buffer that intent windows are sliced from.

Written by the pipeline thread, read by the server and the analysis worker: every method of
:class:`Timeline` takes its one lock, and results are immutable once appended. Results carry
numbers only (boxes and probabilities), never pixels.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the frame


@dataclass(frozen=True)
class FaceResult:
    id: int  # stable while the face is tracked
    box: Box
    probs: tuple[float, ...]  # smoothed, in the fixed class order
    raw: tuple[float, ...]  # this frame's own probabilities
    label: str  # class with the highest smoothed probability
    confidence: float  # that probability

    def to_wire(self) -> dict[str, Any]:
        """The ``faces[]`` entry of an ``emotion`` event body (PROTOCOL.md)."""
        return {
            "id": self.id,
            "box": [int(v) for v in self.box],
            "probs": [round(p, 5) for p in self.probs],
            "raw": [round(p, 5) for p in self.raw],
            "label": self.label,
            "confidence": round(self.confidence, 5),
        }


@dataclass(frozen=True)
class FrameResult:
    seq: int  # pipeline frame counter (1, 2, ...)
    t_capture: float  # Unix wall-clock seconds when the frame was captured
    width: int
    height: int
    faces: tuple[FaceResult, ...]  # largest face first
    # Milliseconds per stage of this frame: capture (time blocked reading the source), detect,
    # classify, track, and total (from the frame's arrival to the hand-off to ``on_result``).
    latency_ms: dict[str, float] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The ``emotion`` event body (PROTOCOL.md); the server may refine ``latency_ms``."""
        total = self.latency_ms.get("total")
        if total is None:
            total = sum(v for k, v in self.latency_ms.items() if k != "capture")
        return {
            "frame": self.seq,
            "t_capture": self.t_capture,
            "size": [self.width, self.height],
            "latency_ms": round(float(total), 3),
            "faces": [f.to_wire() for f in self.faces],
        }


_T_CAPTURE = attrgetter("t_capture")


class Timeline:
    """The last ``max_seconds`` (and at most ``max_frames``) of results, ordered by capture time.

    A result older than the newest one (the wall clock stepped back) is not stored: the buffer
    stays sorted so that :meth:`slice` is a binary search.
    """

    def __init__(self, max_seconds: float = 600.0, max_frames: int = 600 * 30) -> None:
        if max_seconds <= 0 or max_frames <= 0:
            raise ValueError("max_seconds and max_frames must be positive")
        self.max_seconds = max_seconds
        self.max_frames = max_frames
        self._frames: deque[FrameResult] = deque(maxlen=max_frames)
        self._lock = threading.Lock()
        self.out_of_order = 0

    def append(self, result: FrameResult) -> bool:
        """Store ``result``; False when it was older than the newest result and was dropped."""
        with self._lock:
            if self._frames and result.t_capture < self._frames[-1].t_capture:
                self.out_of_order += 1
                return False
            self._frames.append(result)
            horizon = result.t_capture - self.max_seconds
            while self._frames[0].t_capture < horizon:
                self._frames.popleft()
            return True

    def slice(self, t0: float, t1: float) -> list[FrameResult]:
        """Results with ``t0 <= t_capture <= t1``, oldest first (empty when ``t1 < t0``)."""
        with self._lock:
            lo = bisect.bisect_left(self._frames, t0, key=_T_CAPTURE)
            hi = bisect.bisect_right(self._frames, t1, key=_T_CAPTURE)
            return list(itertools.islice(self._frames, lo, hi)) if hi > lo else []

    def latest(self) -> FrameResult | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def span(self) -> tuple[float, float] | None:
        """``(oldest, newest)`` capture times held, or None when empty."""
        with self._lock:
            return (self._frames[0].t_capture, self._frames[-1].t_capture) if self._frames else None

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
