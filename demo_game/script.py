"""Scripted input: a text file of commands that drive the game through its real input path.

Each command posts ordinary pygame events (``KEYDOWN``/``KEYUP``/``TEXTINPUT``) into the event
queue, so a scripted run exercises exactly what a player's keyboard does. Waits are on game
conditions, not on fixed delays, so a script plays the same on a slow or a fast machine. One
command per line; ``#`` starts a comment::

    wait explore            # until that scene (consent, explore, prompt, encounter, waiting, result)
    wait connected          # until the daemon welcomed the game; also: new-session, faces
    goto chest              # steer the player (arrow keys) to an event: chest, trap, boss
    type open the chest     # text input, as typed
    key return              # press and release a key (pygame key names: return, space, y, ...)
    hold space 1.5          # keep a key down for that many seconds
    sleep 0.5               # let game time pass
    shot hud                # save <screenshot-dir>/hud.png
    signal ready            # set the threading.Event ``game.signals["ready"]`` (for tests)
    quit

A ``wait`` gives up after 60 s (or ``wait result 90``); the run then ends with
``ScriptPlayer.error`` set and exit code 3.
"""

from __future__ import annotations

import logging
import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pygame

from demo_game.world import TILE, TRIGGER_TILES, World, tile_center

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 60.0
COMMANDS = ("wait", "goto", "type", "key", "hold", "sleep", "shot", "signal", "quit")


class ScriptError(ValueError):
    """A script line that cannot be run (unknown command, key, target or argument)."""


class ScriptHost(Protocol):
    """What the script needs from the game."""

    world: World

    def condition(self, name: str) -> bool: ...
    def daemon_session(self) -> str | None: ...
    def screenshot(self, name: str) -> Path: ...
    def signal(self, name: str) -> None: ...
    def request_quit(self) -> None: ...


@dataclass(frozen=True)
class Step:
    line: int
    command: str
    args: tuple[str, ...]
    raw: str


def parse_script(text: str) -> list[Step]:
    """Parse and check every line up front, so a typo fails at start, not halfway through."""
    steps = []
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        command, _, rest = body.partition(" ")
        command = command.lower()
        if command not in COMMANDS:
            raise ScriptError(f"line {number}: unknown command {command!r}")
        args = (rest,) if command == "type" else tuple(shlex.split(rest))
        if command in ("key", "hold"):
            _key_code(args[0] if args else "", number)
        if command == "goto" and (not args or args[0] not in TRIGGER_TILES):
            raise ScriptError(f"line {number}: goto needs one of {', '.join(TRIGGER_TILES)}")
        if command in ("wait", "shot", "signal") and not args:
            raise ScriptError(f"line {number}: {command} needs an argument")
        steps.append(Step(number, command, args, body))
    return steps


def _key_code(name: str, line: int) -> int:
    try:
        with warnings.catch_warnings():  # names resolve without pygame.init(); it still warns
            warnings.simplefilter("ignore")
            return pygame.key.key_code(name)
    except ValueError:
        raise ScriptError(f"line {line}: unknown key {name!r}") from None


def post_key(key: int, down: bool) -> None:
    kind = pygame.KEYDOWN if down else pygame.KEYUP
    pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode="", scancode=0))


ARROWS = {
    (1, 0): pygame.K_RIGHT,
    (-1, 0): pygame.K_LEFT,
    (0, 1): pygame.K_DOWN,
    (0, -1): pygame.K_UP,
}


class ScriptPlayer:
    """Runs a parsed script one step at a time from the game loop (``update`` each frame)."""

    def __init__(self, steps: list[Step], host: ScriptHost) -> None:
        self.steps = steps
        self.host = host
        self.index = 0
        self.error: str | None = None
        self._step_t = 0.0  # game seconds spent on the current step
        self._held: set[int] = set()
        self._release_at: dict[int, float] = {}
        self._session_at_start: str | None = None
        self._shot_queued = False

    @classmethod
    def from_file(cls, path: Path, host: ScriptHost) -> ScriptPlayer:
        return cls(parse_script(path.read_text(encoding="utf-8")), host)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.steps) or self.error is not None

    def update(self, dt: float) -> None:
        """Advance: release timed keys, then run steps until one has to wait for later frames."""
        for key, left in list(self._release_at.items()):
            if left - dt <= 0:
                del self._release_at[key]
                self._set_held(key, False)
            else:
                self._release_at[key] = left - dt
        while not self.finished:
            step = self.steps[self.index]
            self._step_t += dt
            dt = 0.0  # only the first step of a frame consumes its time
            handler: Callable[[Step], bool] = getattr(self, f"_do_{step.command}")
            if not handler(step):
                return
            self.index += 1
            self._step_t = 0.0

    def _fail(self, step: Step, why: str) -> bool:
        self.error = f"script line {step.line} ({step.raw}): {why}"
        log.error(self.error)
        self._release_all()
        self.host.request_quit()
        return False

    def _set_held(self, key: int, down: bool) -> None:
        if down and key not in self._held:
            self._held.add(key)
            post_key(key, True)
        elif not down and key in self._held:
            self._held.discard(key)
            post_key(key, False)

    def _release_all(self) -> None:
        for key in list(self._held):
            self._set_held(key, False)
        self._release_at.clear()

    # ----------------------------------------------------------------- commands

    def _do_wait(self, step: Step) -> bool:
        name = step.args[0]
        limit = float(step.args[1]) if len(step.args) > 1 else DEFAULT_WAIT_S
        if name == "new-session":
            now = self.host.daemon_session()
            if self._session_at_start is None:
                self._session_at_start = now or ""
            done = bool(now) and now != self._session_at_start and self.host.condition("connected")
        else:
            done = self.host.condition(name)
        if done:
            self._session_at_start = None
            return True
        if self._step_t > limit:
            return self._fail(step, f"still waiting after {limit:g} s")
        return False

    def _do_goto(self, step: Step) -> bool:
        world = self.host.world
        goal = TRIGGER_TILES[step.args[0]]
        if step.args[0] in world.started or self.host.condition("prompt"):
            self._release_all()
            return True
        if self._step_t > DEFAULT_WAIT_S:
            return self._fail(step, "the player never got there")
        path = world.path(goal)
        if not path:
            return self._fail(step, "no way there (a gate is still closed?)")
        p = world.player
        target = tile_center(path[1] if len(path) > 1 else goal)
        wanted: set[int] = set()
        for axis, delta in ((0, target[0] - p.x), (1, target[1] - p.y)):
            if abs(delta) > TILE * 0.12:
                direction = (
                    (1 if delta > 0 else -1, 0) if axis == 0 else (0, 1 if delta > 0 else -1)
                )
                wanted.add(ARROWS[direction])
        for key in ARROWS.values():
            self._set_held(key, key in wanted)
        return False

    def _do_type(self, step: Step) -> bool:
        pygame.event.post(pygame.event.Event(pygame.TEXTINPUT, text=step.args[0]))
        return True

    def _do_key(self, step: Step) -> bool:
        key = _key_code(step.args[0], step.line)
        post_key(key, True)
        post_key(key, False)
        return True

    def _do_hold(self, step: Step) -> bool:
        key = _key_code(step.args[0], step.line)
        self._set_held(key, True)
        self._release_at[key] = float(step.args[1]) if len(step.args) > 1 else 0.5
        return True

    def _do_sleep(self, step: Step) -> bool:
        return self._step_t >= float(step.args[0])

    def _do_shot(self, step: Step) -> bool:
        """Queue the shot (saved once this frame is drawn); move on at the next frame, so input
        posted by later steps cannot change the frame before it is captured."""
        if not self._shot_queued:
            self.host.screenshot(step.args[0])
            self._shot_queued = True
            return False
        self._shot_queued = False
        return True

    def _do_signal(self, step: Step) -> bool:
        self.host.signal(step.args[0])
        return True

    def _do_quit(self, step: Step) -> bool:
        self._release_all()
        self.host.request_quit()
        return True
