"""The dungeon: its tile map, the player's movement and collisions, and drawing the static scene.

The map is plain text so the layout is readable at a glance. Gates (``1``, ``2``) are walls until
the event before them has started, which makes the run linear: start room, the chest, the spike
hall (the trap), the Warden's arena (the boss).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import pygame

from demo_game import theme

TILE = 48
MAP = (
    "####################",
    "#....#........######",
    "#....#........######",
    "#.@......C....######",
    "#....#........######",
    "#....#........######",
    "######...1..########",
    "######...T..#......#",
    "######......#......#",
    "######.^^^^^2...B..#",
    "######.^^^^^2......#",
    "######......#......#",
    "######......#......#",
    "######......########",
    "####################",
)
COLS, ROWS = len(MAP[0]), len(MAP)
EVENTS = ("chest", "trap", "boss")  # in the order the gates make the player meet them
_TRIGGERS = {"C": "chest", "T": "trap", "B": "boss"}
_GATES = {"1": "chest", "2": "trap"}  # gate -> the event that opens it once started
PLAYER_SPEED = 230.0  # pixels per second
PLAYER_RADIUS = 14

Tile = tuple[int, int]


def tile_center(tile: Tile) -> tuple[float, float]:
    return (tile[0] * TILE + TILE / 2, tile[1] * TILE + TILE / 2)


def _find(char: str) -> list[Tile]:
    return [(x, y) for y, row in enumerate(MAP) for x, c in enumerate(row) if c == char]


START: Tile = _find("@")[0]
TRIGGER_TILES: dict[str, Tile] = {name: _find(c)[0] for c, name in _TRIGGERS.items()}
SPIKE_TILES: list[Tile] = _find("^")
GATE_TILES: dict[str, list[Tile]] = {event: _find(c) for c, event in _GATES.items()}


@dataclass
class Player:
    x: float
    y: float
    facing: float = 0.0  # radians, for the little eye
    hearts: int = 3
    gold: int = 0
    invulnerable: float = 0.0  # seconds left

    @property
    def tile(self) -> Tile:
        return (int(self.x // TILE), int(self.y // TILE))

    def rect(self) -> pygame.Rect:
        r = PLAYER_RADIUS
        return pygame.Rect(round(self.x - r), round(self.y - r), 2 * r, 2 * r)


class World:
    """Walls, gates, the player and which events have started; no pygame display needed."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.sealed = False  # the boss fight closes every gate behind the player
        x, y = tile_center(START)
        self.player = Player(x, y)

    def solid(self, tile: Tile) -> bool:
        x, y = tile
        if not (0 <= x < COLS and 0 <= y < ROWS):
            return True
        c = MAP[y][x]
        if c == "#":
            return True
        return c in _GATES and (self.sealed or _GATES[c] not in self.started)

    def move(self, dx: float, dy: float, dt: float) -> None:
        """Move the player by a direction (each axis in -1..1), sliding along walls."""
        length = math.hypot(dx, dy)
        if length == 0:
            return
        p = self.player
        p.facing = math.atan2(dy, dx)
        step = PLAYER_SPEED * dt / length
        for axis, delta in ((0, dx * step), (1, dy * step)):
            if delta == 0:
                continue
            old = (p.x, p.y)
            if axis == 0:
                p.x += delta
            else:
                p.y += delta
            if any(self.solid(t) for t in self._touched(p.rect())):
                p.x, p.y = old

    @staticmethod
    def _touched(rect: pygame.Rect) -> Iterable[Tile]:
        for ty in range(rect.top // TILE, (rect.bottom - 1) // TILE + 1):
            for tx in range(rect.left // TILE, (rect.right - 1) // TILE + 1):
                yield (tx, ty)

    def trigger_here(self) -> str | None:
        """The event whose trigger the player touches, if it has not started yet."""
        p = self.player
        for name, tile in TRIGGER_TILES.items():
            cx, cy = tile_center(tile)
            if name not in self.started and math.hypot(p.x - cx, p.y - cy) < TILE * 0.7:
                return name
        return None

    def next_event(self) -> str | None:
        return next((name for name in EVENTS if name not in self.started), None)

    def path(self, goal: Tile) -> list[Tile]:
        """Tiles from the player's tile to ``goal`` (breadth-first; empty when unreachable)."""
        start = self.player.tile
        came: dict[Tile, Tile | None] = {start: None}
        queue = deque([start])
        while queue:
            cur = queue.popleft()
            if cur == goal:
                break
            x, y = cur
            for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if nxt not in came and not self.solid(nxt):
                    came[nxt] = cur
                    queue.append(nxt)
        if goal not in came:
            return []
        out: list[Tile] = []
        node: Tile | None = goal
        while node is not None:
            out.append(node)
            node = came[node]
        return out[::-1]


def render_floor(size: tuple[int, int]) -> pygame.Surface:
    """The static dungeon (floor, walls, moss, cracks), drawn once at start."""
    surf = pygame.Surface(size)
    surf.fill(theme.BACKGROUND)
    for y, row in enumerate(MAP):
        for x, c in enumerate(row):
            rect = pygame.Rect(x * TILE, y * TILE, TILE, TILE)
            if c == "#":
                _draw_wall(surf, rect, x, y)
            else:
                shade = theme.FLOOR if (x + y) % 2 else theme.FLOOR_ALT
                pygame.draw.rect(surf, shade, rect)
                pygame.draw.rect(surf, theme.mix(shade, theme.BACKGROUND, 0.35), rect, 1)
                if (x * 7 + y * 13) % 11 == 0:  # a few cracks, deterministic
                    a = (rect.left + 10, rect.top + 14)
                    b = (rect.left + 22, rect.top + 26)
                    c2 = (rect.left + 19, rect.top + 38)
                    pygame.draw.lines(surf, theme.FLOOR_ALT, False, (a, b, c2), 2)
    for x, y in SPIKE_TILES:
        rect = pygame.Rect(x * TILE, y * TILE, TILE, TILE)
        pygame.draw.rect(surf, theme.mix(theme.FLOOR, theme.BACKGROUND, 0.5), rect.inflate(-4, -4))
        for i in range(3):
            for j in range(3):
                hole = (rect.left + 10 + i * 14, rect.top + 10 + j * 14)
                pygame.draw.circle(surf, theme.BACKGROUND, hole, 3)
    return surf


def _draw_wall(surf: pygame.Surface, rect: pygame.Rect, x: int, y: int) -> None:
    pygame.draw.rect(surf, theme.WALL, rect)
    below_open = y + 1 < ROWS and MAP[y + 1][x] != "#"
    if below_open:  # the visible face of a wall above a floor tile
        face = pygame.Rect(rect.left, rect.top + TILE // 2, TILE, TILE // 2)
        pygame.draw.rect(surf, theme.WALL_TOP, face)
        for row in range(2):
            yy = face.top + row * (TILE // 4)
            pygame.draw.line(surf, theme.WALL, (face.left, yy), (face.right, yy), 2)
            off = 0 if row % 2 else TILE // 2
            for xx in range(face.left + off, face.right, TILE // 2 + 1):
                pygame.draw.line(surf, theme.WALL, (xx, yy), (xx, yy + TILE // 4), 2)
        if (x + y) % 3 == 0:
            pygame.draw.circle(surf, theme.MOSS, (face.left + 12, face.bottom - 4), 6)


TORCHES: list[tuple[int, int]] = [
    (x * TILE + TILE // 2, y * TILE + TILE // 2 + 6)
    for (x, y) in ((2, 0), (9, 0), (12, 0), (15, 6), (8, 6), (18, 6))
]


def draw_gates(surf: pygame.Surface, world: World, t: float) -> None:
    for event, tiles in GATE_TILES.items():
        if event in world.started and not world.sealed:
            continue
        for x, y in tiles:
            rect = pygame.Rect(x * TILE, y * TILE, TILE, TILE)
            pygame.draw.rect(surf, theme.WALL, rect)
            for i in range(4):
                bx = rect.left + 6 + i * 12
                pygame.draw.line(surf, (120, 110, 140), (bx, rect.top), (bx, rect.bottom), 4)
            pygame.draw.line(surf, (120, 110, 140), rect.midleft, rect.midright, 3)


def draw_torches(surf: pygame.Surface, glow: pygame.Surface, t: float) -> None:
    for i, (x, y) in enumerate(TORCHES):
        flicker = 0.75 + 0.25 * math.sin(t * 9.0 + i * 1.7) * math.sin(t * 3.1 + i)
        glow.set_alpha(round(110 * flicker))
        surf.blit(glow, glow.get_rect(center=(x, y)), special_flags=pygame.BLEND_RGB_ADD)
        pygame.draw.rect(surf, (90, 60, 40), (x - 3, y - 2, 6, 14))
        flame_h = 9 + 3 * flicker
        pygame.draw.ellipse(surf, theme.TORCH, (x - 5, y - 2 - flame_h, 10, flame_h + 2))
        pygame.draw.ellipse(surf, (255, 235, 170), (x - 2, y - 2 - flame_h / 2, 4, flame_h / 2))


def radial_glow(radius: int, color: theme.Color) -> pygame.Surface:
    """A soft disc that fades to black at the edge (for additive light)."""
    surf = pygame.Surface((radius * 2, radius * 2))
    for r in range(radius, 0, -2):
        k = (1 - r / radius) ** 1.6
        pygame.draw.circle(surf, theme.mix((0, 0, 0), color, k), (radius, radius), r)
    return surf


def draw_player(surf: pygame.Surface, player: Player, t: float) -> None:
    x, y = round(player.x), round(player.y)
    if player.invulnerable > 0 and int(t * 12) % 2:
        return  # blinking after a hit
    pygame.draw.ellipse(surf, (10, 8, 16), (x - 13, y + 8, 26, 10))
    bob = round(2 * math.sin(t * 6))
    pygame.draw.circle(surf, theme.PLAYER_CLOAK, (x, y + 2 + bob), PLAYER_RADIUS)
    pygame.draw.circle(surf, theme.PLAYER, (x, y - 4 + bob), 10)
    ex = x + round(5 * math.cos(player.facing))
    ey = y - 5 + bob + round(3 * math.sin(player.facing))
    pygame.draw.circle(surf, theme.BACKGROUND, (ex, ey), 3)


def draw_trigger_marks(surf: pygame.Surface, world: World, t: float) -> None:
    """A pulsing ring on the next event's tile, so the player knows where to go."""
    name = world.next_event()
    if name is None:
        return
    cx, cy = tile_center(TRIGGER_TILES[name])
    pulse = 0.5 + 0.5 * math.sin(t * 4)
    ring = round(20 + 6 * pulse)
    color = theme.mix(theme.ACCENT, theme.FLOOR, 0.5 - 0.4 * pulse)
    pygame.draw.circle(surf, color, (round(cx), round(cy)), ring, 2)
