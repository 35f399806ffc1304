"""Haar detection on real FER2013 faces pasted into frames, and tracking ids and smoothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.classify import EmotionClassifier
from daemon.detect import DetectorError, FaceDetector
from daemon.tracking import FaceTracker, iou
from game_sdk.protocol import CLASSES
from tests.facevideo import FACE_SIDE, compose, detectable_faces


@pytest.fixture(scope="module")
def faces(fer_root: Path) -> dict[str, list[np.ndarray]]:
    return detectable_faces("val", 2, ("happy", "neutral", "surprise"))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def pasted_box(size: tuple[int, int], n: int, i: int, offset: tuple[int, int], side: int):
    """Where ``tests.facevideo.compose`` put face ``i`` of ``n``."""
    w, h = size
    cx, cy = int(w * (i + 1) / (n + 1)) + offset[0], h // 2 + offset[1]
    return (cx - side // 2, cy - side // 2, side, side)


# -- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [(0, 0), (-150, -60), (140, 70)])
def test_detects_the_face_where_it_was_pasted(detector: FaceDetector, faces, offset) -> None:
    frame = compose([faces["happy"][0]], offsets=[offset])
    boxes = detector.detect(gray(frame))
    assert len(boxes) == 1
    assert iou(boxes[0], pasted_box((640, 480), 1, 0, offset, FACE_SIDE)) > 0.5


def test_large_frames_are_detected_downscaled_and_mapped_back(faces) -> None:
    size, side = (1280, 960), 400
    frame = compose([faces["neutral"][0]], size=size, side=side, offsets=[(200, -100)])
    full = FaceDetector(max_width=0).detect(gray(frame))  # 0: never downscale
    fast = FaceDetector(max_width=320).detect(gray(frame))
    truth = pasted_box(size, 1, 0, (200, -100), side)
    assert len(full) == 1 and len(fast) == 1
    assert iou(fast[0], truth) > 0.5
    assert iou(fast[0], full[0]) > 0.7  # same face, coordinates of the full frame


def test_every_face_is_found_largest_first(detector: FaceDetector, faces) -> None:
    frame = compose([faces["happy"][0], faces["surprise"][0]])
    boxes = detector.detect(gray(frame))
    assert len(boxes) == 2
    assert boxes[0][2] * boxes[0][3] >= boxes[1][2] * boxes[1][3]
    truths = [pasted_box((640, 480), 2, i, (0, 0), FACE_SIDE) for i in range(2)]
    assert sorted(max(range(2), key=lambda i: iou(b, truths[i])) for b in boxes) == [0, 1]


def test_no_face_in_a_plain_frame_and_min_size_is_respected(detector: FaceDetector, faces) -> None:
    assert detector.detect(np.full((480, 640), 96, np.uint8)) == []
    frame = compose([faces["happy"][0]])
    assert FaceDetector(min_size=300).detect(gray(frame)) == []


def test_equalize_still_finds_a_dim_face(faces) -> None:
    dim = (compose([faces["neutral"][0]]).astype(np.float32) * 0.25).astype(np.uint8)
    assert len(FaceDetector(equalize=True).detect(gray(dim))) == 1


def test_missing_cascade_and_bad_input_fail_clearly(tmp_path: Path, detector) -> None:
    with pytest.raises(DetectorError, match="not found"):
        FaceDetector(cascade_path=tmp_path / "missing.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(DetectorError, match="cannot load"):
        FaceDetector(cascade_path=broken)
    with pytest.raises(ValueError, match="gray"):
        detector.detect(np.zeros((48, 48, 3), np.uint8))


# -- tracking ids ------------------------------------------------------------------------------
def uniform(n: int) -> np.ndarray:
    return np.full((n, len(CLASSES)), 1.0 / len(CLASSES))


def test_ids_stay_stable_on_a_moving_face(detector: FaceDetector, faces) -> None:
    tracker = FaceTracker(CLASSES)
    ids = []
    for step in range(0, 31):
        offset = (-180 + 12 * step, int(40 * np.sin(step / 4)))
        frame = compose([faces["happy"][0]], offsets=[offset])
        boxes = detector.detect(gray(frame))
        ids += [r.id for r in tracker.update(boxes, uniform(len(boxes)), t=float(step))]
    assert len(ids) >= 29 and set(ids) == {1}


def test_two_faces_keep_their_own_ids(detector: FaceDetector, faces) -> None:
    tracker = FaceTracker(CLASSES)
    left_ids, right_ids = set(), set()
    for step in range(0, 16):
        d = 5 * step  # the two faces drift towards each other without touching
        pair = [faces["happy"][0], faces["surprise"][0]]
        frame = compose(pair, offsets=[(d - 40, 0), (40 - d, 0)])
        boxes = detector.detect(gray(frame))
        for r in tracker.update(boxes, uniform(len(boxes))):
            (left_ids if r.box[0] + r.box[2] / 2 < 320 else right_ids).add(r.id)
    assert len(left_ids) == 1 and len(right_ids) == 1 and left_ids != right_ids


def test_a_track_survives_missed_frames_then_retires() -> None:
    tracker = FaceTracker(CLASSES, max_missed=3)
    box = (100, 100, 150, 150)
    first = tracker.update([box], uniform(1))[0].id
    for _ in range(3):
        assert tracker.update([], uniform(0)) == []
    assert tracker.update([box], uniform(1))[0].id == first  # back within max_missed
    for _ in range(4):
        tracker.update([], uniform(0))
    assert tracker.update([box], uniform(1))[0].id != first  # gone too long: a new face


def test_a_fast_move_without_overlap_keeps_the_id_but_a_far_jump_does_not() -> None:
    tracker = FaceTracker(CLASSES, max_centre_distance=0.75)
    first = tracker.update([(100, 100, 100, 100)], uniform(1))[0].id
    assert tracker.update([(170, 110, 100, 100)], uniform(1))[0].id == first  # IoU 0.21: match
    assert tracker.update([(240, 110, 100, 100)], uniform(1))[0].id == first  # no overlap, near
    assert tracker.update([(500, 110, 100, 100)], uniform(1))[0].id != first  # across the frame


# -- smoothing ---------------------------------------------------------------------------------
def test_ema_follows_its_formula_and_alpha_one_is_raw() -> None:
    alpha = 0.3
    tracker, raw_tracker = FaceTracker(CLASSES, alpha=alpha), FaceTracker(CLASSES, alpha=1.0)
    box = (100, 100, 120, 120)
    a, b = np.eye(len(CLASSES))[[0]], np.eye(len(CLASSES))[[3]]
    tracker.update([box], a)
    raw_tracker.update([box], a)
    for k in range(1, 6):
        r = tracker.update([box], b)[0]
        expected_b = 1 - (1 - alpha) ** k
        assert r.probs[3] == pytest.approx(expected_b)
        assert r.probs[0] == pytest.approx(1 - expected_b)
        assert r.raw == tuple(b[0])
        assert r.label == (CLASSES[3] if expected_b > 0.5 else CLASSES[0])
        assert r.confidence == pytest.approx(max(expected_b, 1 - expected_b))
        rr = raw_tracker.update([box], b)[0]
        assert rr.probs == rr.raw == tuple(b[0])
    with pytest.raises(ValueError):
        FaceTracker(CLASSES, alpha=0.0)


def test_smoothing_reduces_jitter_of_real_predictions(
    tiny_checkpoint: Path, detector, faces
) -> None:
    """A face that moves a little while the expression flips frame to frame (a hard flicker case):
    the smoothed probabilities change less from frame to frame than the raw ones."""
    clf = EmotionClassifier.from_checkpoint(tiny_checkpoint, device="cpu")
    smooth = FaceTracker(CLASSES, alpha=0.3)
    raw_only = FaceTracker(CLASSES, alpha=1.0)
    smoothed, raws, passthrough = [], [], []
    for step in range(24):
        face = faces["happy"][0] if step % 3 else faces["neutral"][0]
        frame = compose([face], offsets=[(3 * (step % 4), -2 * (step % 3))])
        g = gray(frame)
        boxes = detector.detect(g)
        assert len(boxes) == 1
        probs = clf.predict(g, boxes)
        r = smooth.update(boxes, probs)[0]
        smoothed.append(r.probs)
        raws.append(r.raw)
        passthrough.append(raw_only.update(boxes, probs)[0].probs)
    smoothed, raws = np.asarray(smoothed), np.asarray(raws)
    jitter = lambda x: float(np.abs(np.diff(x, axis=0)).sum(axis=1).mean())  # noqa: E731
    assert jitter(raws) > 0.05  # the model does see the flicker
    assert jitter(smoothed) < 0.6 * jitter(raws)
    np.testing.assert_allclose(np.asarray(passthrough), raws, rtol=0, atol=1e-12)
