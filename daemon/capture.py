"""Frame sources: webcam, video file, image folder, the bundled sample, and a resilient wrapper.

Every source yields :class:`Frame` objects holding a BGR ``uint8`` image, the Unix wall-clock time
it was captured and a running index. Sources are used from one thread (the pipeline thread); only
:meth:`ResilientSource.state` and :meth:`ResilientSource.close` may be called from other threads.

Privacy: frames live only in this process's memory; nothing here writes an image anywhere.

Specs understood by :func:`open_source`:

============================  ==============================================================
``webcam`` / ``webcam:N``     ``cv2.VideoCapture(N)`` (``camera_index`` when N is omitted)
``video:PATH`` / a file path  a video file, paced to its own fps unless ``paced=False``
``images:DIR`` / a directory  the folder's images in name order, paced at ``fps`` (default 10)
``sample``                    the bundled animated faces (:mod:`daemon.sample`)
``auto``                      the webcam when it opens and delivers a frame within ~2 s,
                              otherwise ``sample``
============================  ==============================================================
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
MAX_FRAME_SIDE = 8192  # larger frames are rejected: no camera we support produces them
DEFAULT_IMAGE_FPS = 10.0
WEBCAM_PROBE_SECONDS = 2.0


class CaptureError(RuntimeError):
    """A source cannot be opened or read."""


class BadFrameError(CaptureError):
    """One frame is unusable (wrong type, shape or dtype); the source itself may still be fine."""


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, H x W x 3, C-contiguous
    t_capture: float  # Unix wall-clock seconds when the frame was obtained
    index: int  # running count of frames this source delivered


class FrameSource(Protocol):
    name: str  # "webcam:0", "video:/path", "images:/dir", "sample"
    kind: str  # "webcam" | "video" | "images" | "sample"

    def read(self) -> Frame | None:
        """The next frame; ``None`` at the end of the stream. Raises :class:`CaptureError`."""
        ...

    def close(self) -> None: ...


def as_bgr(image: Any) -> np.ndarray:
    """Normalise a decoded frame to BGR ``uint8`` H x W x 3, or raise :class:`BadFrameError`.

    Grayscale (H x W or H x W x 1) is expanded, BGRA loses its alpha, ``uint16`` is scaled down,
    float images in [0, 1] (or [0, 255] when their maximum is above 1) are scaled and clipped.
    """
    if image is None:
        raise BadFrameError("no image (the source returned None)")
    if not isinstance(image, np.ndarray):
        raise BadFrameError(f"frame is a {type(image).__name__}, not a numpy array")
    if image.size == 0 or image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
        raise BadFrameError(f"frame has an unusable shape {image.shape}")
    if max(image.shape[:2]) > MAX_FRAME_SIDE:
        raise BadFrameError(
            f"frame {image.shape[1]}x{image.shape[0]} is larger than {MAX_FRAME_SIDE}"
        )
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 3, 4):
        raise BadFrameError(f"frame has {channels} channels (expected 1, 3 or 4)")
    image = _as_uint8(image)
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise BadFrameError("float frame contains NaN or infinity")
        scale = 255.0 if float(image.max()) <= 1.0 else 1.0
        return np.clip(image * scale + 0.5, 0, 255).astype(np.uint8)
    raise BadFrameError(f"frame dtype {image.dtype} is not supported (uint8, uint16 or float)")


class _Pacer:
    """Releases frames at ``fps`` on the monotonic clock; falls back in step when it runs late.

    Waits end early when ``stop`` is set, so closing a paced source is prompt.
    """

    def __init__(self, fps: float | None, stop: threading.Event | None = None) -> None:
        self.period = 1.0 / fps if fps and fps > 0 else 0.0
        self._stop = stop or threading.Event()
        self._next: float | None = None

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if self._next is None or now - self._next > self.period:
            self._next = now  # first frame, or more than a frame late: do not burst to catch up
        elif self._next > now:
            self._stop.wait(self._next - now)
        self._next += self.period


Pacer = _Pacer


class WebcamSource:
    """A camera through ``cv2.VideoCapture(index)``; a failed read raises :class:`CaptureError`."""

    kind = "webcam"

    def __init__(self, index: int = 0) -> None:
        self.name = f"webcam:{index}"
        self.index = index
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise CaptureError(f"cannot open webcam {index}")
        # Keep at most one frame queued so that what we read is recent, not seconds old.
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._count = 0
        self._pending: np.ndarray | None = None

    def read(self) -> Frame | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._cap.read()
            if not ok:
                raise CaptureError(f"{self.name}: read failed (camera unplugged or busy?)")
        frame = Frame(as_bgr(image), time.time(), self._count)
        self._count += 1
        return frame

    def probe(self, timeout: float) -> bool:
        """Whether a first frame arrives within ``timeout`` s (it is kept for the next read)."""
        box: dict[str, Any] = {}

        def grab() -> None:
            ok, image = self._cap.read()
            box["image"] = image if ok else None

        thread = threading.Thread(target=grab, name=f"{self.name}-probe", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive() or box.get("image") is None:
            return False
        self._pending = box["image"]
        return True

    def close(self) -> None:
        self._cap.release()


class VideoFileSource:
    """A video file, optionally looped and paced to its own frame rate (a video played "live")."""

    kind = "video"

    def __init__(
        self, path: str | Path, *, fps: float | None = None, loop: bool = True, paced: bool = True
    ) -> None:
        self.path = Path(path)
        self.name = f"video:{self.path}"
        if not self.path.is_file():
            raise CaptureError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CaptureError(f"cannot decode video {self.path}")
        file_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps or (file_fps if 0 < file_fps < 1000 else 30.0)
        self.loop = loop
        self._pacer = Pacer(self.fps if paced else None)
        self._count = 0
        self._in_pass = 0  # frames read since the last rewind: an empty file must not loop forever

    def read(self) -> Frame | None:
        ok, image = self._cap.read()
        if not ok:
            if not self.loop or self._in_pass == 0:
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._in_pass = 0
            ok, image = self._cap.read()
            if not ok:
                return None
        self._in_pass += 1
        self._pacer.wait()
        frame = Frame(as_bgr(image), time.time(), self._count)
        self._count += 1
        return frame

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """The images of a folder in name order, looped and paced at ``fps``.

    A file that cannot be decoded raises :class:`BadFrameError` for its turn only.
    """

    kind = "images"

    def __init__(
        self, folder: str | Path, *, fps: float | None = None, loop: bool = True, paced: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.name = f"images:{self.folder}"
        if not self.folder.is_dir():
            raise CaptureError(f"image folder not found: {self.folder}")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise CaptureError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self.fps = fps or DEFAULT_IMAGE_FPS
        self.loop = loop
        self._pacer = Pacer(self.fps if paced else None)
        self._count = 0

    def read(self) -> Frame | None:
        if self._count >= len(self.paths) and not self.loop:
            return None
        path = self.paths[self._count % len(self.paths)]
        self._count += 1
        self._pacer.wait()
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise BadFrameError(f"cannot decode {path.name}")
        return Frame(as_bgr(image), time.time(), self._count - 1)

    def close(self) -> None:
        pass


def open_source(
    spec: str,
    *,
    camera_index: int = 0,
    fps: float | None = None,
    loop: bool = True,
    paced: bool = True,
    probe_seconds: float = WEBCAM_PROBE_SECONDS,
) -> FrameSource:
    """Open the source named by ``spec`` (see the module docstring); raises :class:`CaptureError`.

    ``fps`` overrides a file's own rate (videos) or sets the rate (images, sample); ``paced=False``
    delivers frames as fast as they are read (tests, benchmarks).
    """
    spec = spec.strip()
    if spec == "auto":
        try:
            cam = WebcamSource(camera_index)
        except CaptureError:
            cam = None
        if cam is not None and cam.probe(probe_seconds):
            log.info("using webcam %d", camera_index)
            return cam
        if cam is not None:
            cam.close()
        log.warning(
            "no webcam found, using the bundled sample source (camera index %d)", camera_index
        )
        return open_source("sample", fps=fps, loop=loop, paced=paced)
    if spec == "webcam" or spec.startswith("webcam:"):
        index = camera_index if spec == "webcam" else _int_or_error(spec[len("webcam:") :], spec)
        return WebcamSource(index)
    if spec == "sample" or spec.startswith("sample:"):
        from daemon.sample import SampleSource

        faces = 1 if spec == "sample" else _int_or_error(spec[len("sample:") :], spec)
        return SampleSource(fps=fps or 30.0, paced=paced, faces=faces)
    if spec.startswith("video:"):
        return VideoFileSource(spec[len("video:") :], fps=fps, loop=loop, paced=paced)
    if spec.startswith("images:"):
        return ImageFolderSource(spec[len("images:") :], fps=fps, loop=loop, paced=paced)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps=fps, loop=loop, paced=paced)
    if path.is_file():
        return VideoFileSource(path, fps=fps, loop=loop, paced=paced)
    raise CaptureError(
        f"unknown source {spec!r}: expected auto, webcam[:N], sample, video:PATH, images:DIR "
        "or an existing file or folder"
    )


def _int_or_error(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CaptureError(f"bad source {spec!r}: {text!r} is not an integer") from None


def _fingerprint(image: np.ndarray) -> int:
    """A cheap hash of a sparse subsample (about 1,200 pixels at 640x480) to spot frozen frames."""
    return zlib.crc32(np.ascontiguousarray(image[::16, ::16]).data)


class ResilientSource:
    """Wraps a source opener: never raises to the caller, retries with backoff, reports its state.

    ``read()`` returns a frame, or ``None`` when none is available right now (opening, failed and
    waiting for the next retry, frozen, ended): it blocks at most until the next retry, and
    :meth:`close` from any thread interrupts it. The state (see :meth:`state`) is one of ``ok``,
    ``opening``, ``failed``, ``frozen``, ``ended``:

    - cannot open / a read raises: ``failed``, the source is closed and reopened after a backoff
      that doubles from ``backoff_initial`` to ``backoff_max`` (and starts again from
      ``backoff_initial`` once the reopened source has delivered ``2 * frozen_after`` frames);
    - ``frozen_after`` identical frames in a row (a hung camera driver): ``frozen``, reopened
      with the same backoff; the identical frames are not delivered;
    - a bad single frame (:class:`BadFrameError`) is skipped and counted; ``max_bad_frames`` in a
      row count as a failed read;
    - end of stream: ``ended`` (final unless ``restart_on_end``, which reopens it).
    """

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        *,
        name: str,
        kind: str = "unknown",
        frozen_after: int | None = 90,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_bad_frames: int = 30,
        restart_on_end: bool = False,
    ) -> None:
        self._opener = opener
        self._name = name
        self._kind = kind
        self.frozen_after = frozen_after
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_bad_frames = max_bad_frames
        self.restart_on_end = restart_on_end
        self._source: FrameSource | None = None
        self._closed = threading.Event()
        self.stop = self._closed  # set by close(); the pipeline loop watches it
        self._lock = threading.Lock()  # guards the state fields read by other threads
        self._io = threading.Lock()  # held while the reading thread uses the source
        self._state = "opening"
        self._error: str | None = None
        self._retries = 0
        self._since = time.time()
        self._next_try = 0.0  # monotonic time of the next (re)open attempt
        self._backoff = 0.0  # seconds between the last failure and the next attempt
        self._bad_in_row = 0
        self._bad_frames = 0
        self._frames = 0
        self._last_print: int | None = None
        self._same_in_row = 0
        self._since_open = 0  # frames delivered since the last (re)open

    @classmethod
    def from_spec(
        cls,
        spec: str,
        *,
        camera_index: int = 0,
        fps: float | None = None,
        loop: bool = True,
        paced: bool = True,
        **kw: Any,
    ) -> ResilientSource:
        """A resilient :func:`open_source`; image folders skip frozen detection by default."""
        kind = _kind_of(spec)
        if kind == "images":
            kw.setdefault("frozen_after", None)  # a folder of one picture is legitimately static
        resolved = [spec]

        def opener() -> FrameSource:
            source = open_source(
                resolved[0], camera_index=camera_index, fps=fps, loop=loop, paced=paced
            )
            # "auto" decides once: a webcam that fails later is retried as that webcam, never
            # silently replaced by the sample faces (that would publish a stranger's emotions).
            resolved[0] = source.name
            return source

        return cls(opener, name=spec, kind=kind, **kw)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """A snapshot for status messages (safe from any thread)."""
        with self._lock:
            return {
                "state": self._state,
                "source": self._name,
                "kind": self._kind,
                "error": self._error,
                "retries": self._retries,
                "since": self._since,
                "frames": self._frames,
                "bad_frames": self._bad_frames,
                "backoff": self._backoff,
            }

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _set(self, state: str, error: str | None = None) -> None:
        with self._lock:
            if state != self._state or error != self._error:
                self._since = time.time()
            changed = state != self._state
            self._state, self._error = state, error
        if changed:
            level = logging.INFO if state == "ok" else logging.WARNING
            log.log(level, "source %s: %s%s", self._name, state, f" ({error})" if error else "")

    # -- reading -------------------------------------------------------------------------------
    def read(self) -> Frame | None:
        """The next frame, or ``None`` (see the class docstring). Never raises."""
        if self._closed.is_set():
            return None
        with self._io:
            return self._read_locked()

    def _read_locked(self) -> Frame | None:
        if self._source is None:
            if self._state == "ended" and not self.restart_on_end:
                self._closed.wait(0.1)  # idle politely: the caller loops on None
                return None
            if not self._wait_until(self._next_try):
                return None
            self._open()
            if self._source is None:
                return None
        try:
            frame = self._source.read()
            if self._closed.is_set():  # close() was called during the read: release here
                self._close_source()
                return None
        except BadFrameError as exc:
            self._bad_frame(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - any driver error becomes a retry, never a crash
            self._fail("failed", str(exc) or type(exc).__name__)
            return None
        if frame is not None:
            try:
                # Sources of ours already normalise; a third-party FrameSource may not.
                frame.image = as_bgr(frame.image)
            except BadFrameError as exc:
                self._bad_frame(exc)
                return None
        self._bad_in_row = 0
        if frame is None:
            self._close_source()
            if self.restart_on_end:
                self._next_try = time.monotonic()
            self._set("ended")
            return None
        if self.frozen_after and self._is_frozen(frame.image):
            self._fail("frozen", f"{self._same_in_row} identical frames in a row")
            return None
        self._since_open += 1
        with self._lock:
            self._frames += 1
            if self._since_open == 2 * (self.frozen_after or 15):
                # Healthy for twice as long as it takes to call a stream frozen: the backoff
                # restarts from its initial value at the next failure.
                self._retries = 0
        if self._state != "ok":
            self._set("ok")
        return frame

    def _bad_frame(self, exc: BadFrameError) -> None:
        with self._lock:
            self._bad_frames += 1
        self._bad_in_row += 1
        log.debug("source %s: bad frame skipped: %s", self._name, exc)
        if self._bad_in_row >= self.max_bad_frames:
            self._fail("failed", f"{self._bad_in_row} bad frames in a row: {exc}")

    def _is_frozen(self, image: np.ndarray) -> bool:
        fp = _fingerprint(image)
        self._same_in_row = self._same_in_row + 1 if fp == self._last_print else 1
        self._last_print = fp
        return self._same_in_row >= (self.frozen_after or 0)

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until the monotonic ``deadline``; False when closed meanwhile."""
        delay = deadline - time.monotonic()
        if delay > 0:
            return not self._closed.wait(delay)
        return not self._closed.is_set()

    def _open(self) -> None:
        if self._state != "failed" and self._state != "frozen":
            self._set("opening")
        try:
            source = self._opener()
        except Exception as exc:  # noqa: BLE001 - CaptureError or a driver's own error
            self._fail("failed", str(exc) or type(exc).__name__)
            return
        if self._closed.is_set():  # close() raced with the open: do not leak the device
            source.close()
            return
        self._source = source
        with self._lock:
            self._name = getattr(source, "name", self._name)
            self._kind = getattr(source, "kind", self._kind)
        self._same_in_row, self._last_print, self._bad_in_row = 0, None, 0
        self._since_open = 0

    def _fail(self, state: str, error: str) -> None:
        self._close_source()
        with self._lock:
            self._retries += 1
            retries = self._retries
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(retries - 1, 30))
        self._next_try = time.monotonic() + delay
        with self._lock:
            self._backoff = delay
        self._set(state, f"{error}; retry {retries} in {delay:.2f} s")

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:  # noqa: BLE001 - closing must not fail the caller
                log.exception("source %s: error while closing", self._name)

    def close(self) -> None:
        """Stop retrying and release the device; interrupts a waiting :meth:`read` at once.

        Safe from any thread; the underlying source is released here when no read is running,
        otherwise by the reading thread when it returns.
        """
        self._closed.set()
        # Never release a device under a read running in another thread (OpenCV may crash);
        # when a read is in progress, the reading thread releases it as soon as it returns.
        if self._io.acquire(blocking=False):
            try:
                self._close_source()
            finally:
                self._io.release()


def _kind_of(spec: str) -> str:
    spec = spec.strip()
    for prefix in ("webcam", "video", "images", "sample"):
        if spec == prefix or spec.startswith(prefix + ":"):
            return prefix
    if spec == "auto":
        return "auto"
    path = Path(spec).expanduser()
    return "images" if path.is_dir() else "video"
