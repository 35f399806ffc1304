"""The demo's settings: defaults in one frozen dataclass, overridden by command-line flags."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from game_sdk import DEFAULT_CONTROL_ENDPOINT, DEFAULT_EVENTS_ENDPOINT


@dataclass(frozen=True)
class GameConfig:
    """Everything that changes how the demo runs. ``GameConfig()`` is a normal windowed game."""

    start_daemon: bool = True  # start emotiond when none answers (False: --no-daemon)
    source: str = "auto"  # passed to emotiond --source
    events: str = DEFAULT_EVENTS_ENDPOINT
    control: str = DEFAULT_CONTROL_ENDPOINT
    llm: str = "auto"  # passed to emotiond --llm
    daemon_args: tuple[str, ...] = ()  # extra emotiond flags, e.g. ("--model", "tiny.pt")
    fullscreen: bool = False
    size: tuple[int, int] = (1280, 720)
    fps: int = 60
    screenshot_dir: Path | None = None  # F12 (and scripted shots) save PNGs here
    script: Path | None = None  # scripted input, see demo_game.script
    max_seconds: float | None = None  # quit after this much wall time
    seed: int | None = None  # fixes the mimic and the boss's aim, for reproducible runs
    client_id: str | None = None
    probe_seconds: float = 1.0  # how long to look for a running daemon before starting one
    daemon_start_timeout: float = 90.0  # give up waiting for a started daemon after this
    consent: bool | None = None  # pre-answered consent (scripts, tests); None: ask the player
    stats_path: Path | None = None  # write frame-time percentiles here (JSON) on exit


def build_parser() -> argparse.ArgumentParser:
    d = GameConfig()
    p = argparse.ArgumentParser(
        prog="emotion-demo",
        description="A small dungeon game that shows emotion-sidecar at work: live emotions in "
        "the HUD, and an analysis of your face after each event.",
    )
    p.add_argument(
        "--no-daemon", action="store_true", help="connect to a running emotiond; never start one"
    )
    p.add_argument(
        "--source",
        default=d.source,
        help="emotiond --source when the game starts it: auto, sample, webcam[:N] or "
        "a video path (default: %(default)s)",
    )
    p.add_argument("--events", default=d.events, help="events endpoint (default: %(default)s)")
    p.add_argument("--control", default=d.control, help="control endpoint (default: %(default)s)")
    p.add_argument(
        "--llm",
        default=d.llm,
        choices=["auto", "ollama", "embedded", "none"],
        help="emotiond --llm when the game starts it (default: %(default)s)",
    )
    p.add_argument(
        "--daemon-args",
        default="",
        metavar="ARGS",
        help="more emotiond flags, one shell-quoted string (default: none)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--windowed", dest="fullscreen", action="store_false", help="play in a window (the default)"
    )
    mode.add_argument(
        "--fullscreen", dest="fullscreen", action="store_true", help="play full screen"
    )
    p.set_defaults(fullscreen=d.fullscreen)
    p.add_argument(
        "--screenshot-dir",
        type=Path,
        metavar="DIR",
        help="F12 saves a PNG here (default: the current directory)",
    )
    p.add_argument(
        "--script",
        type=Path,
        metavar="FILE",
        help="scripted input by frame number (see demo_game/script.py)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="quit after S seconds (default: play until you quit)",
    )
    p.add_argument("--seed", type=int, help="random seed, for reproducible runs")
    p.add_argument(
        "--stats",
        type=Path,
        metavar="FILE",
        help="on exit, write frame-time percentiles (work and flip-to-flip, ms) as JSON here",
    )
    consent = p.add_mutually_exclusive_group()
    consent.add_argument(
        "--accept-camera",
        dest="consent",
        action="store_true",
        default=None,
        help="answer the consent screen with yes (for kiosks and scripts)",
    )
    consent.add_argument(
        "--decline-camera",
        dest="consent",
        action="store_false",
        help="answer the consent screen with no: play without the camera",
    )
    p.add_argument("--log-level", default="WARNING", help="(default: %(default)s)")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[GameConfig, str]:
    """Parse flags into a config; returns it with the log level (which only ``main`` applies)."""
    args = build_parser().parse_args(argv)
    config = GameConfig(
        start_daemon=not args.no_daemon,
        source=args.source,
        events=args.events,
        control=args.control,
        llm=args.llm,
        daemon_args=tuple(shlex.split(args.daemon_args)),
        fullscreen=args.fullscreen,
        screenshot_dir=args.screenshot_dir,
        script=args.script,
        max_seconds=args.max_seconds,
        seed=args.seed,
        consent=args.consent,
        stats_path=args.stats,
    )
    return config, args.log_level
