"""A real ``emotiond`` in a child process, for end-to-end tests.

Each instance gets its own loopback ports, state dir, lock file, XDG dirs and log file under the
test's temporary directory, so tests never meet the developer's own daemon or each other.
``restart()`` reuses the ports and state dir: that is what a game sees when the daemon restarts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
READY_LINE = "emotiond ready"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaemonProcess:
    """``python -m daemon`` with ``args`` on fresh loopback ports; a context manager.

    ``model`` None leaves the daemon its default (the shipped checkpoint). The benchmarks use
    this class too (``bench/benchlib.py``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        model: Path | None,
        source: str = "sample",
        llm: str = "none",
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        threads: int = 1,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.workdir / "state"
        self.events = f"tcp://127.0.0.1:{free_port()}"
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.log_path = self.workdir / "emotiond.log"
        self.argv = [
            sys.executable,
            "-m",
            "daemon",
            *(["--model", str(model)] if model is not None else []),
            "--source", source,
            "--llm", llm,
            "--threads", str(threads),
            "--events", self.events,
            "--control", self.control,
            "--state-dir", str(self.state_dir),
            "--lock-path", str(self.workdir / "emotiond.lock"),
            "--status-interval", "0.5",
            *args,
        ]  # fmt: skip
        home = self.workdir / "home"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".state"),
            "XDG_RUNTIME_DIR": str(home / ".run"),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        """Start the daemon and return once it logged that it is ready (raises with its log)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LINE in self.log(offset):
                return self
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"emotiond exited with {self.proc.returncode}:\n{self.log(offset)}"
                )
            time.sleep(0.05)
        raise AssertionError(f"emotiond not ready within {timeout} s:\n{self.log(offset)}")

    def log(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code (asserts it exits within ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"emotiond ignored SIGTERM for {timeout} s:\n{self.log()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as after a crash or a power cut."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def restart(self, timeout: float = 60.0) -> DaemonProcess:
        self.stop()
        return self.start(timeout)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The daemon's status body, through ``emotiond status`` (the user's own tool)."""
        out = subprocess.run(
            [sys.executable, "-m", "daemon", "status", "--control", self.control,
             "--timeout", str(timeout)],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout + 30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            try:
                self.stop()
            except AssertionError:
                pass
