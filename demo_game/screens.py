"""Full-screen and overlay screens: consent, the intent prompt, waiting, the analysis, the end."""

from __future__ import annotations

import math

import pygame

from demo_game import theme
from demo_game.charts import draw_curve, draw_share_bars
from demo_game.text_layout import ScrollText, wrap_text
from demo_game.textbox import TextBox
from game_sdk import Analysis

PROMPT = "What are you about to do? "

CONSENT_LINES = (
    "This game reads your facial expressions through your webcam, to show how a game",
    "can react to what you feel.",
    "",
    "What is read: your face, turned into 7 numbers (angry, disgust, fear, happy, neutral,",
    "sad, surprise) many times a second, and the answers you type before each event.",
    "",
    "Where it goes: nowhere. Camera frames stay in the emotiond process on this machine;",
    "they are never saved or sent. Only the numbers and your answers reach the local",
    "language model (Ollama, if you run it) that writes each analysis.",
    "",
    "How to stop: press C at any time to turn the camera off (the game stops the daemon",
    "it started), or Esc to quit. Without a webcam the bundled sample faces are used.",
)

REASONS = {
    "ollama_unreachable": "Ollama is not running (start it with `ollama serve`)",
    "model_missing": "the model is not pulled (`ollama pull mistral`)",
    "timeout": "the language model took too long",
    "llm_error": "the language model failed",
    "invalid_response": "the model's answer was not in the expected shape",
    "no_llm": "no language model is configured (emotiond --llm none)",
    "no_frames": "the camera gave no frame during the event",
}


def dim(surface: pygame.Surface, alpha: int = 150) -> None:
    veil = pygame.Surface(surface.get_size(), pygame.SRCALPHA)
    veil.fill((*theme.BACKGROUND, alpha))
    surface.blit(veil, (0, 0))


def draw_consent(surface: pygame.Surface, background: pygame.Surface, t: float) -> None:
    surface.blit(background, (0, 0))
    w, h = surface.get_size()
    box = pygame.Rect(0, 0, 900, 560)
    box.center = (w // 2, h // 2)
    theme.panel(surface, box, radius=16)
    eye = (box.left + 70, box.top + 62)
    blink = abs(math.sin(t * 1.3)) > 0.05
    pygame.draw.ellipse(surface, theme.ACCENT, (eye[0] - 30, eye[1] - 16, 60, 32), 3)
    if blink:
        pygame.draw.circle(surface, theme.ACCENT, eye, 9)
    theme.text(
        surface, "Before we start: your camera", (box.left + 120, box.top + 40), size=44, bold=True
    )
    y = box.top + 112
    for line in CONSENT_LINES:
        if line:
            theme.text(surface, line, (box.left + 50, y), size=25, color=theme.TEXT)
        y += 27 if line else 14
    y = box.bottom - 70
    nx = theme.key_hint(surface, "Y", "turn the camera on and play", (box.left + 50, y), size=26)
    theme.key_hint(surface, "N", "play without the camera", (nx + 20, y), size=26)


def draw_prompt(
    surface: pygame.Surface, area: pygame.Rect, title: str, box: TextBox, camera: bool
) -> None:
    panel = pygame.Rect(0, 0, 760, 250)
    panel.center = area.center
    theme.panel(surface, panel, radius=14, edge=theme.ACCENT)
    theme.text(
        surface,
        title.upper(),
        (panel.left + 30, panel.top + 22),
        size=22,
        color=theme.ACCENT,
        bold=True,
    )
    theme.text(surface, PROMPT, (panel.left + 30, panel.top + 50), size=40, color=theme.TEXT)
    box.draw(surface, pygame.Rect(panel.left + 30, panel.top + 100, panel.width - 60, 56))
    note = (
        "Enter to begin. Your answer and your emotions during the event go to your local daemon."
        if camera
        else "Enter to begin. (Camera off: nothing is recorded or analysed.)"
    )
    theme.text(surface, note, (panel.left + 30, panel.top + 180), size=21, color=theme.TEXT_DIM)


def draw_waiting(
    surface: pygame.Surface, area: pygame.Rect, t: float, waited: float, intent: str
) -> None:
    panel = pygame.Rect(0, 0, 640, 220)
    panel.center = area.center
    theme.panel(surface, panel, radius=14)
    c = (panel.left + 70, panel.centery - 10)
    for i in range(10):
        a = t * 5 + i * math.tau / 10
        k = (i + 1) / 10
        pos = (c[0] + round(24 * math.cos(a)), c[1] + round(24 * math.sin(a)))
        pygame.draw.circle(surface, theme.mix(theme.PANEL, theme.ACCENT, k), pos, 2 + round(3 * k))
    theme.text(
        surface, "Analysis on its way...", (panel.left + 130, panel.top + 40), size=38, bold=True
    )
    shown = intent if len(intent) < 46 else intent[:45] + "..."
    theme.text(
        surface,
        f"you said: \u201c{shown}\u201d",
        (panel.left + 130, panel.top + 88),
        size=24,
        color=theme.TEXT_DIM,
    )
    theme.text(
        surface,
        f"the daemon is reading your face from that event ({waited:.0f} s)",
        (panel.left + 130, panel.top + 118),
        size=22,
        color=theme.TEXT_FAINT,
    )
    theme.key_hint(
        surface,
        "Enter",
        "keep playing; it pops up when ready",
        (panel.left + 130, panel.bottom - 52),
        size=22,
    )


def backend_line(analysis: Analysis) -> tuple[str, theme.Color]:
    """Which backend answered, or why there is no LLM text."""
    if analysis.status == "ok":
        model = f" ({analysis.model})" if analysis.model else ""
        ms = analysis.timings.get("llm_ms")
        took = "" if ms is None else f" in {ms:.0f} ms" if ms < 1000 else f" in {ms / 1000:.1f} s"
        return f"answered by {analysis.backend or 'an LLM'}{model}{took}", theme.GOOD
    reason = analysis.reason or "unknown"
    why = REASONS.get(reason, reason)
    label = "summary only" if analysis.status == "summary_only" else "no analysis"
    return f"{label}: {why}  [{reason}]", theme.WARN


class ResultPanel:
    """The analysis of one event: the LLM's words, the summary as charts, the backend."""

    def __init__(self, analysis: Analysis, screen: pygame.Rect) -> None:
        self.analysis = analysis
        self.rect = screen.inflate(-80, -60)
        self.text_rect = pygame.Rect(
            self.rect.left + 30, self.rect.top + 150, 560, self.rect.height - 262
        )
        s = analysis.structured or {}
        words = analysis.text or ""
        if not words:
            words = self._summary_words()
        self.body = ScrollText(words, self.text_rect.width, size=25)
        self.verdict = str(s.get("verdict") or "")
        self.alignment = str(s.get("alignment") or "")
        self.suggestion = str(s.get("suggestion") or "")

    def _summary_words(self) -> str:
        s = self.analysis.summary
        dominant = s.get("dominant")
        parts = ["The language model did not answer, but the numbers did."]
        if dominant:
            parts.append(
                f"Your face was mostly {dominant} during these {s.get('duration_s', 0):.1f} s."
            )
        trend = s.get("valence_trend")
        if isinstance(trend, (int, float)):
            way = "brightened" if trend > 0.01 else "darkened" if trend < -0.01 else "held steady"
            parts.append(f"Your mood {way} as the event went on.")
        if not s.get("faces_seen"):
            parts.append("No face was seen in this window.")
        return " ".join(parts)

    def scroll(self, lines: int) -> None:
        self.body.scroll(lines, self.text_rect.height)

    def draw(self, surface: pygame.Surface) -> None:
        dim(surface, 170)
        r = self.rect
        theme.panel(surface, r, radius=16, alpha=240)
        a = self.analysis
        theme.text(
            surface,
            "WHAT YOUR FACE SAID",
            (r.left + 30, r.top + 22),
            size=22,
            color=theme.ACCENT,
            bold=True,
        )
        intent = a.intent if len(a.intent) < 60 else a.intent[:59] + "..."
        theme.text(surface, f"\u201c{intent}\u201d", (r.left + 30, r.top + 50), size=38)
        chip_y = r.top + 100
        x = r.left + 30
        if self.alignment:
            color = {"aligned": theme.GOOD, "mixed": theme.WARN, "misaligned": theme.BAD}.get(
                self.alignment, theme.INFO
            )
            chip = theme.font(22, True).render(self.alignment.upper(), True, theme.BACKGROUND)
            box = pygame.Rect(x, chip_y, chip.get_width() + 20, 30)
            pygame.draw.rect(surface, color, box, border_radius=15)
            surface.blit(chip, chip.get_rect(center=box.center))
            x = box.right + 12
        if self.verdict:
            lines = wrap_text(self.verdict, theme.font(24), r.left + 600 - x)
            line = lines[0] if len(lines) == 1 else lines[0][:-3].rstrip() + "..."
            theme.text(surface, line, (x, chip_y + 15), size=24, color=theme.TEXT, anchor="midleft")
        elif not a.text:
            theme.text(
                surface,
                "summary of your emotions",
                (x, chip_y + 15),
                size=24,
                color=theme.TEXT_DIM,
                anchor="midleft",
            )
        self.body.draw(surface, self.text_rect)
        if self.suggestion:
            sugg = wrap_text("Tip: " + self.suggestion, theme.font(22), self.text_rect.width)
            if len(sugg) > 2:
                sugg = [sugg[0], sugg[1][:-3].rstrip() + "..."]
            for i, line in enumerate(sugg):
                theme.text(
                    surface,
                    line,
                    (self.text_rect.left, self.text_rect.bottom + 8 + i * 22),
                    size=22,
                    color=theme.INFO,
                )

        charts_x = r.left + 640
        summary = a.summary
        share = summary.get("share") or {}
        draw_share_bars(
            surface, pygame.Rect(charts_x, r.top + 100, r.right - charts_x - 30, 220), share
        )
        draw_curve(
            surface,
            pygame.Rect(charts_x, r.top + 340, r.right - charts_x - 30, 220),
            summary.get("curve") or [],
            duration_s=summary.get("duration_s"),
        )
        facts = f"{summary.get('duration_s', 0):.1f} s   {summary.get('frames', 0)} frames   faces seen {summary.get('faces_seen', 0)}"
        theme.text(surface, facts, (charts_x, r.top + 570), size=20, color=theme.TEXT_FAINT)

        line, color = backend_line(a)
        pygame.draw.line(
            surface,
            theme.PANEL_EDGE,
            (r.left + 30, r.bottom - 56),
            (r.right - 30, r.bottom - 56),
            1,
        )
        pygame.draw.circle(surface, color, (r.left + 38, r.bottom - 30), 6)
        theme.text(
            surface,
            line,
            (r.left + 52, r.bottom - 30),
            size=22,
            color=theme.TEXT_DIM,
            anchor="midleft",
        )
        theme.key_hint(surface, "Enter", "continue", (r.right - 170, r.bottom - 44), size=22)


def draw_finale(surface: pygame.Surface, area: pygame.Rect, gold: int, t: float) -> None:
    panel = pygame.Rect(0, 0, 560, 200)
    panel.center = area.center
    theme.panel(surface, panel, radius=14, edge=theme.ACCENT)
    theme.text(
        surface,
        "You cleared the dungeon!",
        (panel.centerx, panel.top + 50),
        size=44,
        bold=True,
        color=theme.ACCENT,
        anchor="center",
    )
    theme.text(surface, f"{gold} gold", (panel.centerx, panel.top + 100), size=30, anchor="center")
    theme.key_hint(surface, "R", "play again", (panel.centerx - 80, panel.bottom - 50), size=24)
