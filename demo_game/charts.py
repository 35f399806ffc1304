"""Small charts of an analysis summary: the share of each emotion and the emotion curve.

Both accept the summary as the daemon sends it (PROTOCOL.md, "Analysis fields"). A curve point's
``probs`` may be a list in class order (the wire format) or a map class -> probability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pygame

from demo_game import theme
from game_sdk import CLASSES


def curve_series(curve: Sequence[Mapping[str, Any]]) -> tuple[list[float], dict[str, list[float]]]:
    """Split ``summary["curve"]`` into times and one probability series per class."""
    times: list[float] = []
    series: dict[str, list[float]] = {name: [] for name in CLASSES}
    for point in curve:
        probs = point.get("probs")
        if isinstance(probs, Mapping):
            values = [float(probs.get(name, 0.0)) for name in CLASSES]
        elif isinstance(probs, Sequence) and len(probs) == len(CLASSES):
            values = [float(p) for p in probs]
        else:
            continue  # a malformed point is skipped, not fatal
        times.append(float(point.get("t", 0.0)))
        for name, value in zip(CLASSES, values, strict=True):
            series[name].append(value)
    return times, series


def draw_share_bars(
    surface: pygame.Surface,
    rect: pygame.Rect,
    share: Mapping[str, float],
    *,
    title: str = "share of the window",
) -> None:
    """Horizontal bars, one per class, of the fraction of time each emotion was on top."""
    theme.text(surface, title, (rect.left, rect.top), size=20, color=theme.TEXT_DIM)
    top = rect.top + 24
    row = (rect.height - 24) / len(CLASSES)
    label_w = 78
    bar_w = rect.width - label_w - 52
    for i, name in enumerate(CLASSES):
        value = max(0.0, min(1.0, float(share.get(name, 0.0))))
        y = round(top + i * row)
        h = max(6, round(row * 0.62))
        theme.text(
            surface, name, (rect.left, y + h // 2), size=20, color=theme.TEXT, anchor="midleft"
        )
        track = pygame.Rect(rect.left + label_w, y, bar_w, h)
        pygame.draw.rect(surface, theme.BACKGROUND, track, border_radius=4)
        if value > 0:
            fill = track.copy()
            fill.width = max(3, round(bar_w * value))
            pygame.draw.rect(surface, theme.emotion_color(name), fill, border_radius=4)
        theme.text(
            surface,
            f"{value:.0%}",
            (track.right + 6, y + h // 2),
            size=20,
            color=theme.TEXT_DIM,
            anchor="midleft",
        )


def draw_curve(
    surface: pygame.Surface,
    rect: pygame.Rect,
    curve: Sequence[Mapping[str, Any]],
    *,
    duration_s: float | None = None,
    title: str = "emotions over the window",
) -> None:
    """One line per emotion: the player's probabilities from the intent's begin to its end."""
    theme.text(surface, title, (rect.left, rect.top), size=20, color=theme.TEXT_DIM)
    plot = pygame.Rect(rect.left + 34, rect.top + 26, rect.width - 40, rect.height - 50)
    pygame.draw.rect(surface, theme.BACKGROUND, plot)
    for frac in (0.0, 0.5, 1.0):
        y = plot.bottom - round(plot.height * frac)
        pygame.draw.line(surface, theme.PANEL_EDGE, (plot.left, y), (plot.right, y), 1)
        theme.text(
            surface,
            f"{frac:.1f}",
            (plot.left - 4, y),
            size=16,
            color=theme.TEXT_FAINT,
            anchor="midright",
        )
    times, series = curve_series(curve)
    end = max(duration_s or 0.0, times[-1] if times else 0.0, 1e-6)
    theme.text(surface, "0 s", (plot.left, plot.bottom + 4), size=16, color=theme.TEXT_FAINT)
    theme.text(
        surface,
        f"{end:.1f} s",
        (plot.right, plot.bottom + 4),
        size=16,
        color=theme.TEXT_FAINT,
        anchor="topright",
    )
    if len(times) < 2:
        theme.text(
            surface,
            "no face in this window" if not times else "one sample only",
            plot.center,
            size=20,
            color=theme.TEXT_DIM,
            anchor="center",
        )
        return
    for name in CLASSES:
        points = [
            (plot.left + round(plot.width * t / end), plot.bottom - round(plot.height * p))
            for t, p in zip(times, series[name], strict=True)
        ]
        pygame.draw.lines(surface, theme.emotion_color(name), False, points, 2)


def draw_probability_bars(
    surface: pygame.Surface,
    rect: pygame.Rect,
    probs: Mapping[str, float] | None,
    *,
    highlight: str | None,
) -> None:
    """The live HUD's seven bars (empty tracks when there is no face)."""
    row = rect.height / len(CLASSES)
    label_w = 74
    bar_w = rect.width - label_w - 44
    for i, name in enumerate(CLASSES):
        y = round(rect.top + i * row)
        h = max(6, round(row * 0.6))
        on = name == highlight
        theme.text(
            surface,
            name,
            (rect.left, y + h // 2),
            size=19,
            color=theme.TEXT if on else theme.TEXT_DIM,
            bold=on,
            anchor="midleft",
        )
        track = pygame.Rect(rect.left + label_w, y, bar_w, h)
        pygame.draw.rect(surface, theme.BACKGROUND, track, border_radius=3)
        if probs is None:
            continue
        value = max(0.0, min(1.0, float(probs.get(name, 0.0))))
        if value > 0.005:
            fill = track.copy()
            fill.width = max(2, round(bar_w * value))
            color = theme.emotion_color(name)
            pygame.draw.rect(
                surface, color if on else theme.mix(color, theme.PANEL, 0.35), fill, border_radius=3
            )
        theme.text(
            surface,
            f"{round(value * 100):d}",
            (track.right + 5, y + h // 2),
            size=18,
            color=theme.TEXT_DIM,
            anchor="midleft",
        )
