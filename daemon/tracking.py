"""Stable face ids across frames and per-face probability smoothing (pipeline thread only).

Matching is greedy: candidate (track, box) pairs are taken best first, by IoU, or, for a box that
overlaps no track (a fast move), by centre distance relative to the track's box size. A track
survives ``max_missed`` frames without a match, so a one-frame miss of the detector does not
change the player's id. Smoothing is an exponential moving average per track
(``smoothed = alpha * raw + (1 - alpha) * smoothed``; ``alpha=1`` publishes raw values); the raw
values are always kept beside the smoothed ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daemon.timeline import Box, FaceResult


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance between box centres in units of ``a``'s mean side."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float(np.hypot(dx, dy)) / max(1.0, (a[2] + a[3]) / 2)


@dataclass
class _Track:
    id: int
    box: Box
    probs: np.ndarray  # smoothed, float64
    t_last: float | None
    missed: int = 0
    hits: int = 1


class FaceTracker:
    """Gives each face a stable integer id and smooths its probabilities.

    Args:
        classes: class names in the probability columns' order.
        alpha: EMA weight of the newest frame, in (0, 1]; 1 means no smoothing.
        min_iou: a track and a box with at least this IoU may match.
        max_centre_distance: a non-overlapping box may still match a track whose centre is within
            this many mean box sides (covers a fast head movement between frames).
        max_missed: frames a track survives unmatched before its id is retired.
    """

    def __init__(
        self,
        classes: Sequence[str],
        *,
        alpha: float = 0.35,
        min_iou: float = 0.2,
        max_centre_distance: float = 0.75,
        max_missed: int = 10,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("smoothing alpha must be in (0, 1]")
        self.classes = tuple(classes)
        self.alpha = alpha
        self.min_iou = min_iou
        self.max_centre_distance = max_centre_distance
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active_ids(self) -> list[int]:
        return [t.id for t in self._tracks]

    def reset(self) -> None:
        """Forget every track (a new source: faces are different people)."""
        self._tracks = []

    def _match(self, boxes: Sequence[Box]) -> dict[int, _Track]:
        candidates: list[tuple[int, float, float, int, int]] = []
        for ti, track in enumerate(self._tracks):
            for bi, box in enumerate(boxes):
                overlap = iou(track.box, box)
                if overlap >= self.min_iou:
                    candidates.append((0, -overlap, 0.0, ti, bi))
                else:
                    dist = centre_distance(track.box, box)
                    if dist <= self.max_centre_distance:
                        candidates.append((1, 0.0, dist, ti, bi))
        candidates.sort()  # IoU matches first (largest IoU first), then the nearest centres
        matched: dict[int, _Track] = {}
        used: set[int] = set()
        for _, _, _, ti, bi in candidates:
            if ti not in used and bi not in matched:
                used.add(ti)
                matched[bi] = self._tracks[ti]
        return matched

    def update(
        self, boxes: Sequence[Box], probs: np.ndarray, t: float | None = None
    ) -> list[FaceResult]:
        """Match this frame's ``boxes`` (raw ``probs``: N x classes) to tracks; one result per box,
        in the order of ``boxes``. ``t`` is the frame's capture time (kept per track)."""
        probs = np.asarray(probs, dtype=np.float64).reshape(len(boxes), -1) if len(boxes) else probs
        matched = self._match(boxes)
        results: list[FaceResult] = []
        seen: set[int] = set()
        for bi, box in enumerate(boxes):
            box = (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
            raw = probs[bi]
            track = matched.get(bi)
            if track is None:
                track = _Track(self._next_id, box, raw.copy(), t)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.box, track.missed, track.hits, track.t_last = box, 0, track.hits + 1, t
                track.probs = self.alpha * raw + (1.0 - self.alpha) * track.probs
            seen.add(track.id)
            top = int(np.argmax(track.probs))
            results.append(
                FaceResult(
                    id=track.id,
                    box=box,
                    probs=tuple(float(p) for p in track.probs),
                    raw=tuple(float(p) for p in raw),
                    label=self.classes[top],
                    confidence=float(track.probs[top]),
                )
            )
        for track in self._tracks:
            if track.id not in seen:
                track.missed += 1
        self._tracks = [tr for tr in self._tracks if tr.missed <= self.max_missed]
        return results
