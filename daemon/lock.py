"""Single instance per machine: an ``flock`` on a lock file that holds the owner's pid.

Taken by the main thread before any endpoint is bound or the camera opened. The kernel releases an
``flock`` when its file descriptor closes, so a daemon killed with ``kill -9`` leaves a file
behind but never a held lock. The file is not unlinked on release: removing a lock file races with
a process that has just opened it, and two daemons could then both "hold" the lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class AlreadyRunning(RuntimeError):
    """Another process holds the lock; ``pid`` is the one it wrote (None when unreadable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"emotiond is already running ({who} holds {path}). Stop it first "
            f"(kill {pid if pid is not None else '<pid>'}) or use --lock-path for a separate instance."
        )
        self.path = path
        self.pid = pid


def read_pid(path: Path) -> int | None:
    """The pid written in the lock file, or None."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class InstanceLock:
    """``with InstanceLock(path): ...`` or ``acquire()``/``release()``; not reentrant."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AlreadyRunning`; ``OSError`` if the file cannot be made."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this process")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(self.path, read_pid(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.fsync(fd)
        self._fd = fd
        log.debug("holding instance lock %s", self.path)

    def release(self) -> None:
        """Empty the file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            log.warning("could not clear the instance lock %s", self.path, exc_info=True)
        finally:
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
