"""What ``EmotionClient.poll()`` costs a game frame: idle, and with emotion events arriving.

A child process runs the daemon's real server (``daemon.server.Server``, status beat every
second); this process is the game: one ``EmotionClient``, connected and welcomed, calls ``poll()``
once per frame at ``--frame-rate`` frames/s and times each call with ``perf_counter_ns``.

- idle: nothing but the status beat arrives;
- loaded: the server publishes ``--rate`` emotion events/s (one face each) meanwhile.

Target (issue 2): an idle ``poll()`` under 0.1 ms (100 us).

    .venv/bin/python bench/bench_poll.py
    .venv/bin/python bench/bench_poll.py --seconds 20 --rate 60 --json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from typing import Any

from benchlib import dump_json, serve_events, summarize, table

from game_sdk import (  # after benchlib, which puts the repo on sys.path
    ConnectionState,
    EmotionClient,
    EmotionEvent,
)


def time_polls(client: EmotionClient, seconds: float, frame_rate: float) -> tuple[list[float], int]:
    """Poll once per frame for ``seconds``; the durations in us and the emotion events seen."""
    durations: list[float] = []
    events = 0
    period = 1.0 / frame_rate
    next_frame = time.monotonic()
    end = next_frame + seconds
    while next_frame < end:
        t0 = time.perf_counter_ns()
        got = client.poll()
        durations.append((time.perf_counter_ns() - t0) / 1000)
        events += sum(isinstance(e, EmotionEvent) for e in got)
        next_frame += period
        delay = next_frame - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the rest of the game's frame
    return durations, events


def run(seconds: float, rate: float, frame_rate: float) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_events, args=(child,), daemon=True)
    server.start()
    events, control = parent.recv()
    client = EmotionClient(control, events, name="bench-poll")
    results = []
    try:
        client.wait_connected(timeout=30)
        deadline = time.monotonic() + 5
        while client.status is None and time.monotonic() < deadline:  # the first beat
            client.poll()
            time.sleep(0.01)
        for name, publish_rate in (("idle", 0.0), (f"{rate:g} events/s", rate)):
            parent.send(("publish", publish_rate, seconds))
            durations, seen = time_polls(client, seconds, frame_rate)
            parent.recv()
            results.append(
                {
                    "case": name,
                    "polls": len(durations),
                    "events": seen,
                    "connected": client.state is ConnectionState.CONNECTED,
                    "poll_us": summarize(durations, (50, 99)),
                }
            )
        parent.send(("stop",))
    finally:
        client.close()
        server.join(10)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost of EmotionClient.poll() per game frame, idle and under load.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case")
    parser.add_argument("--rate", type=float, default=30.0, help="emotion events/s when loaded")
    parser.add_argument("--frame-rate", type=float, default=60.0, help="game frames per second")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    results = run(args.seconds, args.rate, args.frame_rate)
    if args.json:
        print(dump_json(results))
        return 0
    rows = []
    for r in results:
        us = r["poll_us"]
        rows.append([r["case"], r["polls"], r["events"], us["p50"], us["p99"], us["max"]])
    print(f"EmotionClient.poll() once per frame at {args.frame_rate:g} frames/s\n")
    print(table(["case", "polls", "events", "p50 us", "p99 us", "max us"], rows))
    idle = results[0]["poll_us"]
    print(f"\ntarget: idle poll() < 100 us (p50): {'met' if idle['p50'] < 100 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
