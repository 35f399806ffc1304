"""The pipeline thread: capture -> detect -> classify -> track/smooth -> timeline -> hand-off.

The pipeline thread owns the source (it closes it on :meth:`Pipeline.stop`), the detector, the
classifier and the tracker. It shares only the timeline (which has its own lock), its rolling
statistics (read by the server thread through :meth:`Pipeline.stats`, under a lock) and the
``on_result`` callback, which must not block (the server's queues the result and rings an inproc
doorbell). Results carry numbers, never images: frames stay inside this thread and are never
written anywhere.

A bad frame or an exception while processing one frame is logged (rate-limited) and counted; the
loop goes on. Stage latencies are measured with ``time.perf_counter()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import cv2

from daemon.capture import BadFrameError, Frame, ResilientSource, as_bgr
from daemon.classify import EmotionClassifier
from daemon.detect import FaceDetector
from daemon.stats import summarize
from daemon.timeline import FrameResult, Timeline
from daemon.tracking import FaceTracker

log = logging.getLogger(__name__)

# "capture" is the time blocked in source.read() (it includes waiting for the next frame);
# "total" runs from the frame's arrival to the hand-off to on_result; "publish" is the hand-off.
STAGES = ("capture", "detect", "classify", "track", "total", "publish")
ERROR_LOG_INTERVAL = 10.0  # seconds between two logged tracebacks of failing frames


class _RollingStats:
    """Per-stage latencies (ms) and completion times of the last ``window`` frames."""

    def __init__(self, window: int) -> None:
        self._lat: dict[str, deque[float]] = {s: deque(maxlen=window) for s in STAGES}
        self._done: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.frames = 0
        self.faces = 0
        self.errors = 0
        self.bad_frames = 0
        self.publish_errors = 0

    def add(self, latency_ms: dict[str, float], faces: int) -> None:
        with self._lock:
            for stage, ms in latency_ms.items():
                self._lat[stage].append(ms)
            self._done.append(time.perf_counter())
            self.frames += 1
            self.faces = faces

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lat = {s: list(v) for s, v in self._lat.items() if v}
            done = list(self._done)
            counts = {
                k: getattr(self, k)
                for k in ("frames", "faces", "errors", "bad_frames", "publish_errors")
            }
        fps = 0.0
        if len(done) > 1 and done[-1] > done[0] and time.perf_counter() - done[-1] < 2.0:
            fps = (len(done) - 1) / (done[-1] - done[0])
        latency = {stage: summarize(values) for stage, values in lat.items()}
        return {"fps": round(fps, 2), **counts, "latency_ms": latency}


class Pipeline:
    """Runs the per-frame loop in its own thread (``start()`` / ``stop()``).

    Args:
        source: where frames come from; the pipeline closes it on :meth:`stop`.
        on_result: called in the pipeline thread with every :class:`FrameResult`; must not block.
        max_fps: process at most this many frames per second (``None``: as fast as frames come).
        max_faces: the largest faces kept per frame (bounds the classifier's batch).
        window: frames the rolling fps and latency percentiles cover.
    """

    def __init__(
        self,
        source: ResilientSource,
        detector: FaceDetector,
        tracker: FaceTracker,
        classifier: EmotionClassifier,
        timeline: Timeline,
        on_result: Callable[[FrameResult], None],
        max_fps: float | None = None,
        *,
        max_faces: int = 8,
        window: int = 300,
    ) -> None:
        self.source = source
        self.detector = detector
        self.tracker = tracker
        self.classifier = classifier
        self.timeline = timeline
        self.on_result = on_result
        self.min_period = 1.0 / max_fps if max_fps and max_fps > 0 else 0.0
        self.max_faces = max_faces
        self._stats = _RollingStats(window)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._last_error_log = -ERROR_LOG_INTERVAL
        self._suppressed = 0

    # -- control (main thread) -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("pipeline already started")
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the loop and close the source; True when the thread ended within ``timeout``."""
        self._stop.set()
        self.source.close()  # interrupts a source waiting for a retry or pacing a frame
        if self._thread is None:
            return True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if alive:
            log.error("pipeline thread did not stop within %.1f s", timeout)
        return not alive

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """``{"fps", "frames", "faces", "errors", "bad_frames", "publish_errors",
        "latency_ms": {stage: {"p50", "p90", "p99", "max"}}, "camera": source state}`` (any thread)."""
        return {**self._stats.snapshot(), "camera": self.source.state()}

    # -- the loop (pipeline thread) ------------------------------------------------------------
    def _run(self) -> None:
        log.info("pipeline started on %s", self.source.name)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            frame = self.source.read()
            arrived = time.perf_counter()
            if frame is None:
                if self.source.closed:
                    self._stop.wait(0.05)
                continue
            try:
                self.process(frame, capture_ms=(arrived - t0) * 1000, arrived=arrived)
            except BadFrameError as exc:
                self._stats.count("bad_frames")
                log.debug("frame %d skipped: %s", frame.index, exc)
            except Exception:  # noqa: BLE001 - one failing frame must not end the loop
                self._stats.count("errors")
                self._log_error(frame.index)
            if self.min_period:
                rest = self.min_period - (time.perf_counter() - t0)
                if rest > 0:
                    self._stop.wait(rest)
        log.info("pipeline stopped after %d frames", self._stats.frames)

    def _log_error(self, index: int) -> None:
        now = time.monotonic()
        if now - self._last_error_log < ERROR_LOG_INTERVAL:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        log.exception("processing frame %d failed%s", index, more)
        self._last_error_log, self._suppressed = now, 0

    def process(
        self, frame: Frame, *, capture_ms: float = 0.0, arrived: float | None = None
    ) -> FrameResult:
        """Run one frame through detection, classification and tracking, store it and hand it
        off. Called by the pipeline thread (tests and benchmarks may call it directly)."""
        arrived = time.perf_counter() if arrived is None else arrived
        lat = {"capture": capture_ms}
        t = time.perf_counter()
        image = as_bgr(frame.image)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self.detector.detect(gray)[: self.max_faces]  # largest first
        lat["detect"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        probs = self.classifier.predict(gray, boxes)
        lat["classify"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        faces = self.tracker.update(boxes, probs, frame.t_capture)
        lat["track"] = (time.perf_counter() - t) * 1000
        self._seq += 1
        lat["total"] = (time.perf_counter() - arrived) * 1000
        result = FrameResult(
            self._seq, frame.t_capture, image.shape[1], image.shape[0], tuple(faces), lat
        )
        self.timeline.append(result)
        t = time.perf_counter()
        try:
            self.on_result(result)
        except Exception:  # noqa: BLE001 - the consumer's fault must not stop the pipeline
            self._stats.count("publish_errors")
            self._log_error(frame.index)
        publish_ms = (time.perf_counter() - t) * 1000
        self._stats.add({**lat, "publish": publish_ms}, len(faces))
        return result
