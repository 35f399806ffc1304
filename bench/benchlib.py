"""What the bench scripts share: percentiles, a plain-text table, free loopback ports, a real
``emotiond`` child process, synthetic frame results for the server benchmarks.

Not a test helper: the scripts print numbers, they assert nothing.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as `python bench/NAME.py` from a clone

from daemon import stats  # noqa: E402  (after the path fix above)
from tests.daemonproc import DaemonProcess  # noqa: E402


def summarize(values: Sequence[float], ps: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"n", "p50", "p90", "p99", "max"}`` (the percentiles asked for); NaN where empty."""
    empty = {f"p{p:g}": math.nan for p in ps} | {"max": math.nan}
    return {"n": len(values), **empty, **stats.summarize(values, ps, ndigits=6)}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A right-aligned plain-text table (floats with 2 decimals)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.2f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def dump_json(data: Any) -> str:
    """JSON with NaN written as null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(data), indent=2, sort_keys=True)


@contextmanager
def daemon_process(
    source: str, *, model: str | None = None, threads: int = 0, extra: Sequence[str] = ()
) -> Iterator[tuple[str, str]]:
    """A real ``python -m daemon`` (``tests.daemonproc.DaemonProcess``, summaries only) in a
    temporary dir; yields ``(events, control)`` once it is ready, SIGTERM on exit."""
    with tempfile.TemporaryDirectory(prefix="emotion-bench-") as tmp:
        proc = DaemonProcess(
            Path(tmp),
            model=Path(model) if model else None,
            source=source,
            llm="none",
            args=extra,
            threads=threads,
        )
        with proc:
            yield proc.events, proc.control
            if not proc.running:
                raise RuntimeError(f"emotiond exited early:\n{proc.log()}")


def frame_result(seq: int, n_faces: int = 1) -> Any:
    """A plausible ``FrameResult`` captured now (rotating softmax probabilities)."""
    from daemon.timeline import FaceResult, FrameResult
    from game_sdk.protocol import CLASSES

    faces = []
    for i in range(n_faces):
        logits = [math.cos(seq / 5 + k + i) * 3 for k in range(len(CLASSES))]
        z = sum(math.exp(v) for v in logits)
        probs = tuple(math.exp(v) / z for v in logits)
        best = max(range(len(probs)), key=probs.__getitem__)
        box = (40 + 150 * i, 140, 140, 140)
        faces.append(FaceResult(i + 1, box, probs, probs, CLASSES[best], probs[best]))
    stages = {"capture": 0.0, "detect": 0.0, "classify": 0.0, "track": 0.0, "total": 0.0}
    return FrameResult(seq, time.time(), 640, 480, tuple(faces), stages)


def paced(rate: float, seconds: float) -> Iterator[int]:
    """Yield 1, 2, ... at ``rate`` per second on the monotonic clock for ``seconds``."""
    period = 1.0 / rate
    start = time.monotonic()
    i = 0
    while True:
        i += 1
        due = start + (i - 1) * period
        if due - start >= seconds:
            return
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


def serve_events(conn: Any, faces: int = 1) -> None:
    """Child process: a real ``daemon.server.Server`` on random loopback ports.

    Protocol over the ``multiprocessing`` pipe: sends ``(events, control)``; then each received
    ``("publish", rate, seconds)`` publishes ``frame_result``s at ``rate``/s for ``seconds`` and
    answers ``("done", published)``; ``("stop",)`` stops the server and ends the process.
    """
    from daemon.server import Server

    server = Server(events="tcp://127.0.0.1:*", control="tcp://127.0.0.1:*")
    server.start()
    conn.send((server.events_endpoint, server.control_endpoint))
    seq = 0
    try:
        while True:
            command = conn.recv()
            if command[0] == "stop":
                return
            _, rate, seconds = command
            count = 0
            for _ in paced(rate, seconds) if rate > 0 else ():
                seq += 1
                count += 1
                server.on_result(frame_result(seq, faces))
            if rate <= 0:
                time.sleep(seconds)
            conn.send(("done", count))
    finally:
        server.stop()
