"""The daemon's configuration: one frozen dataclass and the pure function that resolves it.

Precedence, lowest first: the defaults in :class:`DaemonConfig` -> an optional TOML file
(``--config PATH``, ``$EMOTIOND_CONFIG``, else ``$XDG_CONFIG_HOME/emotion-sidecar/emotiond.toml``
when it exists) -> ``EMOTIOND_<FIELD>`` environment variables -> command-line flags.
``load_config`` reads only its arguments and the files they name (no globals), so tests call it
with their own ``argv`` and ``environ``. ``OLLAMA_HOST`` is left to the ``ollama`` client.

This module imports nothing heavy: ``emotiond --help`` must not load torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from game_sdk.protocol import DEFAULT_CONTROL_ENDPOINT, DEFAULT_EVENTS_ENDPOINT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the daemon extra installs tomli there
    import tomli as tomllib

APP_DIR = "emotion-sidecar"
CONFIG_FILE = "emotiond.toml"
LOCK_FILE = "emotiond.lock"
ENV_PREFIX = "EMOTIOND_"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "emotion_resnet50.pt"
LLM_MODES = ("auto", "ollama", "embedded", "none")
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SOURCE_PREFIXES = ("webcam", "video", "images", "sample")


class ConfigError(ValueError):
    """A bad configuration value; the message names the value and where it came from."""


def default_state_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / APP_DIR


def default_lock_path(environ: Mapping[str, str], state_dir: Path) -> Path:
    runtime = environ.get("XDG_RUNTIME_DIR")
    return (Path(runtime) / APP_DIR if runtime else state_dir) / LOCK_FILE


@dataclass(frozen=True)
class DaemonConfig:
    """Every setting of ``emotiond``. The defaults work on a laptop with or without a webcam."""

    source: str = "auto"
    camera_index: int = 0
    fps: float = 30.0
    loop_video: bool = True
    model: Path = DEFAULT_MODEL
    device: str = "auto"
    threads: int = 0
    smoothing: float = 0.35
    min_face: int = 48
    events: str = DEFAULT_EVENTS_ENDPOINT
    control: str = DEFAULT_CONTROL_ENDPOINT
    allow_remote: bool = False
    timeline_seconds: float = 600.0
    state_dir: Path | None = None  # None: resolved by load_config from XDG_STATE_HOME / HOME
    lock_path: Path | None = None  # None: resolved from XDG_RUNTIME_DIR, else the state dir
    llm: str = "auto"
    llm_model: str = "mistral"
    prompt_template: str | None = None  # None: daemon.analysis.prompt.DEFAULT_PROMPT_TEMPLATE
    llm_connect_timeout: float = 2.0
    llm_request_timeout: float = 60.0
    llm_retries: int = 3
    status_interval: float = 1.0
    client_timeout: float = 120.0
    log_level: str = "INFO"
    max_frames: int | None = None
    once: bool = False
    config_file: Path | None = field(default=None, compare=False)

    def summary(self) -> dict[str, Any]:
        """The resolved values as plain data, for the one INFO line at start."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "prompt_template" and value is not None:
                value = f"<{len(value)} characters>"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


# One line of help per field; argparse, the TOML keys and the environment all use these names.
HELP: dict[str, str] = {
    "source": "frame source: auto (webcam, else the bundled sample), webcam[:N], sample, "
    "video:PATH or a video file, images:DIR or a folder",
    "camera_index": "webcam index used by 'auto' and 'webcam'",
    "fps": "most frames processed per second",
    "loop_video": "replay a video or image folder when it ends",
    "model": "checkpoint to classify with",
    "device": "torch device: auto, cpu or cuda",
    "threads": "torch CPU threads (0: torch's default)",
    "smoothing": "per-face exponential smoothing factor in (0, 1]; 1 publishes raw values",
    "min_face": "smallest face side in pixels that the detector reports",
    "events": "events endpoint (XPUB, binds)",
    "control": "control endpoint (ROUTER, binds)",
    "allow_remote": "allow binding to a non-loopback address (frames still never leave)",
    "timeline_seconds": "seconds of emotion history kept for intent windows",
    "state_dir": "where intents and undelivered analyses are kept",
    "lock_path": "single-instance lock file",
    "llm": "LLM backend: auto (Ollama if reachable, else embedded, else none), ollama, embedded, none",
    "llm_model": "Ollama model name",
    "prompt_template": "prompt with {intent} and {emotions} placeholders "
    "(--prompt-file reads it from a file)",
    "llm_connect_timeout": "seconds to wait for the LLM server to answer a probe",
    "llm_request_timeout": "seconds one LLM request may take",
    "llm_retries": "extra LLM attempts after a transient failure (timeouts, a busy server)",
    "status_interval": "seconds between status events",
    "client_timeout": "seconds of silence before a client is forgotten (its analyses are kept)",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "max_frames": "exit after publishing this many frames (tests, benchmarks)",
    "once": "play a video or image folder once and exit when it ends",
}

_FIELD_TYPES: dict[str, type] = {
    "source": str,
    "camera_index": int,
    "fps": float,
    "loop_video": bool,
    "model": Path,
    "device": str,
    "threads": int,
    "smoothing": float,
    "min_face": int,
    "events": str,
    "control": str,
    "allow_remote": bool,
    "timeline_seconds": float,
    "state_dir": Path,
    "lock_path": Path,
    "llm": str,
    "llm_model": str,
    "prompt_template": str,
    "llm_connect_timeout": float,
    "llm_request_timeout": float,
    "llm_retries": int,
    "status_interval": float,
    "client_timeout": float,
    "log_level": str,
    "max_frames": int,
    "once": bool,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any, origin: str) -> Any:
    """Convert a TOML/env/flag value to the field's type, or raise ``ConfigError``."""
    kind = _FIELD_TYPES[name]
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError("expected an integer")
            return int(str(value).strip())
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(str(value).strip()) if isinstance(value, str) else float(value)
        if kind is Path:
            if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
                raise ValueError("expected a path")
            return Path(str(value)).expanduser()
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    except ValueError as exc:
        raise ConfigError(f"{name} from {origin}: {value!r} is not valid ({exc})") from None


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``ConfigError`` instead of exiting, so ``load_config`` stays pure."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``emotiond`` flags. Every default is ``SUPPRESS`` so only given flags override."""
    d = DaemonConfig()
    p = _Parser(
        prog="emotiond",
        description="emotion-sidecar daemon: webcam face emotions published over ZeroMQ on "
        "loopback, and intent analyses by a local LLM. Settings come from defaults < TOML file "
        "< EMOTIOND_* environment variables < these flags (EMOTIOND_FPS=15 sets --fps 15). "
        "`emotiond status` prints a running daemon's status as JSON.",
        argument_default=argparse.SUPPRESS,
        epilog="Exit codes: 0 stopped cleanly, 1 unexpected error, 2 bad configuration, 3 no "
        "usable model, 4 another instance is running, 5 cannot bind an endpoint, 6 the LLM "
        "asked for with --llm ollama/embedded cannot serve.",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="TOML file whose keys are these options' names with underscores "
        "(default $EMOTIOND_CONFIG, else $XDG_CONFIG_HOME/emotion-sidecar/emotiond.toml "
        "when it exists)",
    )
    for f in fields(DaemonConfig):
        if f.name not in HELP:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        shown = {
            "state_dir": "$XDG_STATE_HOME/emotion-sidecar, else ~/.local/state/emotion-sidecar",
            "lock_path": "$XDG_RUNTIME_DIR/emotion-sidecar/emotiond.lock, else in the state dir",
            "prompt_template": "the built-in prompt",
        }.get(f.name, default)
        help_text = f"{HELP[f.name]} (default: {shown}; env {ENV_PREFIX}{f.name.upper()})"
        if _FIELD_TYPES[f.name] is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            metavar = f.name.upper() if _FIELD_TYPES[f.name] is not Path else "PATH"
            p.add_argument(flag, metavar=metavar, help=help_text)
    p.add_argument(
        "--prompt-file", type=Path, metavar="PATH", help="read the prompt template from this file"
    )
    return p


def _config_file(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The TOML file to read and whether it was asked for explicitly (then it must exist)."""
    if getattr(args, "config", None) is not None:
        return Path(args.config).expanduser(), True
    if environ.get(ENV_PREFIX + "CONFIG"):
        return Path(environ[ENV_PREFIX + "CONFIG"]).expanduser(), True
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    path = Path(base).expanduser() / APP_DIR / CONFIG_FILE
    return (path, False) if path.is_file() else (None, False)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    # Allow an [emotiond] table as well as top-level keys.
    if isinstance(data.get("emotiond"), dict):
        data = {**{k: v for k, v in data.items() if k != "emotiond"}, **data["emotiond"]}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _FIELD_TYPES:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        out[name] = _coerce(name, value, f"config file {path}")
    return out


def _read_prompt_file(path: Path) -> str:
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the prompt file {path}: {exc}") from None


def load_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> DaemonConfig:
    """Resolve the configuration; raises ``ConfigError`` with a clear message on a bad value.

    ``--help`` prints the help and raises ``SystemExit(0)`` (argparse's behaviour).
    """
    args = build_parser().parse_args(list(argv or []))
    values: dict[str, Any] = {}

    path, _ = _config_file(args, environ)
    if path is not None:
        values.update(_read_toml(path))

    for name in _FIELD_TYPES:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            values[name] = _coerce(name, environ[key], f"environment variable {key}")

    for name in _FIELD_TYPES:
        if hasattr(args, name):
            values[name] = _coerce(name, getattr(args, name), "--" + name.replace("_", "-"))
    if getattr(args, "prompt_file", None) is not None:
        values["prompt_template"] = _read_prompt_file(args.prompt_file)

    state_dir = values.get("state_dir") or default_state_dir(environ)
    values["state_dir"] = state_dir
    values.setdefault("lock_path", None)
    if values["lock_path"] is None:
        values["lock_path"] = default_lock_path(environ, state_dir)
    config = dataclasses.replace(DaemonConfig(), config_file=path, **values)
    validate(config)
    return config


def validate(config: DaemonConfig) -> None:
    """Raise ``ConfigError`` for the first value that cannot work."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(config.fps > 0, f"fps must be > 0, not {config.fps}")
    need(config.camera_index >= 0, f"camera_index must be >= 0, not {config.camera_index}")
    need(config.threads >= 0, f"threads must be >= 0, not {config.threads}")
    need(0 < config.smoothing <= 1, f"smoothing must be in (0, 1], not {config.smoothing}")
    need(config.min_face >= 16, f"min_face must be >= 16 pixels, not {config.min_face}")
    need(config.timeline_seconds >= 10, "timeline_seconds must be >= 10")
    need(
        config.device in DEVICES or config.device.startswith("cuda:"),
        f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {config.device!r}",
    )
    need(config.llm in LLM_MODES, f"llm must be one of {', '.join(LLM_MODES)}, not {config.llm!r}")
    need(bool(config.llm_model.strip()), "llm_model must not be empty")
    need(config.llm_connect_timeout > 0, "llm_connect_timeout must be > 0")
    need(config.llm_request_timeout > 0, "llm_request_timeout must be > 0")
    need(config.llm_retries >= 0, "llm_retries must be >= 0")
    need(config.status_interval > 0, "status_interval must be > 0")
    need(config.client_timeout > 0, "client_timeout must be > 0")
    need(
        config.log_level.upper() in LOG_LEVELS,
        f"log_level must be one of {', '.join(LOG_LEVELS)}, not {config.log_level!r}",
    )
    need(config.max_frames is None or config.max_frames > 0, "max_frames must be > 0")
    if config.prompt_template is not None:
        missing = [p for p in ("{intent}", "{emotions}") if p not in config.prompt_template]
        need(not missing, f"prompt_template lacks {', '.join(missing)}")
    check_source(config.source)
    for name in ("events", "control"):
        check_endpoint(name, getattr(config, name), config.allow_remote)
    need(config.events != config.control, "events and control endpoints must differ")


def check_source(spec: str) -> None:
    """Refuse a source spec that can never open (a typo, a missing file)."""
    spec = spec.strip()
    if spec == "auto" or spec in SOURCE_PREFIXES:
        return
    for prefix in ("webcam:", "sample:"):
        if spec.startswith(prefix):
            if not spec[len(prefix) :].isdigit():
                raise ConfigError(f"source {spec!r}: expected {prefix}N with N a number")
            return
    if spec.startswith("video:"):
        if not Path(spec[6:]).expanduser().is_file():
            raise ConfigError(f"source {spec!r}: no video file at {spec[6:]}")
        return
    if spec.startswith("images:"):
        if not Path(spec[7:]).expanduser().is_dir():
            raise ConfigError(f"source {spec!r}: no folder at {spec[7:]}")
        return
    if not Path(spec).expanduser().exists():
        raise ConfigError(
            f"source {spec!r} is neither auto, webcam[:N], sample, video:PATH, images:DIR "
            "nor an existing file or folder"
        )


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://HOST:PORT`` endpoint (brackets stripped); None for other transports."""
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://") :]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port == "*" or port.isdigit()):
        raise ConfigError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ``ipc://``/``inproc://`` and for TCP on 127.0.0.0/8, ::1 or ``localhost``."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint_host(endpoint)
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a DNS name: not provably loopback


def check_endpoint(name: str, endpoint: str, allow_remote: bool) -> None:
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ConfigError(f"{name} endpoint {endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    if endpoint.startswith("tcp://"):
        endpoint_host(endpoint)  # format check
    if not allow_remote and not is_loopback_endpoint(endpoint):
        raise ConfigError(
            f"{name} endpoint {endpoint!r} is not a loopback address; emotiond binds to "
            "127.0.0.1 only unless --allow-remote is given"
        )
