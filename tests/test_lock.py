"""Single instance: a second ``emotiond`` names the pid holding the lock; ``kill -9`` frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.lock import AlreadyRunning, InstanceLock, read_pid

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from daemon.lock import InstanceLock
lock = InstanceLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_acquire_writes_pid_and_release_frees(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "emotiond.lock"
    lock = InstanceLock(path)
    with lock:
        assert lock.held and read_pid(path) == os.getpid()
        with pytest.raises(AlreadyRunning) as info:
            InstanceLock(path).acquire()  # a second open file description: flock refuses it
        assert info.value.pid == os.getpid() and str(os.getpid()) in str(info.value)
    assert not lock.held and read_pid(path) is None
    with InstanceLock(path):  # free again
        pass


def test_second_daemon_exits_naming_the_holder_and_kill_9_frees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "emotiond.lock"
    holder = start_holder(path)
    try:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        }
        # The lock is taken before the model is loaded or a port bound: no model is needed here.
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "daemon",
                "--lock-path",
                str(path),
                "--source",
                "sample",
                "--state-dir",
                str(tmp_path / "state"),
                "--model",
                str(tmp_path / "none.pt"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 4, second.stderr
        assert f"already running (pid {holder.pid} holds {path})" in second.stderr

        with pytest.raises(AlreadyRunning):
            InstanceLock(path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        if holder.stdout:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert read_pid(path) == holder.pid  # the file outlives the process, the lock does not
    deadline = time.monotonic() + 5
    while True:
        try:
            with InstanceLock(path) as lock:
                assert read_pid(path) == os.getpid()
                assert lock.held
            break
        except AlreadyRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
