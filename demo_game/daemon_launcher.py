"""Start ``emotiond`` as a child process when no daemon answers, and stop what we started.

The game owns at most one daemon process. It is started with the interpreter running the game
(``python -m daemon``), so it works from a source checkout as well as from an install, and it is
stopped on exit: SIGTERM, a grace period, then SIGKILL. Its log goes to an anonymous temporary
file (deleted when closed) so a failed start can be explained on screen; the daemon never logs
frames, and nothing the game writes holds camera data.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# emotiond's exit codes (daemon/app.py), explained for the player.
EXIT_MEANINGS = {
    1: "the daemon failed unexpectedly",
    2: "bad daemon configuration",
    3: "no usable emotion model (train one with `emotion-train`)",
    4: "another emotiond is already running (on other endpoints?)",
    5: "cannot bind the endpoints (port in use?)",
    6: "the LLM asked for cannot serve",
}


def daemon_command(
    source: str, events: str, control: str, llm: str, extra: Sequence[str] = ()
) -> list[str]:
    """The command line that runs emotiond with the game's endpoints."""
    return [
        sys.executable,
        "-m",
        "daemon",
        "--source",
        source,
        "--events",
        events,
        "--control",
        control,
        "--llm",
        llm,
        *extra,
    ]


def _child_env() -> dict[str, str]:
    """The game's environment, plus the directory ``daemon`` is imported from when it is not
    installed (a source checkout), so ``python -m daemon`` finds it from any working directory."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("daemon")
    if spec is not None and spec.origin:
        root = str(Path(spec.origin).resolve().parents[1])
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in parts:
            env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the daemon gets SIGTERM if the game dies without stopping it."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class DaemonLauncher:
    """One emotiond child process: ``start``, ``exit_code`` (non-blocking), ``stop``."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Spawn the daemon; returns at once (it loads its model in the background).

        Raises:
            OSError: the interpreter could not be executed.
        """
        if self._proc is not None:
            return
        self._log = tempfile.TemporaryFile(prefix="emotiond-log-")
        log.info("starting the daemon: %s", " ".join(self.command))
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )

    def exit_code(self) -> int | None:
        """The daemon's exit code once it has ended, else None. Never blocks."""
        return self._proc.poll() if self._proc is not None else None

    def failure(self) -> str | None:
        """Why the daemon ended, for the screen (its exit code and last log line), or None."""
        code = self.exit_code()
        if code is None:
            return None
        meaning = EXIT_MEANINGS.get(code, f"it exited with code {code}")
        last = self.log_tail(1)
        return f"{meaning}: {last}" if last else meaning

    def log_tail(self, lines: int = 5) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        data = self._log.read()[-8192:].decode("utf-8", "replace")
        self._log.seek(0, os.SEEK_END)
        kept = [line for line in data.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                log.info("stopping the daemon (pid %d)", proc.pid)
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("the daemon did not stop within %.0f s: killing it", timeout)
                    proc.kill()
                    proc.wait(5.0)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
