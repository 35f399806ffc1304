"""The live HUD: the player's current emotion and its seven probabilities, faces seen, the link
to the daemon (connection, source, camera, LLM), and the run's hearts, gold and progress."""

from __future__ import annotations

import math

import pygame

from demo_game import theme
from demo_game.charts import draw_probability_bars
from demo_game.sidecar import Sidecar
from demo_game.text_layout import wrap_text
from demo_game.world import EVENTS, Player

TONES = {"good": theme.GOOD, "wait": theme.WARN, "bad": theme.BAD, "off": theme.TEXT_FAINT}
CAMERA_TONES = {"ok": theme.GOOD, "retrying": theme.WARN, "frozen": theme.WARN}


class Hud:
    """Draws into a fixed column on the right of the screen; the panel is rendered once."""

    def __init__(self, rect: pygame.Rect) -> None:
        self.rect = rect
        self._background = theme.vertical_gradient(
            rect.size, theme.mix(theme.PANEL, theme.BOSS, 0.22), theme.PANEL
        )
        pygame.draw.line(self._background, theme.PANEL_EDGE, (0, 0), (0, rect.height), 2)

    def draw(self, surface: pygame.Surface, sidecar: Sidecar, t: float) -> None:
        r = self.rect
        surface.blit(self._background, r.topleft)
        x, y = r.left + 20, r.top + 16
        theme.text(surface, "EMOTION SIDECAR", (x, y), size=22, color=theme.ACCENT, bold=True)
        y += 30

        line, tone = sidecar.connection_text()
        color = TONES[tone]
        pulse = 0.6 + 0.4 * math.sin(t * 5) if tone == "wait" else 1.0
        pygame.draw.circle(surface, theme.mix(theme.PANEL, color, pulse), (x + 6, y + 9), 6)
        for text_line in wrap_text(line, theme.font(20), r.width - 56)[:3]:
            theme.text(surface, text_line, (x + 20, y), size=20, color=theme.TEXT)
            y += 19
        y += 6

        source = sidecar.source_text()
        cam_state, cam_error = sidecar.camera_state()
        if sidecar.enabled and source:
            theme.text(surface, "source", (x, y), size=18, color=theme.TEXT_FAINT)
            theme.text(surface, source, (x + 64, y), size=18, color=theme.TEXT_DIM)
            y += 20
            theme.text(surface, "camera", (x, y), size=18, color=theme.TEXT_FAINT)
            cam_color = CAMERA_TONES.get(cam_state, theme.BAD)
            theme.text(surface, cam_state, (x + 64, y), size=18, color=cam_color)
            if cam_error:
                y += 18
                theme.text(surface, cam_error[:40], (x, y), size=16, color=theme.TEXT_FAINT)
            y += 26
        else:
            y += 46

        latest = sidecar.latest()
        face = latest.primary if latest is not None else None
        pygame.draw.line(surface, theme.PANEL_EDGE, (x, y), (r.right - 20, y), 1)
        y += 12
        if face is not None:
            theme.text(surface, "you look", (x, y), size=18, color=theme.TEXT_FAINT)
            theme.text(
                surface,
                face.label,
                (x, y + 16),
                size=50,
                color=theme.emotion_color(face.label),
                bold=True,
            )
            theme.text(
                surface,
                f"{face.confidence:.0%}",
                (r.right - 20, y + 30),
                size=28,
                color=theme.TEXT_DIM,
                anchor="topright",
            )
        else:
            why = "no face in view" if sidecar.connected else "no live emotions"
            if not sidecar.enabled:
                why = "camera off"
            theme.text(surface, why, (x, y + 26), size=28, color=theme.TEXT_FAINT)
        y += 70
        bars = pygame.Rect(x, y, r.width - 40, 196)
        draw_probability_bars(
            surface,
            bars,
            face.probs if face is not None else None,
            highlight=face.label if face is not None else None,
        )
        y = bars.bottom + 6
        faces = len(latest.faces) if latest is not None else 0
        status = sidecar.status
        fps = f"   daemon {status.fps:.1f} fps" if status is not None and sidecar.connected else ""
        theme.text(surface, f"faces seen: {faces}{fps}", (x, y), size=19, color=theme.TEXT_DIM)
        y += 24
        if status is not None and status.llm:
            llm = status.llm
            state = llm.get("state", "?")
            tone = theme.GOOD if state == "ready" else theme.WARN
            theme.text(surface, "LLM", (x, y), size=18, color=theme.TEXT_FAINT)
            theme.text(
                surface, f"{llm.get('backend', '?')}: {state}", (x + 64, y), size=18, color=tone
            )
            if llm.get("model"):
                model = str(llm["model"])
                model = model if len(model) <= 30 else model[:29] + "..."
                theme.text(surface, model, (x + 64, y + 19), size=18, color=theme.TEXT_DIM)

        hints = r.bottom - 64
        pygame.draw.line(surface, theme.PANEL_EDGE, (x, hints - 10), (r.right - 20, hints - 10), 1)
        nx = theme.key_hint(surface, "arrows", "move", (x, hints), size=17)
        theme.key_hint(
            surface, "C", "camera off" if sidecar.enabled else "camera on", (nx, hints), size=17
        )
        nx = theme.key_hint(surface, "F12", "screenshot", (x, hints + 28), size=17)
        theme.key_hint(surface, "Esc", "quit", (nx, hints + 28), size=17)


def draw_status_bar(surface: pygame.Surface, player: Player, done: int, t: float) -> None:
    """Hearts, gold and progress in the top-left corner of the play area."""
    layer = pygame.Surface((300, 40), pygame.SRCALPHA)
    pygame.draw.rect(layer, (*theme.BACKGROUND, 170), layer.get_rect(), border_radius=10)
    surface.blit(layer, (10, 10))
    for i in range(3):
        cx, cy = 32 + i * 26, 30
        color = theme.HEART if i < player.hearts else theme.PANEL_EDGE
        pygame.draw.circle(surface, color, (cx - 5, cy - 3), 6)
        pygame.draw.circle(surface, color, (cx + 5, cy - 3), 6)
        pygame.draw.polygon(surface, color, [(cx - 11, cy - 1), (cx + 11, cy - 1), (cx, cy + 10)])
    pygame.draw.circle(surface, theme.GOLD, (122, 30), 8)
    pygame.draw.circle(surface, theme.mix(theme.GOLD, theme.BACKGROUND, 0.4), (122, 30), 8, 2)
    theme.text(surface, str(player.gold), (136, 30), size=24, color=theme.TEXT, anchor="midleft")
    theme.text(
        surface,
        f"events {done}/{len(EVENTS)}",
        (296, 30),
        size=22,
        color=theme.TEXT_DIM,
        anchor="midright",
    )


def draw_hint(surface: pygame.Surface, area: pygame.Rect, message: str) -> None:
    """The instruction line at the bottom of the play area."""
    if not message:
        return
    f = theme.font(26)
    w = f.size(message)[0] + 36
    box = pygame.Rect(0, 0, w, 40)
    box.midbottom = (area.centerx, area.bottom - 14)
    layer = pygame.Surface(box.size, pygame.SRCALPHA)
    pygame.draw.rect(layer, (*theme.BACKGROUND, 200), layer.get_rect(), border_radius=12)
    surface.blit(layer, box.topleft)
    theme.text(surface, message, box.center, size=26, color=theme.TEXT, anchor="center")
