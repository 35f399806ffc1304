"""Start and stop every component of the daemon, in order (main thread).

Start: lock -> model -> server bind -> analysis service -> server thread -> source -> pipeline;
stop: pipeline -> source -> server -> analysis -> lock.
Each step that fails raises :class:`StartupError` with an exit code and a message that says what
to do; the steps already taken are undone. Stop (SIGTERM/SIGINT, ``--max-frames``, ``--once``):
the components close in reverse order of start, each within its own timeout so the whole stop
takes well under 5 s; an error while stopping is logged, never raised.

The lock comes first so a second daemon never binds a port or opens the camera; the model comes
before the bind so a daemon without a model never looks alive to a game.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from daemon.config import DaemonConfig
from daemon.lock import AlreadyRunning, InstanceLock
from daemon.server import BindError, Server

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_MODEL = 3
EXIT_LOCKED = 4
EXIT_BIND = 5
EXIT_LLM = 6

# The camera's state (daemon.capture.ResilientSource) -> the daemon's status "state".
CAMERA_TO_STATE = {"ok": "running", "opening": "starting", "ended": "running"}

MODEL_HINT = (
    "Train one with `emotion-train --arch resnet50 --data DIR --out "
    "daemon/models/emotion_resnet50.pt` or pass --model"
)


class StartupError(RuntimeError):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


class App:
    """The daemon's components and their lifecycle; ``run`` blocks until asked to stop."""

    def __init__(self, config: DaemonConfig) -> None:
        if config.state_dir is None or config.lock_path is None:
            raise ValueError("resolve the config with daemon.config.load_config first")
        self.config = config
        self.stop_event = threading.Event()
        self.lock = InstanceLock(config.lock_path)
        self.classifier: Any = None
        self.timeline: Any = None
        self.server: Server | None = None
        self.analysis: Any = None
        self.source: Any = None
        self.pipeline: Any = None
        self._stoppers: list[tuple[str, Callable[[], None]]] = []
        self._handed_off = 0
        self.stop_reason = "not started"

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Start everything or nothing: on failure, undo what was started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop_reason = "start failed"
            self.stop()
            raise

    def _start(self) -> None:
        cfg = self.config
        log.info("emotiond starting with %s", cfg.summary())

        try:
            self.lock.acquire()
        except AlreadyRunning as exc:
            raise StartupError(EXIT_LOCKED, str(exc)) from exc
        except OSError as exc:
            raise StartupError(
                EXIT_ERROR, f"cannot create the lock file {cfg.lock_path}: {exc}"
            ) from exc
        self._stoppers.append(("lock", self.lock.release))

        self._load_model()

        from daemon.timeline import Timeline

        self.timeline = Timeline(max_seconds=cfg.timeline_seconds)
        self.server = Server(
            events=cfg.events,
            control=cfg.control,
            status_provider=self._status_part,
            max_intent_age=cfg.timeline_seconds,
            status_interval=cfg.status_interval,
            client_timeout=cfg.client_timeout,
        )
        try:
            self.server.bind()
        except BindError as exc:
            raise StartupError(EXIT_BIND, str(exc)) from exc
        self._stoppers.append(("server", self._stop_server))

        self._start_analysis()
        self.server.analysis = self.analysis
        self.server.start()

        self._start_pipeline()
        self.stop_reason = "running"
        log.info(
            "emotiond ready: source %s, events %s, control %s",
            cfg.source,
            self.server.events_endpoint,
            self.server.control_endpoint,
        )

    def _load_model(self) -> None:
        cfg = self.config
        if not cfg.model.is_file():
            raise StartupError(EXIT_MODEL, f"No trained model at {cfg.model}. {MODEL_HINT}")
        import torch

        from daemon.classify import EmotionClassifier, ModelError

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            self.classifier = EmotionClassifier.from_checkpoint(cfg.model, device=cfg.device)
        except ModelError as exc:
            raise StartupError(EXIT_MODEL, str(exc)) from exc

    def _start_analysis(self) -> None:
        cfg = self.config
        assert self.server is not None
        from daemon.analysis.backends import LLMFailure
        from daemon.analysis.prompt import DEFAULT_PROMPT_TEMPLATE
        from daemon.analysis.service import AnalysisService

        try:
            cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # type: ignore[union-attr]
            self.analysis = AnalysisService(
                timeline=self.timeline,
                state_dir=cfg.state_dir,  # type: ignore[arg-type]
                deliver=self.server.deliver,
                backend_mode=cfg.llm,
                model=cfg.llm_model,
                prompt_template=cfg.prompt_template or DEFAULT_PROMPT_TEMPLATE,
                connect_timeout=cfg.llm_connect_timeout,
                request_timeout=cfg.llm_request_timeout,
                retries=cfg.llm_retries,
            )
            self.analysis.start()
        except LLMFailure as exc:
            raise StartupError(
                EXIT_LLM,
                f"--llm {cfg.llm} asked for, but it cannot serve: {exc}. "
                "Use --llm auto to fall back to summaries only.",
            ) from exc
        except OSError as exc:
            raise StartupError(
                EXIT_ERROR, f"cannot use the state dir {cfg.state_dir}: {exc}"
            ) from exc
        # Stopped after the server (listed before it): no intent arrives at a stopped service.
        at = next(i for i, (name, _) in enumerate(self._stoppers) if name == "server")
        self._stoppers.insert(at, ("analysis", lambda: self.analysis.stop(timeout=1.5)))

    def _start_pipeline(self) -> None:
        cfg = self.config
        from daemon.capture import ResilientSource
        from daemon.detect import FaceDetector
        from daemon.pipeline import Pipeline
        from daemon.tracking import FaceTracker

        loop = cfg.loop_video and not cfg.once
        self.source = ResilientSource.from_spec(
            cfg.source, camera_index=cfg.camera_index, loop=loop
        )
        self._stoppers.append(("source", self.source.close))
        self.pipeline = Pipeline(
            self.source,
            FaceDetector(min_size=cfg.min_face),
            FaceTracker(self.classifier.classes, alpha=cfg.smoothing),
            self.classifier,
            self.timeline,
            self._on_result,
            max_fps=cfg.fps,
        )
        self.pipeline.start()
        self._stoppers.append(("pipeline", lambda: self.pipeline.stop(timeout=2.0)))

    # ------------------------------------------------------------------ running

    def _on_result(self, result: Any) -> None:
        """Pipeline thread: hand the result to the server (up to ``--max-frames``)."""
        limit = self.config.max_frames
        if limit is not None and self._handed_off >= limit:
            return
        self._handed_off += 1
        assert self.server is not None
        self.server.on_result(result)

    def _status_part(self) -> dict[str, Any]:
        """Server thread: the pipeline's and the model's part of the status body."""
        part: dict[str, Any] = {}
        pipeline = self.pipeline
        if pipeline is not None:
            part.update(pipeline.stats())  # fps, frames, faces, errors, latency_ms, camera
            camera = dict(part.get("camera") or {})
            camera.setdefault("name", camera.get("source", self.config.source))
            part["camera"] = camera
            part["state"] = CAMERA_TO_STATE.get(camera.get("state", ""), "degraded")
        else:
            part["camera"] = {"state": "opening", "name": self.config.source}
            part["state"] = "starting"
        if self.classifier is not None:
            part["model"] = self.classifier.describe()
        if self.timeline is not None:
            part["timeline_frames"] = len(self.timeline)
        return part

    def _should_stop(self) -> str | None:
        cfg = self.config
        server = self.server
        if server is not None and not server.running:
            return "the server thread ended"
        if cfg.max_frames is not None and server is not None:
            if server.counters["published_emotion"] >= cfg.max_frames:
                return f"published {cfg.max_frames} frames (--max-frames)"
        if cfg.once and self.source is not None and self.source.state()["state"] == "ended":
            if server is not None and server.counters["published_emotion"] >= self._handed_off:
                return "the source ended (--once)"
        return None

    def run(self) -> int:
        """Block until ``stop_event`` (a signal) or a stop condition; then stop. Returns 0."""
        while not self.stop_event.wait(0.1):
            reason = self._should_stop()
            if reason:
                self.stop_reason = reason
                break
        else:
            self.stop_reason = "asked to stop"
        self.stop()
        return EXIT_OK

    # ------------------------------------------------------------------ stop

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1.0)

    def stop(self) -> None:
        """Close what was started, newest first; log errors, never raise. Idempotent."""
        if not self._stoppers:
            return
        t0 = time.monotonic()
        log.info("emotiond stopping (%s)", self.stop_reason)
        while self._stoppers:
            name, stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception:  # noqa: BLE001 - one failing component must not keep others open
                log.exception("error while stopping %s", name)
        log.info("emotiond stopped in %.2f s", time.monotonic() - t0)
