"""The structured summary of one intent window: derived numbers only, never images.

``summarize`` turns the timeline slice of ``[t_begin, t_end]`` into a JSON/msgpack-friendly map the
game gets whether or not an LLM is available; ``render_emotions`` writes the same numbers as the
readable ``{emotions}`` text of the prompt. Pure functions, no state, no threads.

How time is counted (documented because every number below depends on it):

* Each frame stands for the time from its capture to the next frame's capture (the last frame: to
  ``t_end``), but for at most ``max_hold_s``: a longer gap means the pipeline saw nothing, and
  that time, like the time before the first frame, counts as time without a face.
* The **player** is the track id seen for the longest time in the window (ties: the lowest id).
  Every per-emotion number is about the player's face only; ``faces_seen`` counts all track ids.
* A face's emotion at a frame is the argmax of its smoothed ``probs`` (the tracker's output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from game_sdk.protocol import CLASSES

DEFAULT_PEAK_THRESHOLD = 0.5
DEFAULT_MIN_DWELL_S = 0.5
DEFAULT_MAX_HOLD_S = 1.0
DEFAULT_MAX_POINTS = 60

# Weights of the valence proxy: pleasant minus unpleasant expressions.
VALENCE_WEIGHTS: Mapping[str, float] = {
    "happy": 1.0,
    "surprise": 0.5,
    "angry": -1.0,
    "disgust": -1.0,
    "fear": -1.0,
    "sad": -1.0,
}


class _Face(Protocol):
    id: int
    probs: Sequence[float]


class _Frame(Protocol):
    t_capture: float
    faces: Sequence[Any]


def _r(x: float, digits: int) -> float:
    """Round for the wire; ``+ 0.0`` turns ``-0.0`` into ``0.0``."""
    return round(float(x), digits) + 0.0


def valence(probs: Sequence[float], classes: Sequence[str] = CLASSES) -> float:
    """p(happy) + 0.5 p(surprise) - p(angry) - p(disgust) - p(fear) - p(sad)."""
    return sum(VALENCE_WEIGHTS.get(c, 0.0) * p for c, p in zip(classes, probs, strict=False))


def _slope(ts: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``ts``; None with fewer than two distinct times."""
    n = len(ts)
    if n < 2:
        return None
    mt = sum(ts) / n
    my = sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx <= 0.0:
        return None
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sxx


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def summarize(
    frames: Sequence[_Frame],
    t_begin: float,
    t_end: float,
    *,
    classes: Sequence[str] = CLASSES,
    peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
    min_dwell_s: float = DEFAULT_MIN_DWELL_S,
    max_hold_s: float = DEFAULT_MAX_HOLD_S,
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, Any]:
    """Summarise the frames of ``[t_begin, t_end]`` (wall clock, as in the timeline).

    Args:
        frames: ``FrameResult``-like objects (``t_capture``, ``faces`` with ``id`` and ``probs``),
            ordered by capture time, as ``Timeline.slice`` returns them.
        peak_threshold: a peak is reported for an emotion only when its maximum probability on
            the player's face reaches this.
        min_dwell_s: a change of top emotion counts as a transition only when the new emotion then
            stays on top for at least this long (filters flicker).
        max_hold_s: the longest time one frame may stand for (see the module docstring).
        max_points: the most points in ``curve``.

    Returns:
        A map of plain floats/ints/strings/lists (times in seconds, relative to ``t_begin`` except
        ``t_begin``/``t_end``; probabilities rounded to 4 digits; ``curve`` to 3), with the fields
        of the ``summary`` map in PROTOCOL.md: ``peaks`` is a list of ``{emotion, p, t}`` ordered
        by time, ``transitions`` a list of ``{t, from, to}``, ``curve`` a list of ``{t, probs}``.
    """
    n_classes = len(classes)
    duration = max(0.0, t_end - t_begin)
    frames = [f for f in frames if t_begin <= f.t_capture <= t_end]

    # Time each frame stands for.
    holds: list[float] = []
    for i, frame in enumerate(frames):
        nxt = frames[i + 1].t_capture if i + 1 < len(frames) else t_end
        holds.append(min(max(0.0, nxt - frame.t_capture), max_hold_s))

    face_time = 0.0
    seen: dict[int, float] = {}
    for frame, hold in zip(frames, holds, strict=True):
        if frame.faces:
            face_time += hold
        for face in frame.faces:
            seen[face.id] = seen.get(face.id, 0.0) + hold

    summary: dict[str, Any] = {
        "t_begin": t_begin,
        "t_end": t_end,
        "duration_s": _r(duration, 3),
        "frames": len(frames),
        "faces_seen": len(seen),
        "no_face_s": _r(max(0.0, duration - face_time), 3),
        "classes": list(classes),
        "player": None,
        "share": {},
        "mean_probs": {},
        "dominant": None,
        "peaks": [],
        "transitions": [],
        "valence_mean": None,
        "valence_trend": None,
        "curve": [],
    }
    if not seen:
        return summary

    player = min(seen, key=lambda fid: (-seen[fid], fid))
    samples: list[tuple[float, float, Sequence[float]]] = []  # (t relative, hold, probs)
    for frame, hold in zip(frames, holds, strict=True):
        for face in frame.faces:
            if face.id == player and len(face.probs) == n_classes:
                samples.append((frame.t_capture - t_begin, hold, [float(p) for p in face.probs]))
                break
    player_time = sum(h for _, h, _ in samples)
    summary["player"] = {"id": int(player), "seen_s": _r(player_time, 3), "samples": len(samples)}
    if not samples:
        return summary

    # Share of face-time by top label, and time-weighted mean probabilities.
    top_time = [0.0] * n_classes
    prob_time = [0.0] * n_classes
    for _, hold, probs in samples:
        top_time[_argmax(probs)] += hold
        for k in range(n_classes):
            prob_time[k] += hold * probs[k]
    if player_time > 0:
        share = [t / player_time for t in top_time]
        mean = [p / player_time for p in prob_time]
    else:  # every sample has zero hold (all at t_end): fall back to plain counts
        counts = [0] * n_classes
        for _, _, probs in samples:
            counts[_argmax(probs)] += 1
        share = [c / len(samples) for c in counts]
        mean = [sum(p[k] for _, _, p in samples) / len(samples) for k in range(n_classes)]
    summary["share"] = {c: _r(s, 4) for c, s in zip(classes, share, strict=True) if s > 0}
    summary["mean_probs"] = {c: _r(m, 4) for c, m in zip(classes, mean, strict=True)}
    summary["dominant"] = classes[max(range(n_classes), key=lambda k: (share[k], mean[k], -k))]

    # Peaks: the first time each emotion reaches its maximum, when that maximum is high enough.
    peaks: list[dict[str, Any]] = []
    for k, name in enumerate(classes):
        best_t, best_p = 0.0, -1.0
        for t, _, probs in samples:
            if probs[k] > best_p:
                best_t, best_p = t, probs[k]
        if best_p >= peak_threshold:
            peaks.append({"emotion": name, "p": _r(best_p, 4), "t": _r(best_t, 3)})
    summary["peaks"] = sorted(peaks, key=lambda peak: peak["t"])

    summary["transitions"] = _transitions(samples, classes, min_dwell_s)

    vals = [valence(p, classes) for _, _, p in samples]
    summary["valence_mean"] = _r(sum(vals) / len(vals), 4)
    slope = _slope([t for t, _, _ in samples], vals)
    summary["valence_trend"] = None if slope is None else _r(slope, 4)

    summary["curve"] = _curve(samples, duration, max_points)
    return summary


def _transitions(
    samples: Sequence[tuple[float, float, Sequence[float]]],
    classes: Sequence[str],
    min_dwell_s: float,
) -> list[dict[str, Any]]:
    """Changes of the top label that then last at least ``min_dwell_s``.

    The samples are cut into runs of equal top label. The first run lasting ``min_dwell_s`` sets
    the current emotion; after it, each run that lasts ``min_dwell_s`` and differs from the current
    emotion is a transition at the run's start. Shorter runs are flicker and are ignored.
    """
    runs: list[list[Any]] = []  # [label index, start t, duration]
    for t, hold, probs in samples:
        top = _argmax(probs)
        if runs and runs[-1][0] == top:
            runs[-1][2] += hold
        else:
            runs.append([top, t, hold])
    current: int | None = None
    out: list[dict[str, Any]] = []
    for label, start, length in runs:
        if length + 1e-9 < min_dwell_s:
            continue
        if current is not None and label != current:
            out.append({"t": _r(start, 3), "from": classes[current], "to": classes[label]})
        current = label
    return out


def _curve(
    samples: Sequence[tuple[float, float, Sequence[float]]], duration: float, max_points: int
) -> list[dict[str, Any]]:
    """The player's probabilities over time: every sample, or per-bin means when there are more."""
    if max_points <= 0:
        return []
    if len(samples) <= max_points or duration <= 0:
        chosen = [(t, list(p)) for t, _, p in samples[:max_points]]
    else:
        width = duration / max_points
        bins: list[list[Any]] = [[] for _ in range(max_points)]
        for t, _, probs in samples:
            bins[min(max_points - 1, int(t / width))].append(probs)
        chosen = []
        for b, members in enumerate(bins):
            if members:
                mean = [sum(col) / len(members) for col in zip(*members, strict=True)]
                chosen.append(((b + 0.5) * width, mean))
    return [{"t": _r(t, 3), "probs": [_r(p, 3) for p in probs]} for t, probs in chosen]


def _pct(x: float) -> str:
    return f"{round(100 * x)}%"


def render_emotions(summary: Mapping[str, Any]) -> str:
    """The summary as the readable ``{emotions}`` block of the prompt (one fact per line)."""
    duration = summary.get("duration_s", 0.0)
    lines = [
        f"Duration: {duration:.1f} s, {summary.get('frames', 0)} frames analysed, "
        f"{summary.get('faces_seen', 0)} face(s) seen, no face visible for "
        f"{summary.get('no_face_s', 0.0):.1f} s."
    ]
    player = summary.get("player")
    if not player or not summary.get("share"):
        lines.append("No face was visible during the event, so there is no emotion data.")
        return "\n".join(lines)
    lines.append(f"Player's face visible for {player['seen_s']:.1f} s.")
    share = sorted(summary["share"].items(), key=lambda kv: -kv[1])
    lines.append(
        "Share of time per emotion: " + ", ".join(f"{c} {_pct(s)}" for c, s in share) + "."
    )
    mean = sorted(summary.get("mean_probs", {}).items(), key=lambda kv: -kv[1])
    lines.append("Mean probabilities: " + ", ".join(f"{c} {p:.2f}" for c, p in mean) + ".")
    lines.append(f"Dominant emotion: {summary.get('dominant')}.")
    peaks = summary.get("peaks") or []
    if peaks:
        text = "; ".join(f"{v['emotion']} {v['p']:.2f} at {v['t']:.1f} s" for v in peaks)
        lines.append(f"Peaks (seconds from the start): {text}.")
    else:
        lines.append("Peaks: none strong.")
    transitions = summary.get("transitions") or []
    if transitions:
        text = "; ".join(f"{x['from']} -> {x['to']} at {x['t']:.1f} s" for x in transitions)
        lines.append(f"Transitions: {text}.")
    else:
        lines.append("Transitions: none (the top emotion stayed the same).")
    trend = summary.get("valence_trend")
    if trend is not None:
        word = "rising" if trend > 0.01 else "falling" if trend < -0.01 else "flat"
        lines.append(
            f"Valence (pleasant minus unpleasant, -1..1): mean {summary['valence_mean']:+.2f}, "
            f"trend {trend:+.3f} per second ({word})."
        )
    return "\n".join(lines)
