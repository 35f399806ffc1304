"""Event fan-out: the daemon's real publisher (``daemon.server.Server``, its XPUB and hand-off) to
many SUB subscribers at a camera's rate.

A child process runs the server and hands it a ``FrameResult`` (captured "now") ``--rate`` times
a second, exactly as the pipeline thread does; this process holds ``--subscribers`` SUB sockets
(configured by ``game_sdk.protocol.configure_socket``, like the SDK's), waits until each has
received a status beat (so none misses the start), then for ``--seconds`` records per subscriber
the ``seq`` gaps and the latency from capture time to receipt (stamped as each message is taken
off its socket, before decoding).

Targets (issue 2): 0 gaps, p99 < 10 ms with 50 subscribers at 30 events/s.

    .venv/bin/python bench/bench_fanout.py
    .venv/bin/python bench/bench_fanout.py --subscribers 100 --rate 60 --json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from typing import Any

import zmq
from benchlib import dump_json, serve_events, summarize, table

from game_sdk import protocol  # after benchlib, which puts the repo on sys.path


def run(subscribers: int, rate: float, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_events, args=(child,), daemon=True)
    server.start()
    events, _ = parent.recv()
    zctx = zmq.Context()
    socks = []
    for _ in range(subscribers):
        sock = zctx.socket(zmq.SUB)
        protocol.configure_socket(sock, "sub")
        sock.setsockopt(zmq.SUBSCRIBE, protocol.TOPIC_EMOTION)
        sock.setsockopt(zmq.SUBSCRIBE, protocol.TOPIC_STATUS)
        sock.connect(events)
        socks.append(sock)
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    try:
        joined: set[int] = set()
        deadline = time.monotonic() + 30
        while len(joined) < subscribers:  # the slow-joiner guard: one status beat each
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(joined)} of {subscribers} subscribers joined")
            for sock, _ in poller.poll(100):
                i = socks.index(sock)
                if sock.recv_multipart()[0] == protocol.TOPIC_STATUS:
                    joined.add(i)

        parent.send(("publish", rate, seconds))
        received: list[list[tuple[float, bytes]]] = [[] for _ in socks]
        done = None
        quiet_until = None
        while True:
            for sock, _ in poller.poll(50):
                i = socks.index(sock)
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frames[0] == protocol.TOPIC_EMOTION:
                        received[i].append((time.time(), frames[1]))
            if done is None and parent.poll():
                done = parent.recv()[1]
                quiet_until = time.monotonic() + 1.0  # the last events are still in flight
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
        parent.send(("stop",))
    finally:
        for sock in socks:
            sock.close(linger=0)
        zctx.term()
        server.join(10)

    latencies: list[float] = []
    gaps_per_sub: list[int] = []
    counts: list[int] = []
    for messages in received:
        seqs = []
        for t_recv, payload in messages:
            msg = protocol.decode(payload, max_bytes=protocol.MAX_EVENT_BYTES)
            seqs.append(msg["seq"])
            latencies.append((t_recv - msg["body"]["t_capture"]) * 1000)
        counts.append(len(seqs))
        # Every subscriber joined before the first event: it should see seq 1..published. A
        # gap is any of those it did not get (inside the sequence or at its end).
        gaps_per_sub.append(len(set(range(1, (done or 0) + 1)) - set(seqs)))
    return {
        "subscribers": subscribers,
        "rate": rate,
        "seconds": seconds,
        "published": done,
        "received_min": min(counts),
        "received_max": max(counts),
        "gaps_total": sum(gaps_per_sub),
        "subscribers_with_gaps": sum(1 for g in gaps_per_sub if g),
        "latency_ms": summarize(latencies, (50, 90, 99)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fan-out of emotion events from the daemon's server to many subscribers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--subscribers", type=int, default=50, help="SUB sockets")
    parser.add_argument("--rate", type=float, default=30.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to publish")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    r = run(args.subscribers, args.rate, args.seconds)
    if args.json:
        print(dump_json(r))
        return 0
    lat = r["latency_ms"]
    print(
        f"{r['subscribers']} subscribers, {r['rate']:g} events/s for {r['seconds']:g} s: "
        f"{r['published']} events published, each subscriber received "
        f"{r['received_min']}..{r['received_max']}\n"
    )
    print(
        table(
            ["gaps", "subs with gaps", "p50 ms", "p90 ms", "p99 ms", "max ms", "samples"],
            [
                [
                    r["gaps_total"],
                    r["subscribers_with_gaps"],
                    lat["p50"],
                    lat["p90"],
                    lat["p99"],
                    lat["max"],
                    lat["n"],
                ]
            ],
        )
    )
    ok = r["gaps_total"] == 0 and lat["p99"] < 10
    print(f"\ntargets: 0 gaps and p99 < 10 ms: {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
