"""Real face images for tests: pick FER2013 faces the Haar cascade finds, paste them into frames,
write videos with a known expression script.

Everything here works on real FER2013 images (``EMOTION_SIDECAR_FER_DIR``, by default
``<repo>/../shared/data/fer2013``); nothing is synthesised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FRAME_SIZE = (640, 480)
FACE_SIDE = 200


def fer_dir() -> Path:
    return Path(
        os.environ.get("EMOTION_SIDECAR_FER_DIR", REPO.parent / "shared" / "data" / "fer2013")
    )


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def compose(
    faces: Sequence[np.ndarray],
    *,
    size: tuple[int, int] = FRAME_SIZE,
    side: int = FACE_SIDE,
    offsets: Sequence[tuple[int, int]] | None = None,
    background: int = 96,
) -> np.ndarray:
    """A BGR frame with each 48x48 gray face upscaled to ``side`` and pasted side by side."""
    w, h = size
    frame = np.full((h, w), background, np.uint8)
    n = len(faces)
    for i, face in enumerate(faces):
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        cx = int(w * (i + 1) / (n + 1))
        cy = h // 2
        if offsets is not None:
            cx, cy = cx + offsets[i][0], cy + offsets[i][1]
        x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
        x1, y1 = min(w, x0 + side), min(h, y0 + side)
        frame[y0:y1, x0:x1] = big[: y1 - y0, : x1 - x0]
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def detect(frame_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
    gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
    return [tuple(int(v) for v in box) for box in found]


@lru_cache(maxsize=8)
def detectable_faces(
    split: str = "train", per_class: int = 8, classes: tuple[str, ...] | None = None
) -> dict[str, list[np.ndarray]]:
    """First ``per_class`` images of each class (sorted by name) that the cascade finds alone in a frame."""
    from training.models import CLASSES

    out: dict[str, list[np.ndarray]] = {}
    for name in classes or CLASSES:
        picked: list[np.ndarray] = []
        for path in sorted((fer_dir() / split / name).iterdir()):
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None or img.std() < 20:
                continue
            if len(detect(compose([img]))) == 1:
                picked.append(img)
                if len(picked) == per_class:
                    break
        out[name] = picked
    return out


@dataclass(frozen=True)
class Segment:
    label: str
    seconds: float
    face_index: int = 0


def write_video(
    path: Path,
    script: Sequence[Segment],
    faces: dict[str, list[np.ndarray]],
    *,
    fps: float = 15.0,
    jitter: int = 3,
) -> Path:
    """Write an MJPG .avi playing ``script`` (one face, small deterministic drift) and return its path."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    try:
        n = 0
        for seg in script:
            face = faces[seg.label][seg.face_index % len(faces[seg.label])]
            for _ in range(int(round(seg.seconds * fps))):
                dx = int(round(jitter * np.sin(n / 7)))
                dy = int(round(jitter * np.cos(n / 11)))
                writer.write(compose([face], offsets=[(dx, dy)]))
                n += 1
    finally:
        writer.release()
    return path


def crop_detected(face: np.ndarray) -> np.ndarray:
    """What the daemon's classifier sees: the cascade's box in the composed frame, resized to 48x48."""
    frame = compose([face])
    boxes = detect(frame)
    x, y, w, h = boxes[0]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray[y : y + h, x : x + w], (48, 48), interpolation=cv2.INTER_AREA)
