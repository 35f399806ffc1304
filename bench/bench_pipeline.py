"""Pipeline throughput and latency of a real ``emotiond`` with the shipped ResNet-50.

For each face count (default 1 and 4) it starts ``python -m daemon --source sample[:N]`` (the
bundled real FER2013 faces, 640x480, offered at 30 frames/s), subscribes with the real SDK
(``EmotionClient``) and, for ``--seconds`` after a warm-up, records:

- classified frames/s: emotion events per second whose frame had at least one face;
- per-stage latency p50/p90/p99 in ms, from each event's ``stages_ms`` (read by a second, raw
  subscriber through ``game_sdk.protocol``): ``capture`` (time blocked reading the source,
  including the wait for the next paced frame), ``detect``, ``classify``, and ``publish``
  (hand-off to the server thread -> sent on the socket: the event's ``latency_ms`` minus
  ``total``);
- frame-to-event latency p50/p90/p99: the SDK's receipt time minus the event's ``t_capture``.

Targets on a 2-core machine (issue 2): >= 15 classified frames/s with one face, p99 frame-to-event
< 150 ms.

    .venv/bin/python bench/bench_pipeline.py                  # 1 and 4 faces, 15 s each
    .venv/bin/python bench/bench_pipeline.py --faces 1 --seconds 30 --json
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import zmq
from benchlib import daemon_process, dump_json, summarize, table

from game_sdk import (  # after benchlib, which puts the repo on sys.path
    ConnectionState,
    EmotionClient,
    EmotionEvent,
    protocol,
)

STAGES = ("capture", "detect", "classify", "publish")


def measure(
    faces: int, *, seconds: float, warmup: float, model: str | None, threads: int
) -> dict[str, Any]:
    source = "sample" if faces == 1 else f"sample:{faces}"
    with daemon_process(source, model=model, threads=threads) as (events, control):
        client = EmotionClient(control, events, name="bench-pipeline")
        raw = zmq.Context.instance().socket(zmq.SUB)
        protocol.configure_socket(raw, "sub")
        raw.setsockopt(zmq.SUBSCRIBE, protocol.TOPIC_EMOTION)
        raw.connect(events)
        try:
            deadline = time.monotonic() + 180  # model load on a busy machine
            while client.state is not ConnectionState.CONNECTED or client.latest() is None:
                client.poll()
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon sent no emotion event within 180 s")
                time.sleep(0.01)
            end_warmup = time.monotonic() + warmup
            while time.monotonic() < end_warmup:
                client.poll()
                _drain(raw)
                time.sleep(0.001)

            e2e: list[float] = []
            stages: dict[str, list[float]] = {s: [] for s in STAGES}
            with_face = all_faces = total = 0
            dropped_before = client.dropped_events
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                for event in client.poll():
                    if isinstance(event, EmotionEvent):
                        e2e.append((time.time() - event.t_capture) * 1000)
                        total += 1
                        with_face += bool(event.faces)
                        all_faces += len(event.faces) >= faces
                for body in _drain(raw):
                    ms = body.get("stages_ms") or {}
                    for stage in ("capture", "detect", "classify"):
                        if stage in ms:
                            stages[stage].append(ms[stage])
                    if "total" in ms and "latency_ms" in body:
                        stages["publish"].append(max(0.0, body["latency_ms"] - ms["total"]))
                time.sleep(0.0005)
            elapsed = time.monotonic() - t0
            status = client.status.raw if client.status else {}
        finally:
            raw.close(linger=0)
            client.close()
    return {
        "faces": faces,
        "seconds": round(elapsed, 2),
        "events": total,
        "classified_fps": with_face / elapsed,
        "all_faces_found": all_faces / total if total else 0.0,
        "dropped_events": client.dropped_events - dropped_before,
        "stages_ms": {s: summarize(v) for s, v in stages.items()},
        "frame_to_event_ms": summarize(e2e),
        "model": status.get("model"),
        "daemon_fps": status.get("fps"),
    }


def _drain(sock: zmq.Socket) -> list[dict[str, Any]]:
    bodies = []
    while True:
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return bodies
        bodies.append(protocol.decode_event(frames)[1]["body"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Frames/s and per-stage latency of a real emotiond with the ResNet-50.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 4], help="face counts")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds ignored first")
    parser.add_argument("--model", help="checkpoint (default: the daemon's, the ResNet-50)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)

    results = [
        measure(n, seconds=args.seconds, warmup=args.warmup, model=args.model, threads=args.threads)
        for n in args.faces
    ]
    if args.json:
        print(dump_json(results))
        return 0
    model = results[0]["model"] or {}
    print(f"model {model.get('arch')} on {model.get('device')}, source sample, 640x480\n")
    print(
        table(
            ["faces", "classified fps", "all faces found", "events", "dropped"],
            [
                [
                    r["faces"],
                    r["classified_fps"],
                    f"{r['all_faces_found']:.0%}",
                    r["events"],
                    r["dropped_events"],
                ]
                for r in results
            ],
        )
    )
    print("\nlatency in ms (p50 / p90 / p99)\n")
    rows = []
    for r in results:
        for name, s in [*r["stages_ms"].items(), ("frame -> SDK event", r["frame_to_event_ms"])]:
            rows.append([r["faces"], name, s["p50"], s["p90"], s["p99"], s["max"]])
    print(table(["faces", "stage", "p50", "p90", "p99", "max"], rows))
    one = next((r for r in results if r["faces"] == 1), None)
    if one is not None:
        ok_fps = one["classified_fps"] >= 15
        ok_lat = one["frame_to_event_ms"]["p99"] < 150
        print(
            f"\ntargets (1 face): >= 15 classified fps: {'met' if ok_fps else 'MISSED'}; "
            f"p99 frame -> event < 150 ms: {'met' if ok_lat else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
