"""The timeline ring buffer: slicing edges, bounds, clock steps, concurrent use, wire form."""

from __future__ import annotations

import threading

import pytest

from daemon.timeline import FaceResult, FrameResult, Timeline
from game_sdk.protocol import CLASSES

T0 = 1_700_000_000.0


def result(seq: int, t: float, faces: int = 1) -> FrameResult:
    probs = tuple(1.0 / len(CLASSES) for _ in CLASSES)
    face = FaceResult(1, (10, 20, 100, 100), probs, probs, CLASSES[0], probs[0])
    return FrameResult(seq, t, 640, 480, (face,) * faces, {"detect": 1.0, "total": 2.5})


def filled(n: int = 100, step: float = 0.1, **kw) -> Timeline:
    timeline = Timeline(**kw)
    for i in range(n):
        timeline.append(result(i + 1, T0 + i * step))
    return timeline


def test_slice_is_inclusive_at_both_ends() -> None:
    timeline = filled()
    got = timeline.slice(T0 + 1.0, T0 + 2.0)
    assert [r.seq for r in got] == list(range(11, 22))  # t = 1.0 ... 2.0 in steps of 0.1
    assert [r.seq for r in timeline.slice(T0, T0)] == [1]
    assert [r.seq for r in timeline.slice(T0 + 9.9, T0 + 9.9)] == [100]


def test_slice_edges_outside_and_empty() -> None:
    timeline = filled()
    assert len(timeline.slice(T0 - 100, T0 + 100)) == 100
    assert timeline.slice(T0 - 10, T0 - 1) == []
    assert timeline.slice(T0 + 20, T0 + 30) == []
    assert timeline.slice(T0 + 5, T0 + 4) == []  # t1 < t0
    assert timeline.slice(T0 + 1.05, T0 + 1.09) == []  # between two frames
    assert Timeline().slice(T0, T0 + 1) == []


def test_latest_and_span() -> None:
    timeline = Timeline()
    assert timeline.latest() is None and timeline.span() is None
    timeline.append(result(1, T0))
    timeline.append(result(2, T0 + 0.5))
    assert timeline.latest().seq == 2
    assert timeline.span() == (T0, T0 + 0.5)


def test_bounded_by_frames() -> None:
    timeline = filled(100, max_frames=30)
    assert len(timeline) == 30
    assert timeline.slice(T0 - 1, T0 + 100)[0].seq == 71


def test_bounded_by_seconds() -> None:
    timeline = filled(100, step=1.0, max_seconds=10.0)
    held = timeline.slice(T0 - 1, T0 + 1000)
    assert [r.seq for r in held] == list(range(90, 101))  # newest at T0+99: keeps t >= T0+89
    assert timeline.span() == (T0 + 89, T0 + 99)


def test_a_clock_step_back_is_not_stored() -> None:
    timeline = filled(10)
    assert timeline.append(result(11, T0 + 0.3)) is False
    assert timeline.out_of_order == 1
    assert timeline.latest().seq == 10
    times = [r.t_capture for r in timeline.slice(T0 - 1, T0 + 100)]
    assert times == sorted(times)
    assert timeline.append(result(12, T0 + 0.9)) is True  # equal-or-later times are fine


def test_concurrent_appends_and_slices() -> None:
    timeline = Timeline(max_frames=500)
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                got = timeline.slice(T0, T0 + 10_000)
                times = [r.t_capture for r in got]
                assert times == sorted(times) and len(got) <= 500
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(5000):
        timeline.append(result(i + 1, T0 + i * 0.01))
    done.set()
    for t in readers:
        t.join(5)
    assert not errors
    assert len(timeline) == 500 and timeline.latest().seq == 5000


def test_results_are_numbers_for_the_wire() -> None:
    body = result(7, T0 + 1, faces=2).to_wire()
    assert body["frame"] == 7 and body["size"] == [640, 480] and body["latency_ms"] == 2.5
    assert len(body["faces"]) == 2
    face = body["faces"][0]
    assert face["box"] == [10, 20, 100, 100] and len(face["probs"]) == len(CLASSES)
    assert sum(face["probs"]) == pytest.approx(1.0, abs=1e-4)


def test_timeline_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        Timeline(max_seconds=0)
    with pytest.raises(ValueError):
        Timeline(max_frames=0)
