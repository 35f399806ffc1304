"""The three events that provoke feelings: a chest (maybe a mimic), a spike hall, the Warden.

Each encounter lives for the whole run: ``idle`` until the player reaches it, ``active`` while it
plays (the intent window), then ``done``. Every one is bounded in time, so an intent window never
stays open because a player walked away from the keyboard.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pygame

from demo_game import theme
from demo_game.world import SPIKE_TILES, TILE, TRIGGER_TILES, Player, World, tile_center


@dataclass
class Particle:
    x: float
    y: float
    vx: float
    vy: float
    life: float
    color: theme.Color
    size: float = 3.0


@dataclass
class Controls:
    """This frame's input: keys held, and keys pressed since the last frame."""

    held: set[int] = field(default_factory=set)
    pressed: list[int] = field(default_factory=list)

    def axis(self) -> tuple[float, float]:
        h = self.held
        dx = (pygame.K_RIGHT in h or pygame.K_d in h) - (pygame.K_LEFT in h or pygame.K_a in h)
        dy = (pygame.K_DOWN in h or pygame.K_s in h) - (pygame.K_UP in h or pygame.K_w in h)
        return float(dx), float(dy)


class Encounter:
    """Base: state machine, timing, particles, and the hurt rule shared by all three."""

    name = ""
    title = ""
    default_intent = ""  # shown greyed in the prompt; sent when the player types nothing
    limit_s = 20.0  # the event ends by itself after this long

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.state = "idle"  # idle, active, done
        self.elapsed = 0.0
        self.outcome = ""  # one line for the log and the toast
        self.particles: list[Particle] = []
        self.shake = 0.0

    @property
    def active(self) -> bool:
        return self.state == "active"

    def begin(self, world: World) -> None:
        self.state, self.elapsed = "active", 0.0

    def finish(self, outcome: str) -> None:
        self.state, self.outcome = "done", outcome

    def update(self, dt: float, controls: Controls, world: World) -> None:
        self.elapsed += dt
        self.shake = max(0.0, self.shake - dt)
        for p in self.particles:
            p.x += p.vx * dt
            p.y += p.vy * dt
            p.vy += 240 * dt
            p.life -= dt
        self.particles = [p for p in self.particles if p.life > 0]

    def hint(self) -> str:
        return ""

    def draw(self, surf: pygame.Surface, t: float) -> None:
        for p in self.particles:
            pygame.draw.circle(surf, p.color, (round(p.x), round(p.y)), max(1, round(p.size)))

    def burst(self, x: float, y: float, color: theme.Color, n: int, speed: float = 220) -> None:
        for _ in range(n):
            a = self.rng.uniform(0, math.tau)
            v = self.rng.uniform(0.3, 1.0) * speed
            self.particles.append(
                Particle(x, y, v * math.cos(a), v * math.sin(a) - 120, 1.2, color)
            )

    def hurt(self, player: Player) -> bool:
        """One heart off, a short invulnerability; at zero hearts the player gets up again."""
        if player.invulnerable > 0:
            return False
        player.hearts -= 1
        player.invulnerable = 1.2
        self.shake = 0.35
        self.burst(player.x, player.y, theme.HEART, 14, 160)
        if player.hearts <= 0:
            player.hearts = 3
        return True


class Chest(Encounter):
    """Hold SPACE to pick the lock; then treasure, or a mimic's bite."""

    name, title = "chest", "The chest"
    default_intent = "open the chest and grab the gold"
    PICK_S = 1.2
    REVEAL_S = 2.2

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.progress = 0.0
        self.mimic = rng.random() < 0.4
        self.revealed_at: float | None = None
        self.center = tile_center(TRIGGER_TILES["chest"])

    def begin(self, world: World) -> None:
        super().begin(world)
        cx, cy = self.center
        world.player.x, world.player.y, world.player.facing = cx - TILE, cy, 0.0

    def update(self, dt: float, controls: Controls, world: World) -> None:
        super().update(dt, controls, world)
        if self.revealed_at is None:
            if pygame.K_SPACE in controls.held:
                self.progress = min(1.0, self.progress + dt / self.PICK_S)
            else:
                self.progress = max(0.0, self.progress - dt * 0.25)
            if self.progress >= 1.0 or self.elapsed >= self.limit_s - self.REVEAL_S:
                self._reveal(world.player)
        elif self.elapsed - self.revealed_at >= self.REVEAL_S:
            self.finish("a mimic bit you" if self.mimic else "you found 40 gold")

    def _reveal(self, player: Player) -> None:
        self.revealed_at = self.elapsed
        cx, cy = self.center
        if self.mimic:
            self.hurt(player)
            self.shake = 0.6
        else:
            player.gold += 40
            self.burst(cx, cy - 10, theme.GOLD, 40)

    def hint(self) -> str:
        if self.revealed_at is None:
            return "Hold SPACE to pick the lock"
        return "A MIMIC!" if self.mimic else "Treasure!"

    def draw(self, surf: pygame.Surface, t: float) -> None:
        cx, cy = (round(v) for v in self.center)
        body = pygame.Rect(0, 0, 38, 26)
        body.midbottom = (cx, cy + 14)
        pygame.draw.ellipse(surf, (10, 8, 16), body.inflate(8, 0).move(0, 6))
        opened = self.revealed_at is not None or self.state == "done"
        wood, band = (122, 78, 44), (200, 160, 70)
        if opened and self.mimic:
            wood = (150, 60, 60)
        pygame.draw.rect(surf, wood, body, border_radius=4)
        pygame.draw.rect(surf, band, body, 2, border_radius=4)
        lid = pygame.Rect(body.left, body.top - 12, body.width, 14)
        if opened:
            lid = lid.move(0, -10)
            if self.mimic:
                for i in range(5):  # teeth
                    x = body.left + 5 + i * 7
                    pygame.draw.polygon(
                        surf,
                        (240, 240, 230),
                        [(x, body.top), (x + 6, body.top), (x + 3, body.top + 7)],
                    )
                    pygame.draw.polygon(
                        surf,
                        (240, 240, 230),
                        [(x, lid.bottom), (x + 6, lid.bottom), (x + 3, lid.bottom - 7)],
                    )
            else:
                pygame.draw.rect(surf, theme.GOLD, body.inflate(-10, -14).move(0, -6))
        pygame.draw.rect(surf, wood, lid, border_top_left_radius=8, border_top_right_radius=8)
        pygame.draw.rect(surf, band, lid, 2, border_top_left_radius=8, border_top_right_radius=8)
        if not opened:
            pygame.draw.rect(surf, band, (cx - 4, body.top - 4, 8, 9))
        if self.active and self.revealed_at is None:
            bar = pygame.Rect(0, 0, 70, 8)
            bar.midbottom = (cx, lid.top - 10)
            pygame.draw.rect(surf, theme.BACKGROUND, bar, border_radius=4)
            fill = bar.copy()
            fill.width = round(bar.width * self.progress)
            pygame.draw.rect(surf, theme.ACCENT, fill, border_radius=4)
        super().draw(surf, t)


class Trap(Encounter):
    """A hall of spikes that rise in waves: cross it to the far gate."""

    name, title = "trap", "The spike hall"
    default_intent = "run across the spikes without getting hurt"
    limit_s = 16.0
    PERIOD = 1.6
    UP = 0.45  # fraction of a period a spike is up
    EXIT_X = max(x for x, _ in SPIKE_TILES) + 1

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.hits = 0

    def height(self, tile: tuple[int, int], t: float) -> float:
        """0 (down) .. 1 (fully up) for a spike tile at run time ``t``."""
        if self.state != "active":
            return 0.0
        phase = (t / self.PERIOD - (tile[0] - SPIKE_TILES[0][0]) * 0.17) % 1.0
        if phase >= self.UP:
            return 0.0
        return min(1.0, phase / 0.06, (self.UP - phase) / 0.06)

    def update(self, dt: float, controls: Controls, world: World) -> None:
        super().update(dt, controls, world)
        p = world.player
        if p.tile in SPIKE_TILES and self.height(p.tile, self.elapsed) > 0.6 and self.hurt(p):
            self.hits += 1
            p.x = tile_center((SPIKE_TILES[0][0] - 1, p.tile[1]))[0]
        if p.tile[0] >= self.EXIT_X:
            self.finish("crossed the spikes" + (f", hit {self.hits}x" if self.hits else " unhurt"))
        elif self.elapsed >= self.limit_s:
            self.finish("the mechanism jammed")

    def hint(self) -> str:
        return "Cross the hall when the spikes go down  (arrows / WASD)"

    def draw(self, surf: pygame.Surface, t: float) -> None:
        for tile in SPIKE_TILES:
            h = self.height(tile, self.elapsed)
            if h <= 0:
                continue
            left, top = tile[0] * TILE, tile[1] * TILE
            for i in range(3):
                for j in range(3):
                    bx, by = left + 10 + i * 14, top + 14 + j * 14
                    tip = by - round(12 * h)
                    pygame.draw.polygon(surf, theme.SPIKE, [(bx - 5, by), (bx + 5, by), (bx, tip)])
        super().draw(surf, t)


@dataclass
class Fireball:
    x: float
    y: float
    vx: float
    vy: float


class Boss(Encounter):
    """The Warden: dodge its fireballs, then strike (SPACE) while it is stunned."""

    name, title = "boss", "The Warden"
    default_intent = "defeat the Warden"
    limit_s = 26.0
    DODGE_S = 7.0
    STUN_S = 4.0
    HP = 6

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.hp = self.HP
        self.phase = "dodge"
        self.phase_t = 0.0
        self.volley_t = 0.0
        self.fireballs: list[Fireball] = []
        bx, by = tile_center(TRIGGER_TILES["boss"])
        self.home = (bx, by - TILE * 1.5)
        self.flash = 0.0
        self.arena = pygame.Rect(13 * TILE, 7 * TILE, 6 * TILE, 6 * TILE)

    @property
    def pos(self) -> tuple[float, float]:
        hx, hy = self.home
        if self.phase == "stunned" or self.state != "active":
            return hx, hy
        return hx + 70 * math.sin(self.elapsed * 1.3), hy + 10 * math.sin(self.elapsed * 2.1)

    def begin(self, world: World) -> None:
        super().begin(world)
        world.sealed = True
        bx, by = tile_center(TRIGGER_TILES["boss"])
        world.player.x, world.player.y = bx, by + TILE * 2

    def update(self, dt: float, controls: Controls, world: World) -> None:
        super().update(dt, controls, world)
        self.flash = max(0.0, self.flash - dt)
        self.phase_t += dt
        p = world.player
        if self.phase == "dodge":
            self.volley_t -= dt
            if self.volley_t <= 0:
                self._volley(p)
                self.volley_t = 0.85
            if self.phase_t >= self.DODGE_S:
                self.phase, self.phase_t, self.fireballs = "stunned", 0.0, []
        elif self.phase == "stunned":
            if pygame.K_SPACE in controls.pressed:
                self.hp -= controls.pressed.count(pygame.K_SPACE)
                self.flash = 0.15
                self.burst(*self.pos, theme.BOSS, 8, 140)
            if self.hp <= 0:
                self.phase, self.phase_t = "falling", 0.0
                self.burst(*self.pos, theme.GOLD, 60, 260)
                p.gold += 100
            elif self.phase_t >= self.STUN_S:
                self.phase, self.phase_t = "dodge", self.DODGE_S / 2
        elif self.phase == "falling" and self.phase_t >= 1.6:
            world.sealed = False
            self.finish("you defeated the Warden (+100 gold)")
            return
        for f in self.fireballs:
            f.x += f.vx * dt
            f.y += f.vy * dt
            if math.hypot(f.x - p.x, f.y - p.y) < 18 and self.hurt(p):
                f.x = -999
        self.fireballs = [
            f for f in self.fireballs if self.arena.inflate(40, 40).collidepoint(f.x, f.y)
        ]
        if self.elapsed >= self.limit_s and self.state == "active":
            world.sealed = False
            self.finish("the Warden retreated into the dark")

    def _volley(self, player: Player) -> None:
        x, y = self.pos
        aim = math.atan2(player.y - y, player.x - x)
        spread = self.rng.choice((0.22, 0.3, 0.38))
        for k in (-2, -1, 0, 1, 2):
            a = aim + k * spread
            self.fireballs.append(Fireball(x, y, 175 * math.cos(a), 175 * math.sin(a)))

    def hint(self) -> str:
        if self.phase == "stunned":
            return f"The Warden is stunned: mash SPACE!  ({max(0, self.hp)} left)"
        if self.phase == "falling":
            return "The Warden falls!"
        return "Dodge the fireballs  (arrows / WASD)"

    def draw(self, surf: pygame.Surface, t: float) -> None:
        if self.state == "done" and self.hp <= 0:
            super().draw(surf, t)
            return
        x, y = (round(v) for v in self.pos)
        asleep = self.state == "idle"
        body = theme.BOSS if not self.flash else (255, 255, 255)
        if asleep:
            body = theme.mix(theme.BOSS, theme.BACKGROUND, 0.45)
        if self.phase == "falling":
            body = theme.mix(theme.BOSS, theme.BACKGROUND, min(1.0, self.phase_t / 1.6))
        pygame.draw.ellipse(surf, (10, 8, 16), (x - 30, y + 26, 60, 16))
        pygame.draw.polygon(surf, body, [(x - 30, y + 32), (x + 30, y + 32), (x, y - 34)])
        pygame.draw.circle(surf, body, (x, y - 18), 18)
        eye = theme.BACKGROUND if asleep or self.phase == "stunned" else (255, 90, 60)
        for dx in (-7, 7):
            if self.phase == "stunned":
                pygame.draw.line(surf, eye, (x + dx - 4, y - 22), (x + dx + 4, y - 14), 3)
                pygame.draw.line(surf, eye, (x + dx - 4, y - 14), (x + dx + 4, y - 22), 3)
            else:
                pygame.draw.circle(surf, eye, (x + dx, y - 19), 4 if not asleep else 2)
        if self.state == "active" and self.phase != "falling":
            bar = pygame.Rect(0, 0, 80, 8)
            bar.midbottom = (x, y - 44)
            pygame.draw.rect(surf, theme.BACKGROUND, bar, border_radius=4)
            fill = bar.copy()
            fill.width = round(bar.width * max(0, self.hp) / self.HP)
            pygame.draw.rect(surf, theme.BAD, fill, border_radius=4)
        for f in self.fireballs:
            pygame.draw.circle(surf, (255, 120, 40), (round(f.x), round(f.y)), 9)
            pygame.draw.circle(surf, (255, 220, 140), (round(f.x), round(f.y)), 4)
        super().draw(surf, t)


def make_encounters(seed: int | None) -> dict[str, Encounter]:
    rng = random.Random(seed)
    return {e.name: e for e in (Chest(rng), Trap(rng), Boss(rng))}
