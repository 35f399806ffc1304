"""Face detection with OpenCV's Haar frontal-face cascade (used by the pipeline thread only).

Haar detection cost grows with the pixel count, so a frame wider than ``max_width`` is detected on
a downscaled copy (``INTER_AREA``) and the boxes are mapped back to the frame's pixels; a face in a
webcam frame is large, so little is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

CASCADE_FILE = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the frame


class DetectorError(RuntimeError):
    """The cascade file is missing or unreadable."""


def default_cascade_path() -> Path:
    return Path(cv2.data.haarcascades) / CASCADE_FILE  # type: ignore[attr-defined]  # no stub


class FaceDetector:
    """Finds every frontal face in a grayscale frame.

    Args:
        scale_factor, min_neighbors: passed to ``detectMultiScale``.
        min_size: smallest face side, in pixels of the full frame.
        max_width: frames wider than this are detected on a copy scaled down to this width.
        equalize: ``equalizeHist`` before detecting (helps with dim webcams, costs ~1 ms).
        cascade_path: another cascade XML (default: OpenCV's frontal-face cascade).
    """

    def __init__(
        self,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 60,
        max_width: int = 400,
        equalize: bool = False,
        cascade_path: str | Path | None = None,
    ) -> None:
        path = Path(cascade_path) if cascade_path else default_cascade_path()
        if not path.is_file():
            raise DetectorError(
                f"face cascade not found at {path}: reinstall opencv-python-headless (>=4.8,<5), "
                "which ships it under cv2.data.haarcascades"
            )
        try:
            self._cascade = cv2.CascadeClassifier(str(path))
            unusable = self._cascade.empty()
        except (cv2.error, SystemError) as exc:  # OpenCV raises on a malformed XML
            raise DetectorError(f"cannot load the face cascade {path}: {exc}") from exc
        if unusable:
            raise DetectorError(f"cannot load the face cascade {path} (empty or corrupt file)")
        if scale_factor <= 1.0:
            raise ValueError("scale_factor must be > 1")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_width = max_width
        self.equalize = equalize

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Boxes ``(x, y, w, h)`` in ``gray``'s pixels, largest first (ties left to right)."""
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"detect needs a 2-D uint8 gray image, got {gray.dtype} {gray.shape}")
        scale = 1.0
        small = gray
        if self.max_width and gray.shape[1] > self.max_width:
            scale = self.max_width / gray.shape[1]
            small = cv2.resize(
                gray,
                (self.max_width, max(1, round(gray.shape[0] * scale))),
                interpolation=cv2.INTER_AREA,
            )
        if self.equalize:
            small = cv2.equalizeHist(small)
        min_side = max(20, int(self.min_size * scale))
        found = self._cascade.detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        h, w = gray.shape
        boxes: list[Box] = []
        for x, y, bw, bh in np.asarray(found, dtype=np.float64).reshape(-1, 4) / scale:
            x0, y0 = max(0, round(x)), max(0, round(y))
            boxes.append((x0, y0, min(w - x0, round(bw)), min(h - y0, round(bh))))
        boxes.sort(key=lambda b: (-b[2] * b[3], b[0], b[1]))
        return boxes
