"""A one-line text input box: typing (``TEXTINPUT``), backspace, enter, a default answer."""

from __future__ import annotations

import pygame

from demo_game import theme

MAX_CHARS = 200  # far under the protocol's 1000-character intent limit, and fits the box


class TextBox:
    """Collects a line of text from keyboard events.

    ``handle`` returns True once the player pressed Enter; ``value`` is then what they typed, or
    ``default`` when they typed nothing (blank answers are never sent as an intent).
    """

    def __init__(self, default: str, *, max_chars: int = MAX_CHARS) -> None:
        self.default = default
        self.max_chars = max_chars
        self.text = ""
        self.submitted = False
        self._blink = 0.0

    @property
    def value(self) -> str:
        return self.text.strip() or self.default

    def handle(self, event: pygame.event.Event) -> bool:
        if self.submitted:
            return True
        if event.type == pygame.TEXTINPUT:
            printable = "".join(ch for ch in event.text if ch.isprintable())
            self.text = (self.text + printable)[: self.max_chars]
            self._blink = 0.0
        elif event.type == pygame.KEYDOWN:
            if event.key == pygame.K_BACKSPACE:
                if event.mod & pygame.KMOD_CTRL:  # ctrl+backspace: delete the last word
                    self.text = self.text.rstrip().rpartition(" ")[0]
                else:
                    self.text = self.text[:-1]
                self._blink = 0.0
            elif event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                self.submitted = True
        return self.submitted

    def update(self, dt: float) -> None:
        self._blink = (self._blink + dt) % 1.0

    def draw(self, surface: pygame.Surface, rect: pygame.Rect) -> None:
        pygame.draw.rect(surface, theme.BACKGROUND, rect, border_radius=8)
        pygame.draw.rect(surface, theme.ACCENT, rect, width=2, border_radius=8)
        f = theme.font(30)
        inner = rect.inflate(-24, 0)
        if self.text:
            image = f.render(self.text, True, theme.TEXT)
        else:
            image = f.render(self.default, True, theme.TEXT_FAINT)
        # Keep the end of a long answer (where the caret is) in view.
        shift = max(0, image.get_width() - inner.width + 4)
        clip = surface.get_clip()
        surface.set_clip(inner)
        y = rect.centery - image.get_height() // 2
        surface.blit(image, (inner.left - shift, y))
        surface.set_clip(clip)
        if self._blink < 0.55:
            caret_x = inner.left - shift + (image.get_width() if self.text else 0) + 2
            caret_x = min(caret_x, inner.right - 2)
            pygame.draw.line(
                surface, theme.ACCENT, (caret_x, rect.top + 10), (caret_x, rect.bottom - 10), 2
            )
