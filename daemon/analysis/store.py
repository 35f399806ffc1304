"""The lossless job store: begun intents, queued jobs and undelivered results, one JSON file each.

Layout under ``state_dir`` (mode 0o700; every file 0o600, written to a temporary name, fsynced,
then ``os.replace``d, so a reader or a crash only ever sees a whole file)::

    intents/<key>.json   begun, not yet ended       {client, intent_id, text, t_begin}
    jobs/<key>.json      ended, analysis pending    {... + t_end, summary, enqueued_at}
    results/<key>.json   analysed, not yet acked    {client, intent_id, body, created}
    done/<key>           acknowledged (tombstone: a late resend of the same intent is a duplicate)

``key`` is a hash of (client id, intent id), so ids never become file names. An intent moves
intents -> jobs -> results -> done; each step writes the next file before removing the previous
one, and ``open()`` finishes any step a crash interrupted. That is what makes it exactly one result
per ended intent across ``kill -9``: a job whose result file exists is never run again.

Thread safety: one lock around every method; the server thread and the analysis worker share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
KINDS = ("intents", "jobs", "results", "done")
DEFAULT_INTENT_TTL_S = 24 * 3600.0  # begun but never ended
DEFAULT_TOMBSTONE_TTL_S = 7 * 24 * 3600.0
DEFAULT_RESULT_TTL_S = 30 * 24 * 3600.0  # a game that never comes back to ack


def intent_key(client_id: str, intent_id: str) -> str:
    return hashlib.sha256(f"{client_id}\x00{intent_id}".encode()).hexdigest()[:40]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON, mode 0o600: tmp file, fsync, ``os.replace``, directory fsync."""
    data = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have narrowed it; never widened
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class JobStore:
    """See the module docstring. Call ``open()`` once before anything else."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._dirs = {kind: self.root / kind for kind in KINDS}

    # -- files ------------------------------------------------------------------------------
    def _path(self, kind: str, key: str) -> Path:
        return self._dirs[kind] / (key if kind == "done" else f"{key}.json")

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("unreadable state file %s (%s): moving it aside", path, exc)
            path.replace(path.with_suffix(".corrupt"))
            return None
        return obj if isinstance(obj, dict) else None

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def _entries(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for path in sorted(self._dirs[kind].glob("*.json")):
            obj = self._read(path)
            if obj is not None:
                out.append((path.stem, obj))
        return out

    # -- life -------------------------------------------------------------------------------
    def open(
        self,
        *,
        intent_ttl_s: float = DEFAULT_INTENT_TTL_S,
        tombstone_ttl_s: float = DEFAULT_TOMBSTONE_TTL_S,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
    ) -> None:
        """Create the directories (0o700), finish interrupted steps, drop expired entries."""
        with self._lock:
            self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            for path in (self.root, *self._dirs.values()):
                path.mkdir(mode=DIR_MODE, exist_ok=True)
                if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
                    os.chmod(path, DIR_MODE)
            for path in self.root.glob("*/.*.tmp"):  # a write a crash cut short
                path.unlink(missing_ok=True)
            now = time.time()
            for key, _ in self._entries("results"):
                self._remove(self._path("jobs", key))  # crash between result write and job removal
                self._remove(self._path("intents", key))
            for key, _ in self._entries("jobs"):
                self._remove(
                    self._path("intents", key)
                )  # crash between job write and intent removal
            for key, intent in self._entries("intents"):
                if now - float(intent.get("created", now)) > intent_ttl_s:
                    log.info(
                        "forgetting intent %s begun %.0f s ago and never ended",
                        intent.get("intent_id"),
                        now - float(intent.get("created", now)),
                    )
                    self._remove(self._path("intents", key))
            for key, result in self._entries("results"):
                if now - float(result.get("created", now)) > result_ttl_s:
                    log.warning(
                        "dropping result for intent %s never acknowledged", result.get("intent_id")
                    )
                    self._remove(self._path("results", key))
            for path in self._dirs["done"].iterdir():
                try:
                    if now - path.stat().st_mtime > tombstone_ttl_s:
                        path.unlink()
                except FileNotFoundError:
                    pass

    # -- intents ----------------------------------------------------------------------------
    def state_of(self, client_id: str, intent_id: str) -> str | None:
        """``begun`` | ``queued`` | ``result`` | ``done`` | None (never seen or long forgotten)."""
        key = intent_key(client_id, intent_id)
        with self._lock:
            return self._state(key)

    def _state(self, key: str) -> str | None:
        for kind, name in (
            ("results", "result"),
            ("jobs", "queued"),
            ("done", "done"),
            ("intents", "begun"),
        ):
            if self._path(kind, key).exists():
                return name
        return None

    def add_intent(self, client_id: str, intent_id: str, text: str, t_begin: float) -> bool:
        """Persist a begun intent; False (and nothing written) when this intent is already known."""
        key = intent_key(client_id, intent_id)
        with self._lock:
            if self._state(key) is not None:
                return False
            record = {
                "client": client_id,
                "intent_id": intent_id,
                "text": text,
                "t_begin": t_begin,
                "created": time.time(),
            }
            write_json_atomic(self._path("intents", key), record)
            return True

    def get_intent(self, client_id: str, intent_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._read(self._path("intents", intent_key(client_id, intent_id)))

    # -- jobs -------------------------------------------------------------------------------
    def add_job(self, job: dict[str, Any]) -> str:
        """Persist an ended intent's job (then forget the begun intent); returns its key."""
        key = intent_key(job["client"], job["intent_id"])
        with self._lock:
            write_json_atomic(self._path("jobs", key), job)
            self._remove(self._path("intents", key))
        return key

    def get_job(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._read(self._path("jobs", key))

    def pending_jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """Jobs not yet analysed, oldest first (what a restart re-queues)."""
        with self._lock:
            jobs = self._entries("jobs")
        return sorted(jobs, key=lambda kv: (float(kv[1].get("enqueued_at", 0.0)), kv[0]))

    def update_job(self, key: str, job: dict[str, Any]) -> None:
        with self._lock:
            if self._path("jobs", key).exists():
                write_json_atomic(self._path("jobs", key), job)

    # -- results ----------------------------------------------------------------------------
    def complete(self, key: str, client_id: str, body: dict[str, Any]) -> bool:
        """Store the one result of job ``key`` and retire the job.

        Returns False, writing nothing, when the job is gone (already completed and maybe acked):
        the caller must then not deliver, so no intent ever gets two results.
        """
        with self._lock:
            if not self._path("jobs", key).exists():
                return False
            record = {
                "client": client_id,
                "intent_id": body["intent_id"],
                "body": body,
                "created": time.time(),
            }
            write_json_atomic(self._path("results", key), record)
            self._remove(self._path("jobs", key))
            return True

    def results_for(self, client_id: str) -> list[dict[str, Any]]:
        """Bodies of the results ``client_id`` has not acknowledged, oldest first."""
        with self._lock:
            entries = self._entries("results")
        mine = [
            r
            for _, r in entries
            if r.get("client") == client_id and isinstance(r.get("body"), dict)
        ]
        return [r["body"] for r in sorted(mine, key=lambda r: float(r.get("created", 0.0)))]

    def acknowledge(self, client_id: str, intent_id: str) -> bool:
        """The game has the result: delete it and leave a tombstone. False when there was none."""
        key = intent_key(client_id, intent_id)
        with self._lock:
            path = self._path("results", key)
            if not path.exists():
                return False
            write_json_atomic(self._path("done", key), {"t": time.time()})
            self._remove(path)
            return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                kind: sum(1 for p in self._dirs[kind].iterdir() if not p.name.startswith("."))
                for kind in KINDS
            }
