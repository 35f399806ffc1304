"""The game's link to emotiond: an ``EmotionClient``, and a daemon of its own when none answers.

Everything here runs in the game loop and never waits on the network: ``update()`` polls the
client once per frame. When the player has consented and no daemon has welcomed the client after
``probe_seconds``, the link starts one (``DaemonLauncher``), unless ``--no-daemon``. What it
started, it stops on ``close()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from demo_game.config import GameConfig
from demo_game.daemon_launcher import DaemonLauncher, daemon_command
from game_sdk import (
    ConnectionState,
    DaemonStatus,
    EmotionClient,
    EmotionEvent,
    Event,
    IntentHandle,
    SidecarError,
)

log = logging.getLogger(__name__)


class Sidecar:
    """Connection, daemon process and the latest numbers, as the HUD shows them."""

    def __init__(self, config: GameConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.client: EmotionClient | None = None
        self.launcher: DaemonLauncher | None = None
        self.error: str | None = None  # why the link cannot work, for the screen
        self.sessions: list[str] = []  # every daemon session that welcomed us, oldest first
        self._opened_at = 0.0
        self._welcomed = False  # a daemon answered since the last open()

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def open(self) -> None:
        """Connect (in the background) to the configured endpoints."""
        if self.client is not None:
            return
        self.error = None
        try:
            self.client = EmotionClient(
                control=self.config.control,
                events=self.config.events,
                client_id=self.config.client_id,
                name="emotion-demo",
            )
        except SidecarError as exc:
            self.error = str(exc)
            log.error("cannot connect to the daemon: %s", exc)
            return
        self._opened_at = self.clock()
        self._welcomed = False
        log.info("connecting to the daemon at %s", self.config.control)

    def update(self) -> list[Event]:
        """Poll once (non-blocking); start a daemon if it is time. Returns what arrived."""
        if self.client is None:
            return []
        events = self.client.poll()
        session = self.client.session if self.connected else None
        if session and (not self.sessions or self.sessions[-1] != session):
            self.sessions.append(session)
            log.info("connected to daemon session %s", session)
        self._welcomed = self._welcomed or session is not None
        waited = self.clock() - self._opened_at
        if (
            not self._welcomed
            and self.config.start_daemon
            and self.launcher is None
            and waited >= self.config.probe_seconds
        ):
            self._start_daemon()
        if self.launcher is not None and not self.connected:
            failure = self.launcher.failure()
            if failure is not None and self.error is None:
                self.error = f"the daemon stopped: {failure}"
                log.error("%s\n%s", self.error, self.launcher.log_tail(10))
        if (
            not self._welcomed
            and self.launcher is not None
            and self.error is None
            and waited >= self.config.probe_seconds + self.config.daemon_start_timeout
        ):
            self.error = f"the daemon did not answer within {self.config.daemon_start_timeout:g} s"
        return events

    def _start_daemon(self) -> None:
        c = self.config
        self.launcher = DaemonLauncher(
            daemon_command(c.source, c.events, c.control, c.llm, c.daemon_args)
        )
        try:
            self.launcher.start()
        except OSError as exc:
            self.error = f"cannot start the daemon: {exc}"
            log.error(self.error)
            return
        log.info("started the daemon (pid %d)", self.launcher.pid)

    def close(self) -> None:
        """Disconnect, and stop the daemon if this link started it."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.launcher is not None:
            code = self.launcher.stop()
            log.info("stopped the daemon we started (exit code %s)", code)
            self.launcher = None

    # ------------------------------------------------------------- what the HUD shows

    @property
    def state(self) -> ConnectionState | None:
        return self.client.state if self.client is not None else None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.state is ConnectionState.CONNECTED

    @property
    def status(self) -> DaemonStatus | None:
        return self.client.status if self.client is not None else None

    def latest(self) -> EmotionEvent | None:
        """The latest emotion event, or None when it is stale (daemon away) or absent."""
        if self.client is None or not self.connected:
            return None
        return self.client.latest()

    def connection_text(self) -> tuple[str, str]:
        """A short line and a tone (``good``, ``wait``, ``bad``, ``off``) for the HUD."""
        if self.client is None:
            return ("camera off", "off") if self.error is None else (self.error, "bad")
        if self.error is not None and not self.connected:
            return self.error, "bad"
        state = self.client.state
        if state is ConnectionState.CONNECTED:
            return "connected", "good"
        if state is ConnectionState.DISCONNECTED:
            return "daemon lost: reconnecting", "bad"
        if self._welcomed:
            return "daemon restarted: reconnecting", "wait"
        if self.launcher is not None:
            return "starting the daemon...", "wait"
        if not self.config.start_daemon:
            return f"waiting for emotiond at {self.config.control}", "wait"
        return "looking for a daemon...", "wait"

    def source_text(self) -> str | None:
        """``bundled sample`` or ``webcam (webcam:0)``, from the latest status snapshot."""
        status = self.status
        if status is None or not status.camera:
            return None
        kind, name = status.source_kind, status.camera.get("name")
        if kind == "sample":
            return "bundled sample (no webcam)"
        if kind == "webcam":
            return f"webcam ({name})" if name else "webcam"
        return f"{kind}: {name}" if name else str(kind)

    def camera_state(self) -> tuple[str, str | None]:
        status = self.status
        if status is None:
            return "unknown", None
        cam: Any = status.camera
        return str(cam.get("state", "unknown")), cam.get("error")

    # ------------------------------------------------------------- intents

    def begin_intent(self, text: str) -> IntentHandle | None:
        """The intent marker, or None when the camera is off (nothing to analyse)."""
        if self.client is None:
            return None
        return self.client.begin_intent(text)

    def end_intent(self, handle: IntentHandle) -> None:
        if self.client is not None:
            self.client.end_intent(handle)
