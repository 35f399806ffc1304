"""Word wrapping and a scrollable block of wrapped text (the LLM's prose can be long)."""

from __future__ import annotations

import pygame

from demo_game import theme


def wrap_text(content: str, font: pygame.font.Font, width: int) -> list[str]:
    """Split ``content`` into lines no wider than ``width`` pixels.

    Paragraph breaks (newlines) are kept as empty lines; a word wider than ``width`` is cut by
    characters so nothing is lost off the edge.
    """
    lines: list[str] = []
    for paragraph in content.replace("\r\n", "\n").split("\n"):
        words = paragraph.split()
        if not words:
            lines.append("")
            continue
        line = ""
        for word in words:
            candidate = f"{line} {word}" if line else word
            if font.size(candidate)[0] <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while font.size(word)[0] > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and font.size(word[:cut])[0] > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


class ScrollText:
    """Wrapped text in a fixed rectangle, scrolled by lines (wheel, arrows, page keys)."""

    def __init__(
        self,
        content: str,
        width: int,
        *,
        size: int = 24,
        color: theme.Color = theme.TEXT,
        line_gap: int = 4,
    ) -> None:
        self.font = theme.font(size)
        self.color = color
        self.line_height = self.font.get_linesize() + line_gap
        self.lines = wrap_text(content, self.font, width)
        self.offset = 0  # index of the first visible line

    def visible_lines(self, height: int) -> int:
        return max(1, height // self.line_height)

    def max_offset(self, height: int) -> int:
        return max(0, len(self.lines) - self.visible_lines(height))

    def scroll(self, lines: int, height: int) -> None:
        self.offset = max(0, min(self.max_offset(height), self.offset + lines))

    def draw(self, surface: pygame.Surface, rect: pygame.Rect) -> None:
        shown = self.visible_lines(rect.height)
        y = rect.top
        for line in self.lines[self.offset : self.offset + shown]:
            if line:
                surface.blit(self.font.render(line, True, self.color), (rect.left, y))
            y += self.line_height
        if self.max_offset(rect.height):
            self._draw_scrollbar(surface, rect, shown)

    def _draw_scrollbar(self, surface: pygame.Surface, rect: pygame.Rect, shown: int) -> None:
        track = pygame.Rect(rect.right + 6, rect.top, 5, rect.height)
        pygame.draw.rect(surface, theme.PANEL_EDGE, track, border_radius=3)
        total = len(self.lines)
        thumb_h = max(18, round(track.height * shown / total))
        span = track.height - thumb_h
        thumb_y = track.top + round(span * self.offset / max(1, total - shown))
        pygame.draw.rect(surface, theme.ACCENT, (track.left, thumb_y, 5, thumb_h), border_radius=3)
