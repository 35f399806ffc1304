"""The demo's look in one place: palette, emotion colours, fonts and a few drawing primitives.

Every colour the game draws comes from here, so the scenes stay visually coherent. Fonts are
pygame's bundled default font (always present, no system lookup); a system font is the fallback
only when that one cannot be loaded.
"""

from __future__ import annotations

import logging

import pygame

log = logging.getLogger(__name__)

Color = tuple[int, int, int]

# Night-dungeon palette: deep violet shadows, warm torchlight, parchment text.
BACKGROUND: Color = (18, 16, 26)
PANEL: Color = (30, 27, 43)
PANEL_EDGE: Color = (74, 66, 100)
PANEL_ALPHA = 225
TEXT: Color = (236, 230, 216)
TEXT_DIM: Color = (154, 147, 168)
TEXT_FAINT: Color = (100, 95, 115)
ACCENT: Color = (242, 193, 78)  # torch gold: titles, focus, the player's gold
GOOD: Color = (108, 192, 112)
BAD: Color = (228, 87, 46)
INFO: Color = (78, 168, 222)
WARN: Color = (240, 160, 60)

FLOOR: Color = (58, 54, 70)
FLOOR_ALT: Color = (52, 48, 63)
WALL: Color = (34, 30, 46)
WALL_TOP: Color = (84, 76, 104)
MOSS: Color = (62, 92, 66)
SPIKE: Color = (190, 196, 210)
TORCH: Color = (255, 170, 70)
PLAYER: Color = (120, 200, 255)
PLAYER_CLOAK: Color = (44, 96, 160)
BOSS: Color = (124, 60, 170)
GOLD: Color = ACCENT
HEART: Color = (226, 62, 84)

# One colour per emotion class, in the protocol's class order.
EMOTION_COLORS: dict[str, Color] = {
    "angry": (228, 87, 46),
    "disgust": (127, 176, 105),
    "fear": (155, 93, 229),
    "happy": (242, 193, 78),
    "neutral": (160, 164, 184),
    "sad": (78, 168, 222),
    "surprise": (247, 143, 179),
}

_fonts: dict[tuple[int, bool], pygame.font.Font] = {}


def font(size: int, bold: bool = False) -> pygame.font.Font:
    """A cached font of ``size`` pixels (pygame's bundled default font; SysFont as fallback)."""
    key = (size, bold)
    cached = _fonts.get(key)
    if cached is not None:
        return cached
    try:
        made = pygame.font.Font(None, size)
    except (OSError, RuntimeError):  # the bundled font missing from a stripped install
        log.warning("pygame's default font is unavailable; using a system font")
        made = pygame.font.SysFont("dejavusans,arial,sans", int(size * 0.75))
    made.set_bold(bold)
    _fonts[key] = made
    return made


def emotion_color(name: str) -> Color:
    return EMOTION_COLORS.get(name, TEXT_DIM)


def mix(a: Color, b: Color, t: float) -> Color:
    """Linear blend of two colours, ``t`` in [0, 1] (0 gives ``a``)."""
    t = max(0.0, min(1.0, t))
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def panel(
    surface: pygame.Surface,
    rect: pygame.Rect,
    *,
    alpha: int = PANEL_ALPHA,
    edge: Color = PANEL_EDGE,
    radius: int = 10,
) -> None:
    """A translucent rounded panel with a thin edge."""
    layer = pygame.Surface(rect.size, pygame.SRCALPHA)
    pygame.draw.rect(layer, (*PANEL, alpha), layer.get_rect(), border_radius=radius)
    pygame.draw.rect(layer, (*edge, 255), layer.get_rect(), width=2, border_radius=radius)
    surface.blit(layer, rect.topleft)


def text(
    surface: pygame.Surface,
    content: str,
    pos: tuple[int, int],
    *,
    size: int = 24,
    color: Color = TEXT,
    bold: bool = False,
    anchor: str = "topleft",
    shadow: bool = False,
) -> pygame.Rect:
    """Draw one line of text; ``anchor`` is a ``pygame.Rect`` attribute name. Returns its rect."""
    f = font(size, bold)
    image = f.render(content, True, color)
    rect = image.get_rect(**{anchor: pos})
    if shadow:
        surface.blit(f.render(content, True, (0, 0, 0)), rect.move(2, 2))
    surface.blit(image, rect)
    return rect


def vertical_gradient(size: tuple[int, int], top: Color, bottom: Color) -> pygame.Surface:
    """A surface filled with a top-to-bottom gradient (built once, blitted often)."""
    w, h = size
    surf = pygame.Surface((w, h))
    for y in range(h):
        pygame.draw.line(surf, mix(top, bottom, y / max(1, h - 1)), (0, y), (w, y))
    return surf


def key_hint(
    surface: pygame.Surface, key: str, label: str, pos: tuple[int, int], size: int = 20
) -> int:
    """Draw ``[KEY] label`` as a keycap and a caption; returns the x after it."""
    f = font(size, True)
    cap = f.render(key, True, BACKGROUND)
    cap_rect = pygame.Rect(pos[0], pos[1], cap.get_width() + 12, cap.get_height() + 6)
    pygame.draw.rect(surface, TEXT_DIM, cap_rect, border_radius=5)
    surface.blit(cap, cap.get_rect(center=cap_rect.center))
    r = text(
        surface,
        label,
        (cap_rect.right + 6, cap_rect.centery),
        size=size,
        color=TEXT_DIM,
        anchor="midleft",
    )
    return r.right + 18
