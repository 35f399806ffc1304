"""Frame sources on real FER2013 faces: videos, image folders, the sample, hostile frames, and the
resilient wrapper's states (missing file, end of stream, frozen stream, failing reads)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.capture import (
    BadFrameError,
    CaptureError,
    Frame,
    ImageFolderSource,
    ResilientSource,
    VideoFileSource,
    as_bgr,
    open_source,
)
from daemon.detect import FaceDetector
from daemon.sample import (
    FADE_SECONDS,
    SAMPLE_SCRIPT,
    SampleSource,
    expression_at,
    load_sample_faces,
    script_period,
)
from daemon.tracking import iou
from tests.facevideo import FRAME_SIZE, Segment, compose, detectable_faces, write_video

NO_CAMERA_INDEX = 97  # no machine running the tests has 98 cameras


@pytest.fixture(scope="module")
def faces(fer_root: Path) -> dict[str, list[np.ndarray]]:
    return detectable_faces("val", 2, ("happy", "neutral", "surprise"))


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory, faces) -> Path:
    """One second at 15 fps: 15 frames of a real face."""
    path = tmp_path_factory.mktemp("video") / "short.avi"
    return write_video(path, [Segment("happy", 0.6), Segment("neutral", 0.4)], faces, fps=15)


@pytest.fixture(scope="module")
def frozen_video(tmp_path_factory: pytest.TempPathFactory, faces) -> Path:
    """Twelve identical frames (no jitter): what a hung camera driver delivers."""
    path = tmp_path_factory.mktemp("video") / "frozen.avi"
    return write_video(path, [Segment("neutral", 0.8)], faces, fps=15, jitter=0)


def read_all(source, limit: int = 1000) -> list[Frame]:
    frames = []
    for _ in range(limit):
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


# -- hostile frames ----------------------------------------------------------------------------
def test_as_bgr_normalises_what_it_can(faces) -> None:
    gray = faces["happy"][0]
    expected = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(expected, cv2.COLOR_BGR2BGRA)
    variants = {
        "gray": gray,
        "gray HxWx1": gray[:, :, None],
        "BGRA": bgra,
        "uint16": gray.astype(np.uint16) << 8,
        "float [0,1]": gray.astype(np.float32) / 255.0,
        "float [0,255]": gray.astype(np.float64),
        "non-contiguous": np.asfortranarray(expected),
    }
    for name, image in variants.items():
        out = as_bgr(image)
        assert out.dtype == np.uint8 and out.shape == (48, 48, 3), name
        assert out.flags["C_CONTIGUOUS"], name
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1, name


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (None, "None"),
        ([[1, 2], [3, 4]], "not a numpy array"),
        (np.zeros((0, 640, 3), np.uint8), "shape"),
        (np.zeros((480, 640, 2), np.uint8), "2 channels"),
        (np.zeros((4, 480, 640, 3), np.uint8), "shape"),
        (np.zeros((48, 48, 3), np.int64), "dtype"),
        (np.zeros((48, 48), bool), "dtype"),
        (np.full((48, 48), np.nan, np.float32), "NaN"),
        (np.zeros((9000, 10), np.uint8), "larger"),
    ],
)
def test_as_bgr_rejects_the_rest_with_a_clear_error(image, message: str) -> None:
    with pytest.raises(BadFrameError, match=message):
        as_bgr(image)


# -- file sources ------------------------------------------------------------------------------
def test_video_source_unpaced_reads_every_frame_then_ends(short_video: Path) -> None:
    source = VideoFileSource(short_video, loop=False, paced=False)
    frames = read_all(source)
    source.close()
    assert len(frames) == 15
    assert [f.index for f in frames] == list(range(15))
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(b.t_capture >= a.t_capture for a, b in zip(frames, frames[1:], strict=False))
    # The decoded frames hold the face that was written: the detector finds it.
    detector = FaceDetector()
    gray = cv2.cvtColor(frames[0].image, cv2.COLOR_BGR2GRAY)
    assert len(detector.detect(gray)) == 1


def test_video_source_loops_and_paces_to_the_file_fps(short_video: Path) -> None:
    source = VideoFileSource(short_video, loop=True, paced=True)
    assert source.fps == pytest.approx(15, abs=0.01)
    t0 = time.monotonic()
    frames = read_all(source, limit=20)  # past the 15-frame end: it loops
    elapsed = time.monotonic() - t0
    source.close()
    assert len(frames) == 20
    assert elapsed >= 19 / 15 * 0.9  # paced like a live camera
    np.testing.assert_array_equal(frames[15].image, frames[0].image)


def test_image_folder_source_sorted_looped_and_skips_undecodable(tmp_path: Path, faces) -> None:
    cv2.imwrite(str(tmp_path / "b.png"), compose([faces["neutral"][0]]))
    cv2.imwrite(str(tmp_path / "a.png"), compose([faces["happy"][0]]))
    (tmp_path / "c.png").write_bytes(b"this is not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(f"images:{tmp_path}", paced=False)
    assert isinstance(source, ImageFolderSource) and source.kind == "images"
    assert [p.name for p in source.paths] == ["a.png", "b.png", "c.png"]
    first, second = source.read(), source.read()
    assert first is not None and second is not None
    np.testing.assert_array_equal(first.image, compose([faces["happy"][0]]))
    with pytest.raises(BadFrameError, match="c.png"):
        source.read()
    again = source.read()  # looped back to a.png
    assert again is not None and again.index == 3
    np.testing.assert_array_equal(again.image, first.image)
    # A bare directory path means the same source; without loop it ends.
    once = open_source(str(tmp_path), loop=False, paced=False)
    assert isinstance(once, ImageFolderSource)
    assert [once.read() is not None, once.read() is not None] == [True, True]
    with pytest.raises(BadFrameError):
        once.read()
    assert once.read() is None


@pytest.mark.parametrize(
    "spec", ["nonsense-source", "video:/no/such/file.avi", "webcam:abc", "images:/no/such/dir"]
)
def test_open_source_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(CaptureError):
        open_source(spec)


def test_auto_without_a_webcam_falls_back_to_the_sample(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="daemon.capture"):
        source = open_source("auto", camera_index=NO_CAMERA_INDEX, probe_seconds=0.5)
    try:
        assert source.kind == "sample" and isinstance(source, SampleSource)
        assert "no webcam found, using the bundled sample source" in caplog.text
        frame = source.read()
        assert frame is not None and frame.image.shape == (480, 640, 3)
    finally:
        source.close()


def test_webcam_that_does_not_exist_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match="webcam"):
        open_source(f"webcam:{NO_CAMERA_INDEX}")


# -- the sample source -------------------------------------------------------------------------
def test_expression_at_follows_the_script_and_wraps() -> None:
    period = script_period()
    start = 0.0
    for i, (label, seconds) in enumerate(SAMPLE_SCRIPT):
        assert expression_at(start) == (label, i, 0.0)
        assert expression_at(start + seconds / 2)[:2] == (label, i)
        assert expression_at(start + period)[:2] == (label, i)
        start += seconds
    assert start == pytest.approx(period)


def test_sample_faces_are_bundled_for_every_class() -> None:
    faces = load_sample_faces()
    assert sorted(faces) == sorted(
        {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    )
    for images in faces.values():
        assert 3 <= len(images) <= 4
        assert all(im.shape == (48, 48) and im.dtype == np.uint8 for im in images)


def _nearest_bank_class(gray: np.ndarray, box, bank: dict[str, list[np.ndarray]]) -> str:
    """The class of the bundled image closest to the pasted square ``box``, shrunk to 48x48."""
    x, y, w, h = box
    crop = cv2.resize(gray[y : y + h, x : x + w], (48, 48), interpolation=cv2.INTER_AREA)
    scores = {
        label: min(float(np.abs(crop.astype(int) - im).mean()) for im in images)
        for label, images in bank.items()
    }
    return min(scores, key=scores.__getitem__)


def test_sample_stream_shows_the_scripted_expression_where_the_detector_finds_it() -> None:
    source = SampleSource(fps=5, paced=False)
    bank = load_sample_faces()
    detector = FaceDetector()
    detected = checked = 0
    for frame in read_all(source, limit=int(script_period() * 5)):
        t = frame.index / 5
        [(label, (x, y, side, _))] = source.truth(t)
        gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        boxes = detector.detect(gray)
        if len(boxes) == 1:
            # The detector's box lies on the pasted face (FER crops are not all centred).
            assert iou(boxes[0], (x, y, side, side)) > 0.45, t
            detected += 1
        if expression_at(t)[2] >= FADE_SECONDS:  # not in a cross-fade: one pure face
            assert _nearest_bank_class(gray, (x, y, side, side), bank) == label, t
            checked += 1
    assert detected >= 0.95 * script_period() * 5
    assert checked >= 0.8 * script_period() * 5


def test_sample_with_four_faces_places_them_apart() -> None:
    source = SampleSource(faces=4, paced=False)
    detector = FaceDetector()
    counts = []
    for frame in read_all(source, limit=40)[::4]:
        boxes = detector.detect(cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY))
        counts.append(len(boxes))
        for i, a in enumerate(boxes):  # no two detections overlap
            for b in boxes[i + 1 :]:
                assert (
                    a[0] + a[2] <= b[0]
                    or b[0] + b[2] <= a[0]
                    or a[1] + a[3] <= b[1]
                    or b[1] + b[3] <= a[1]
                )
    assert sum(c == 4 for c in counts) >= 0.8 * len(counts)


def test_sample_paced_runs_in_real_time_and_the_face_moves() -> None:
    source = SampleSource(fps=25, paced=True)
    t0 = time.monotonic()
    frames = read_all(source, limit=6)
    assert time.monotonic() - t0 >= 5 / 25 * 0.9
    assert not np.array_equal(frames[0].image, frames[-1].image)
    assert source.script_time == pytest.approx(time.monotonic() - t0, abs=0.1)


# -- the resilient wrapper ---------------------------------------------------------------------
def test_resilient_missing_file_reports_failed_retries_and_closes_promptly(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    source = ResilientSource(
        lambda: VideoFileSource(missing),
        name=f"video:{missing}",
        kind="video",
        backoff_initial=0.02,
        backoff_max=0.08,
    )
    for _ in range(5):
        assert source.read() is None  # never raises
    state = source.state()
    assert state["state"] == "failed" and state["kind"] == "video"
    assert "not found" in state["error"]
    assert state["retries"] == 5
    assert state["backoff"] == pytest.approx(0.08)  # doubled from 0.02 and capped
    # A long backoff is interrupted by close() from another thread.
    slow = ResilientSource(lambda: VideoFileSource(missing), name="slow", backoff_initial=30)
    assert slow.read() is None  # first failure: next retry in 30 s
    threading.Timer(0.2, slow.close).start()
    t0 = time.monotonic()
    assert slow.read() is None
    assert time.monotonic() - t0 < 2.0
    assert slow.closed


def test_resilient_recovers_when_the_file_appears(tmp_path: Path, short_video: Path) -> None:
    target = tmp_path / "later.avi"
    source = ResilientSource.from_spec(str(target), paced=False, loop=False, backoff_initial=0.01)
    assert source.read() is None and source.state()["state"] == "failed"
    target.write_bytes(short_video.read_bytes())
    frame = None
    for _ in range(50):
        frame = source.read()
        if frame is not None:
            break
    assert frame is not None
    state = source.state()
    assert state["state"] == "ok" and state["error"] is None
    source.close()


def test_resilient_video_that_ends(short_video: Path) -> None:
    source = ResilientSource.from_spec(f"video:{short_video}", loop=False, paced=False)
    frames = read_all(source, limit=100)
    assert len(frames) == 15
    assert source.read() is None
    state = source.state()
    assert state["state"] == "ended" and state["frames"] == 15
    source.close()


def test_resilient_frozen_stream_is_detected_and_retried(frozen_video: Path) -> None:
    source = ResilientSource.from_spec(
        f"video:{frozen_video}",
        loop=True,
        paced=False,
        frozen_after=5,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    delivered = read_all(source, limit=20)
    # MJPG decodes the very first frame a little differently; from then on 5 identical frames
    # are enough: the fifth is withheld.
    assert 4 <= len(delivered) <= 5
    state = source.state()
    assert state["state"] == "frozen" and "5 identical frames" in state["error"]
    assert state["retries"] == 1
    more = [source.read() for _ in range(6)]  # reopened after the backoff, frozen again
    assert any(f is not None for f in more)
    assert source.state()["retries"] >= 2
    source.close()


class ScriptedSource:
    """A third-party FrameSource delivering what it is given: hostile frames and driver errors."""

    kind = "webcam"

    def __init__(self, items: list, opened: list[int]) -> None:
        self.name = "scripted"
        self.items = list(items)
        opened.append(1)
        self.closed = False

    def read(self) -> Frame | None:
        if not self.items:
            return None
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return Frame(item, time.time(), 0)

    def close(self) -> None:
        self.closed = True


def test_resilient_skips_hostile_frames_and_retries_driver_errors(faces) -> None:
    good = compose([faces["happy"][0]])
    rgba = cv2.cvtColor(good, cv2.COLOR_BGR2BGRA)
    items = [
        good,
        None,
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((10, 10, 5), np.uint8),
        rgba,
        good[:, :, 0],
        RuntimeError("VIDIOC_DQBUF: No such device"),
        good,
    ]
    opened: list[int] = []
    source = ResilientSource(
        lambda: ScriptedSource(items, opened), name="scripted", backoff_initial=0.01
    )
    got = [source.read() for _ in range(7)]
    assert [g is not None for g in got] == [True, False, False, False, True, True, False]
    assert all(g.image.shape == good.shape and g.image.dtype == np.uint8 for g in got if g)
    state = source.state()
    assert state["bad_frames"] == 3 and state["state"] == "failed"
    assert "No such device" in state["error"]
    frame = None
    for _ in range(20):  # reopened after the backoff: the opener ran again
        frame = source.read()
        if frame is not None:
            break
    assert frame is not None and len(opened) == 2
    assert source.state()["state"] == "ok"
    source.close()


def test_resilient_many_bad_frames_in_a_row_count_as_a_failure(faces) -> None:
    opened: list[int] = []
    source = ResilientSource(
        lambda: ScriptedSource([None] * 10, opened), name="bad", max_bad_frames=4, backoff_initial=5
    )
    for _ in range(4):
        assert source.read() is None
    state = source.state()
    assert state["state"] == "failed" and "4 bad frames in a row" in state["error"]
    source.close()


def test_resilient_auto_resolves_once(monkeypatch: pytest.MonkeyPatch) -> None:
    source = ResilientSource.from_spec("auto", camera_index=NO_CAMERA_INDEX, paced=False)
    assert source.kind == "auto"
    frame = source.read()
    assert frame is not None and frame.image.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    assert source.state()["source"] == "sample" and source.state()["kind"] == "sample"
    source.close()
    assert source.read() is None
