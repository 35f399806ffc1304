"""The bundled ``sample`` source: real FER2013 faces animated into a live-looking stream.

The faces are four images per class from FER2013's validation split (``assets/sample_faces``, see
its README). ``SAMPLE_SCRIPT`` is the known expression script, so tests and the demo know what the
classifier should see at every moment: :func:`expression_at` gives the scripted expression at a
script time. Between segments the face cross-fades for ``FADE_SECONDS``; it also drifts and
breathes a little (position and scale) so that detection and tracking have real work to do.

Used from the pipeline thread only. Frames are rendered in memory and never written anywhere.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from daemon.capture import CaptureError, Frame, _Pacer

ASSETS = Path(__file__).resolve().parent / "assets" / "sample_faces"

# (expression, seconds); one pass lasts 19 s, then the script repeats.
SAMPLE_SCRIPT: tuple[tuple[str, float], ...] = (
    ("neutral", 3.0),
    ("happy", 3.0),
    ("surprise", 2.0),
    ("sad", 3.0),
    ("angry", 2.0),
    ("fear", 2.0),
    ("disgust", 2.0),
    ("happy", 2.0),
)
FADE_SECONDS = 0.3  # the first FADE_SECONDS of a segment blend from the previous face
FACE_SIDE = 200  # pixels, one face in a 640x480 frame
BACKGROUND = (70, 120)  # gray levels of the plain vertical gradient, top to bottom

Script = Sequence[tuple[str, float]]


def load_sample_faces(folder: Path = ASSETS) -> dict[str, list[np.ndarray]]:
    """``{class: [48x48 uint8 gray, ...]}`` from ``folder/<class>/*.png`` (sorted by name)."""
    faces: dict[str, list[np.ndarray]] = {}
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(sub.glob("*.png"))]
            kept = [im for im in images if im is not None]
            if kept:
                faces[sub.name] = kept
    if not faces:
        raise CaptureError(f"the bundled sample faces are missing from {folder}")
    return faces


def script_period(script: Script = SAMPLE_SCRIPT) -> float:
    return float(sum(seconds for _, seconds in script))


def expression_at(t: float, script: Script = SAMPLE_SCRIPT) -> tuple[str, int, float]:
    """At script time ``t`` (s, wrapping): ``(expression, segment index, seconds into it)``."""
    t = t % script_period(script)
    for i, (label, seconds) in enumerate(script):
        if t < seconds:
            return label, i, t
        t -= seconds
    return script[-1][0], len(script) - 1, script[-1][1]


def _layout(n: int, size: tuple[int, int]) -> tuple[int, list[tuple[int, int]], tuple[int, int]]:
    """Face side, cell centres and cell size for ``n`` faces: one row up to 3, else a grid."""
    w, h = size
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cw, ch = w / cols, h / rows
    side = int(min(FACE_SIDE, 0.8 * cw, 0.8 * ch))
    centres = [(int(cw * (i % cols + 0.5)), int(ch * (i // cols + 0.5))) for i in range(n)]
    return side, centres, (int(cw), int(ch))


class SampleSource:
    """Animated sample faces: ``faces`` people (each a different image of the same scripted
    expression), one row of up to three, a grid beyond.

    ``paced=True`` releases frames at ``fps`` in real time and the script follows the wall clock;
    ``paced=False`` renders as fast as it is read and frame ``i`` shows script time ``i / fps``
    (deterministic: tests use :func:`expression_at` on ``frame.index / fps``).
    """

    kind = "sample"

    def __init__(
        self,
        *,
        fps: float = 30.0,
        size: tuple[int, int] = (640, 480),
        script: Script = SAMPLE_SCRIPT,
        faces: int = 1,
        paced: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        if faces < 1 or faces > 16:
            raise CaptureError(f"sample source supports 1 to 16 faces, not {faces}")
        if not script:
            raise CaptureError("the sample script is empty")
        self.name = "sample" if faces == 1 else f"sample:{faces}"
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.script = tuple(script)
        self.n_faces = faces
        self._faces = load_sample_faces()
        missing = sorted({label for label, _ in self.script} - set(self._faces))
        if missing:
            raise CaptureError(f"no sample faces for {missing} in {ASSETS}")
        w, h = self.size
        ramp = np.linspace(BACKGROUND[0], BACKGROUND[1], h, dtype=np.float32)[:, None]
        self._background = np.repeat(ramp, w, axis=1).astype(np.uint8)
        self._side, self._centres, self._cell = _layout(faces, self.size)
        self._pacer = _Pacer(self.fps if paced else None, stop)
        self.paced = paced
        self._index = 0
        self._t0: float | None = None
        self.script_time = 0.0  # script time of the last frame read

    def _face(self, t: float, slot: int) -> np.ndarray:
        """The 48x48 face of ``slot`` at script time ``t``, blended during a cross-fade."""
        label, seg, into = expression_at(t, self.script)
        options = self._faces[label]
        face = options[(seg + slot) % len(options)]
        if into < FADE_SECONDS and len(self.script) > 1:
            prev_seg = (seg - 1) % len(self.script)
            prev_label = self.script[prev_seg][0]
            prev_options = self._faces[prev_label]
            prev = prev_options[(prev_seg + slot) % len(prev_options)]
            alpha = into / FADE_SECONDS
            face = cv2.addWeighted(face, alpha, prev, 1.0 - alpha, 0.0)
        return face

    def truth(self, t: float) -> list[tuple[str, tuple[int, int, int, int]]]:
        """What the frame at script time ``t`` shows: ``(expression, (x, y, side, side))`` per
        face, the box being the pasted square (it may extend past the frame's border)."""
        label = expression_at(t, self.script)[0]
        out = []
        cw, ch = self._cell
        for slot, (cx, cy) in enumerate(self._centres):
            side = int(self._side * (1.0 + 0.05 * math.sin(0.8 * t + 1.7 * slot)))
            slack_x = max(0, (cw - side) // 2 - 2)
            slack_y = max(0, (ch - side) // 2 - 2)
            x = cx + int(min(12, slack_x) * math.sin(0.9 * t + slot)) - side // 2
            y = cy + int(min(8, slack_y) * math.cos(0.7 * t + slot)) - side // 2
            out.append((label, (x, y, side, side)))
        return out

    def render(self, t: float) -> np.ndarray:
        """The BGR frame at script time ``t``."""
        w, h = self.size
        frame = self._background.copy()
        for slot, (_, (x, y, side, _)) in enumerate(self.truth(t)):
            big = cv2.resize(self._face(t, slot), (side, side), interpolation=cv2.INTER_CUBIC)
            x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
            frame[y0:y1, x0:x1] = big[y0 - y : y1 - y, x0 - x : x1 - x]
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)

    def read(self) -> Frame:
        self._pacer.wait()
        if self.paced:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            t = now - self._t0
        else:
            t = self._index / self.fps
        self.script_time = t
        frame = Frame(self.render(t), time.time(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        pass
