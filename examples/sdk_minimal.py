"""The smallest game loop with emotion-sidecar: live emotions each frame, one intent, its analysis.

Start a daemon first (`emotiond --source sample`), then: python examples/sdk_minimal.py
"""

import argparse
import time

from game_sdk import DEFAULT_CONTROL_ENDPOINT, DEFAULT_EVENTS_ENDPOINT, Analysis, EmotionClient

parser = argparse.ArgumentParser(description="A minimal game loop using the emotion-sidecar SDK.")
parser.add_argument("--seconds", type=float, default=10.0, help="how long to run (default 10)")
parser.add_argument("--control", default=DEFAULT_CONTROL_ENDPOINT, help="daemon control endpoint")
parser.add_argument("--events", default=DEFAULT_EVENTS_ENDPOINT, help="daemon events endpoint")
args = parser.parse_args()

# --- the part to paste into a game -------------------------------------------------------------
client = EmotionClient(args.control, args.events, name="sdk-minimal")  # never blocks
chest = client.begin_intent("open the chest")  # what the player said they are about to do
start = last_print = time.monotonic()
while (now := time.monotonic()) - start < args.seconds:  # the game loop, ~60 frames/s
    for event in client.poll():  # what arrived since the last frame; never blocks
        if isinstance(event, Analysis):
            print(f"analysis of {event.intent!r}: {event.status} ({event.reason or 'llm'})")
            print("  ", event.text or f"dominant emotion: {event.summary.get('dominant')}")
    if chest is not None and now - start >= args.seconds / 2:
        client.end_intent(chest)  # the event is over: its analysis arrives through poll()
        chest = None
    latest = client.latest()  # the current emotion, or None before the first event
    if latest and latest.primary and now - last_print >= 1.0:
        print(f"player: {latest.primary.label} {latest.primary.confidence:.2f}")
        last_print = now
    time.sleep(1 / 60)  # stands in for rendering a frame
client.close()
