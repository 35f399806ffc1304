"""The game loop and its scenes: consent, explore, prompt, encounter, waiting, result, finale.

One thread. Each frame: scripted input (if any) is posted, pygame events are read, the sidecar is
polled once (non-blocking), the current scene updates, everything is drawn, and the frame's cost
is recorded. Nothing in a frame waits on the network or on the daemon.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path

import pygame

from daemon.stats import summarize
from demo_game import theme
from demo_game.config import GameConfig
from demo_game.encounters import Controls, Encounter, make_encounters
from demo_game.hud import Hud, draw_hint, draw_status_bar
from demo_game.screens import (
    ResultPanel,
    draw_consent,
    draw_finale,
    draw_prompt,
    draw_waiting,
)
from demo_game.script import ScriptPlayer
from demo_game.sidecar import Sidecar
from demo_game.textbox import TextBox
from demo_game.world import (
    COLS,
    EVENTS,
    ROWS,
    TILE,
    World,
    draw_gates,
    draw_player,
    draw_torches,
    draw_trigger_marks,
    radial_glow,
    render_floor,
)
from game_sdk import Analysis, IntentError, IntentHandle

log = logging.getLogger(__name__)

SCENES = ("consent", "explore", "prompt", "encounter", "waiting", "result", "finale")
EXIT_OK, EXIT_SCRIPT = 0, 3
MAX_DT = 0.05  # a long frame (window dragged, machine busy) does not teleport the player


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` in ms (zeros before the first frame)."""
    return summarize(values, (50, 99), ndigits=2) or {"p50": 0.0, "p99": 0.0, "max": 0.0}


class FramePacer:
    """Sleeps to the next frame deadline on a fixed grid, so one late wake-up is made up by the
    next frame instead of lowering the frame rate (``Clock.tick`` drifts to ~50 fps under load).
    A game that falls more than a frame behind restarts the grid rather than rushing frames."""

    def __init__(self, fps: int) -> None:
        self.period = 1.0 / fps
        self.deadline: float | None = None

    def wait(self) -> None:
        now = time.perf_counter()
        if self.deadline is None or now - self.deadline > self.period:
            self.deadline = now
        self.deadline += self.period
        delay = self.deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


class Game:
    """``Game(config).run()`` plays until the player quits; returns the process exit code."""

    def __init__(self, config: GameConfig) -> None:
        self.config = config
        pygame.display.init()  # no audio: the demo is silent, and headless machines have none
        pygame.font.init()
        flags = pygame.FULLSCREEN | pygame.SCALED if config.fullscreen else 0
        self.screen = pygame.display.set_mode(config.size, flags)
        pygame.display.set_caption("emotion-sidecar: the dungeon demo")
        pygame.key.set_repeat(0)
        self.pacer = FramePacer(config.fps)
        w, h = config.size
        self.play_area = pygame.Rect(0, 0, COLS * TILE, ROWS * TILE)
        self.play = pygame.Surface(self.play_area.size)
        self.hud = Hud(pygame.Rect(self.play_area.right, 0, w - self.play_area.right, h))
        self.floor = render_floor(self.play_area.size)
        self.glow = radial_glow(60, (120, 70, 20))
        self.vignette = self._vignette(self.play_area.size)
        self.backdrop = theme.vertical_gradient(config.size, (36, 26, 54), theme.BACKGROUND)

        self.sidecar = Sidecar(config)
        self.world = World()
        self.encounters: dict[str, Encounter] = make_encounters(config.seed)
        self.controls = Controls()
        self.scene = "consent"
        self.t = 0.0  # game time, seconds
        self.running = True
        self.exit_code = EXIT_OK

        self.encounter: Encounter | None = None
        self.textbox: TextBox | None = None
        self.handle: IntentHandle | None = None
        self.intent_text = ""
        self.waiting_for: str | None = None
        self.waiting_since = 0.0
        self.analyses: dict[str, Analysis] = {}  # every analysis received, by intent id
        self.unseen: list[Analysis] = []  # received while the player was busy
        self.result: ResultPanel | None = None
        self.shown: list[ResultPanel] = []  # every result panel shown, oldest first
        self.toasts: list[tuple[str, float]] = []
        self.shots = 0
        self._shots_due: list[Path] = []

        self.work_ms: list[float] = []  # per frame: input, poll, update, draw, flip
        self.interval_ms: list[float] = []  # per frame: flip to flip (what the eye sees)
        self.signals: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.script = ScriptPlayer.from_file(config.script, self) if config.script else None
        if config.consent is not None:
            self._answer_consent(config.consent)

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        start = last_flip = previous = time.perf_counter()
        try:
            while self.running:
                frame_start = time.perf_counter()
                dt = min(MAX_DT, frame_start - previous)
                previous = frame_start
                self.t += dt
                if self.script is not None:
                    self.script.update(dt)
                self._handle_input()
                self._poll_sidecar()
                self._update(dt)
                self._draw()
                shot = bool(self._shots_due)
                if shot:
                    self._save_screenshots()
                pygame.display.flip()
                now = time.perf_counter()
                if not shot:  # encoding a PNG is a capture's cost, not the game's
                    self.work_ms.append((now - frame_start) * 1000)
                    self.interval_ms.append((now - last_flip) * 1000)
                last_flip = now
                limit = self.config.max_seconds
                if limit is not None and now - start >= limit:
                    log.info("--max-seconds reached")
                    self.running = False
                self.pacer.wait()
        finally:
            self.close()
            pygame.display.quit()
        if self.script is not None and self.script.error:
            self.exit_code = EXIT_SCRIPT
        return self.exit_code

    def close(self) -> None:
        self.sidecar.close()
        stats = self.frame_stats()
        log.info("frame times: %s", json.dumps(stats))
        if self.config.stats_path is not None:
            self.config.stats_path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")

    def frame_stats(self) -> dict[str, object]:
        intervals = self.interval_ms[1:]  # the first includes start-up
        return {
            "frames": len(self.work_ms),
            "work_ms": percentiles(self.work_ms),
            "interval_ms": percentiles(intervals),
            "fps": round(1000 * len(intervals) / sum(intervals), 1) if intervals else 0.0,
        }

    def request_quit(self) -> None:
        self.running = False

    # ------------------------------------------------------------------ script host

    def condition(self, name: str) -> bool:
        if name in SCENES:
            return self.scene == name
        if name == "connected":
            return self.sidecar.connected
        if name == "faces":
            latest = self.sidecar.latest()
            return latest is not None and bool(latest.faces)
        if name == "camera-off":
            return not self.sidecar.enabled
        raise ValueError(f"unknown condition {name!r}")

    def daemon_session(self) -> str | None:
        return self.sidecar.sessions[-1] if self.sidecar.connected else None

    def signal(self, name: str) -> None:
        self.signals[name].set()

    def screenshot(self, name: str | None = None) -> Path:
        """Save the screen as ``<screenshot-dir>/<name>.png`` once this frame is drawn."""
        folder = self.config.screenshot_dir or Path.cwd()
        if name is None:
            self.shots += 1
            name = f"emotion-demo-{time.strftime('%Y%m%d-%H%M%S')}-{self.shots}"
        path = folder / f"{name}.png"
        self._shots_due.append(path)
        return path

    def _save_screenshots(self) -> None:
        for path in self._shots_due:
            path.parent.mkdir(parents=True, exist_ok=True)
            pygame.image.save(self.screen, str(path))
            log.info("screenshot saved: %s", path)
        self._shots_due.clear()

    # ------------------------------------------------------------------ input

    def _handle_input(self) -> None:
        self.controls.pressed = []
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.running = False
            elif event.type == pygame.KEYUP:
                self.controls.held.discard(event.key)
            elif event.type == pygame.KEYDOWN:
                self.controls.held.add(event.key)
                self.controls.pressed.append(event.key)
                self._on_key(event)
            elif event.type == pygame.TEXTINPUT and self.textbox is not None:
                self.textbox.handle(event)

    def _on_key(self, event: pygame.event.Event) -> None:
        key = event.key
        if key == pygame.K_ESCAPE:
            self.running = False
        elif key == pygame.K_F12:
            self.toast(f"saved {self.screenshot().name}")
        elif self.scene == "consent":
            if key in (pygame.K_y, pygame.K_RETURN):
                self._answer_consent(True)
            elif key == pygame.K_n:
                self._answer_consent(False)
        elif self.scene == "prompt":
            assert self.textbox is not None
            if self.textbox.handle(event):
                self._start_encounter(self.textbox.value)
        elif self.scene == "waiting" and key in (pygame.K_RETURN, pygame.K_KP_ENTER):
            self.toast("the analysis will pop up when it is ready")
            self._set_scene("explore")
        elif self.scene == "result" and self.result is not None:
            if key in (pygame.K_RETURN, pygame.K_KP_ENTER, pygame.K_SPACE):
                self.result = None
                self._set_scene("finale" if self._all_done() else "explore")
            elif key in (pygame.K_DOWN, pygame.K_PAGEDOWN):
                self.result.scroll(1 if key == pygame.K_DOWN else 6)
            elif key in (pygame.K_UP, pygame.K_PAGEUP):
                self.result.scroll(-1 if key == pygame.K_UP else -6)
        elif self.scene == "finale" and key == pygame.K_r:
            self.world = World()
            self.encounters = make_encounters(None)
            self._set_scene("explore")
        elif key == pygame.K_c and self.scene in ("explore", "waiting", "finale"):
            self._toggle_camera()

    def _answer_consent(self, yes: bool) -> None:
        log.info("camera consent: %s", "yes" if yes else "no")
        if yes:
            self.sidecar.open()
        else:
            self.toast("camera off: play on, nothing is recorded")
        self._set_scene("explore")

    def _toggle_camera(self) -> None:
        if self.sidecar.enabled:
            self.sidecar.close()
            self.waiting_for = None
            self.toast("camera off" + (" (daemon stopped)" if self.config.start_daemon else ""))
            if self.scene == "waiting":
                self._set_scene("explore")
        else:
            self.sidecar.open()
            self.toast("camera on")

    # ------------------------------------------------------------------ update

    def _poll_sidecar(self) -> None:
        for event in self.sidecar.update():
            if isinstance(event, Analysis) and event.intent_id not in self.analyses:
                self.analyses[event.intent_id] = event
                log.info("analysis for %r: %s %s", event.intent, event.status, event.reason or "")
                if event.intent_id == self.waiting_for and self.scene == "waiting":
                    self._show_result(event)
                else:
                    self.unseen.append(event)

    def _update(self, dt: float) -> None:
        self.world.player.invulnerable = max(0.0, self.world.player.invulnerable - dt)
        self.toasts = [(m, until) for m, until in self.toasts if until > self.t]
        if self.textbox is not None:
            self.textbox.update(dt)
        if self.scene == "explore":
            self.world.move(*self.controls.axis(), dt)
            name = self.world.trigger_here()
            if name is not None:
                self._ask_intent(self.encounters[name])
            elif self.unseen:
                self._show_result(self.unseen.pop(0))
        elif self.scene == "encounter" and self.encounter is not None:
            if self.encounter.name != "chest":
                self.world.move(*self.controls.axis(), dt)
            self.encounter.update(dt, self.controls, self.world)
            if self.encounter.state == "done":
                self._end_encounter()

    def _set_scene(self, scene: str) -> None:
        if scene != self.scene:
            log.info("scene: %s", scene)
            self.scene = scene

    def _ask_intent(self, encounter: Encounter) -> None:
        self.encounter = encounter
        self.textbox = TextBox(encounter.default_intent)
        self.controls.held.clear()
        pygame.key.start_text_input()
        self._set_scene("prompt")

    def _start_encounter(self, intent: str) -> None:
        pygame.key.stop_text_input()
        assert self.encounter is not None
        self.textbox = None
        self.intent_text = intent
        try:
            self.handle = self.sidecar.begin_intent(intent)
        except IntentError as exc:  # cannot happen with TextBox's limits; never fatal anyway
            log.warning("intent not sent: %s", exc)
            self.handle = None
        self.world.started.add(self.encounter.name)
        self.encounter.begin(self.world)
        log.info("event %s begins; intent %r", self.encounter.name, intent)
        self._set_scene("encounter")

    def _end_encounter(self) -> None:
        assert self.encounter is not None
        log.info("event %s ends: %s", self.encounter.name, self.encounter.outcome)
        self.toast(self.encounter.outcome)
        handle, self.handle = self.handle, None
        if handle is not None and self.sidecar.enabled:
            self.sidecar.end_intent(handle)
            self.waiting_for, self.waiting_since = handle.intent_id, self.t
            self._set_scene("waiting")
        else:
            self._set_scene("finale" if self._all_done() else "explore")
        self.controls.held.clear()

    def _show_result(self, analysis: Analysis) -> None:
        self.result = ResultPanel(analysis, self.screen.get_rect())
        self.shown.append(self.result)
        if analysis.intent_id == self.waiting_for:
            self.waiting_for = None
        self._set_scene("result")

    def _all_done(self) -> bool:
        return all(self.encounters[name].state == "done" for name in EVENTS)

    def toast(self, message: str, seconds: float = 3.0) -> None:
        if message:
            self.toasts.append((message, self.t + seconds))

    # ------------------------------------------------------------------ drawing

    @staticmethod
    def _vignette(size: tuple[int, int]) -> pygame.Surface:
        w, h = size
        layer = pygame.Surface(size, pygame.SRCALPHA)
        for i in range(40):
            k = i / 40
            alpha = round(150 * (1 - k) ** 2.2)
            inset = round(k * min(w, h) * 0.22)
            pygame.draw.rect(
                layer, (0, 0, 0, alpha), (inset, inset, w - 2 * inset, h - 2 * inset), 8
            )
        return layer

    def _draw(self) -> None:
        if self.scene == "consent":
            draw_consent(self.screen, self.backdrop, self.t)
            return
        play, t = self.play, self.t
        play.blit(self.floor, (0, 0))
        draw_trigger_marks(play, self.world, t)
        draw_gates(play, self.world, t)
        for encounter in self.encounters.values():
            encounter.draw(play, t)
        draw_player(play, self.world.player, t)
        draw_torches(play, self.glow, t)
        play.blit(self.vignette, (0, 0))
        done = sum(e.state == "done" for e in self.encounters.values())
        draw_status_bar(play, self.world.player, done, t)
        draw_hint(play, self.play_area, self._hint())
        shake = self.encounter.shake if self.encounter is not None else 0.0
        offset = (round(6 * shake * ((t * 60) % 2 * 2 - 1)), 0) if shake else (0, 0)
        if offset != (0, 0):
            self.screen.fill(theme.BACKGROUND, self.play_area)
        self.screen.blit(play, offset)
        self.hud.draw(self.screen, self.sidecar, t)
        self._draw_toasts()
        if self.scene == "prompt" and self.textbox is not None and self.encounter is not None:
            draw_prompt(
                self.screen,
                self.play_area,
                self.encounter.title,
                self.textbox,
                self.sidecar.enabled,
            )
        elif self.scene == "waiting" and self.handle is None and self.waiting_for is not None:
            waited = t - self.waiting_since
            draw_waiting(self.screen, self.play_area, t, waited, self.intent_text)
        elif self.scene == "result" and self.result is not None:
            self.result.draw(self.screen)
        elif self.scene == "finale":
            draw_finale(self.screen, self.play_area, self.world.player.gold, t)

    def _hint(self) -> str:
        if self.scene == "encounter" and self.encounter is not None:
            return self.encounter.hint()
        if self.scene == "explore":
            nxt = self.world.next_event()
            return "Walk to the glowing ring" if nxt else ""
        return ""

    def _draw_toasts(self) -> None:
        y = 62
        for message, until in self.toasts[-3:]:
            fade = min(1.0, (until - self.t) / 0.5)
            f = theme.font(24)
            w = f.size(message)[0] + 28
            box = pygame.Rect(0, y, w, 34)
            box.centerx = self.play_area.centerx
            layer = pygame.Surface(box.size, pygame.SRCALPHA)
            pygame.draw.rect(
                layer, (*theme.PANEL, round(220 * fade)), layer.get_rect(), border_radius=10
            )
            self.screen.blit(layer, box.topleft)
            theme.text(
                self.screen,
                message,
                box.center,
                size=24,
                color=theme.mix(theme.BACKGROUND, theme.TEXT, fade),
                anchor="center",
            )
            y += 40
