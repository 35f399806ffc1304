"""The intent-window summary and the prompt, on hand-built timelines with hand-computed numbers."""

from __future__ import annotations

import json

import msgpack
import pytest

from daemon.analysis.prompt import (
    ANALYSIS_SCHEMA,
    DEFAULT_PROMPT_TEMPLATE,
    check_template,
    parse_answer,
    render_prompt,
    schema_problems,
)
from daemon.analysis.summary import render_emotions, summarize
from daemon.timeline import FaceResult, FrameResult, Timeline
from game_sdk.protocol import CLASSES


def face(fid: int, **probs: float) -> FaceResult:
    vector = tuple(probs.get(c, 0.0) for c in CLASSES)
    top = max(range(len(CLASSES)), key=lambda k: vector[k])
    return FaceResult(fid, (10, 10, 50, 50), vector, vector, CLASSES[top], vector[top])


def frame(seq: int, t: float, *faces: FaceResult) -> FrameResult:
    return FrameResult(seq, t, 640, 480, tuple(faces))


# One player, frames every 0.5 s from 100.5 to 103.5 in the window [100, 104].
PLAYER_SCRIPT = [
    (100.5, {"neutral": 0.7, "happy": 0.1, "surprise": 0.2}),
    (101.0, {"neutral": 0.6, "happy": 0.2, "surprise": 0.2}),
    (101.5, {"surprise": 0.8, "neutral": 0.2}),
    (102.0, {"happy": 0.6, "surprise": 0.3, "neutral": 0.1}),
    (102.5, {"happy": 0.9, "neutral": 0.1}),
    (103.0, {"happy": 0.7, "sad": 0.3}),
    (103.5, {"happy": 0.5, "sad": 0.4, "neutral": 0.1}),
]


@pytest.fixture
def player_timeline() -> Timeline:
    timeline = Timeline()
    for i, (t, probs) in enumerate(PLAYER_SCRIPT):
        timeline.append(frame(i, t, face(1, **probs)))
    timeline.append(frame(99, 110.0, face(1, angry=1.0)))  # outside the window
    return timeline


def test_summary_numbers_by_hand(player_timeline: Timeline) -> None:
    s = summarize(player_timeline.slice(100.0, 104.0), 100.0, 104.0)
    assert (s["duration_s"], s["frames"], s["faces_seen"]) == (4.0, 7, 1)
    # Each frame holds 0.5 s (the last until t_end); the 0.5 s before the first frame has no face.
    assert s["no_face_s"] == 0.5
    assert s["player"] == {"id": 1, "seen_s": 3.5, "samples": 7}
    # Top label time: neutral 1.0 s, surprise 0.5 s, happy 2.0 s, out of 3.5 s.
    assert s["share"] == {"neutral": 0.2857, "surprise": 0.1429, "happy": 0.5714}
    assert s["mean_probs"] == {
        "angry": 0.0,
        "disgust": 0.0,
        "fear": 0.0,
        "happy": 0.4286,  # 3.0 / 7
        "neutral": 0.2571,  # 1.8 / 7
        "sad": 0.1,  # 0.7 / 7
        "surprise": 0.2143,  # 1.5 / 7
    }
    assert s["dominant"] == "happy"
    assert s["peaks"] == [
        {"emotion": "neutral", "p": 0.7, "t": 0.5},
        {"emotion": "surprise", "p": 0.8, "t": 1.5},
        {"emotion": "happy", "p": 0.9, "t": 2.5},
    ]  # sad peaks at 0.4, under the 0.5 threshold
    assert s["transitions"] == [
        {"t": 1.5, "from": "neutral", "to": "surprise"},
        {"t": 2.0, "from": "surprise", "to": "happy"},
    ]
    # Valence per frame: .2 .3 .4 .75 .9 .4 .1 -> mean 3.05/7; slope sum((t-2)*v)/7 = 0.2/7.
    assert s["valence_mean"] == 0.4357
    assert s["valence_trend"] == 0.0286
    assert len(s["curve"]) == 7
    assert s["curve"][2] == {"t": 1.5, "probs": [0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 0.8]}
    assert s["classes"] == list(CLASSES)
    assert (s["t_begin"], s["t_end"]) == (100.0, 104.0)


def test_short_runs_are_flicker_not_transitions(player_timeline: Timeline) -> None:
    s = summarize(player_timeline.slice(100.0, 104.0), 100.0, 104.0, min_dwell_s=0.75)
    # The 0.5 s of surprise no longer counts: neutral goes straight to happy.
    assert s["transitions"] == [{"t": 2.0, "from": "neutral", "to": "happy"}]
    s = summarize(player_timeline.slice(100.0, 104.0), 100.0, 104.0, peak_threshold=0.85)
    assert s["peaks"] == [{"emotion": "happy", "p": 0.9, "t": 2.5}]


def test_player_is_the_longest_seen_face_and_gaps_count_as_no_face() -> None:
    frames = [
        frame(0, 1.0, face(5, angry=0.9, neutral=0.1), face(7, happy=0.8, neutral=0.2)),
        frame(1, 2.0, face(7, happy=0.6, neutral=0.4)),
        frame(2, 3.0, face(7, neutral=0.7, happy=0.3)),  # then 3 s without frames: holds 1 s
        frame(3, 6.0),  # a frame with no face: 0.5 s
        frame(4, 6.5, face(5, angry=0.5, sad=0.5)),  # holds 1 s of the 3.5 s left
    ]
    s = summarize(frames, 0.0, 10.0)
    assert s["faces_seen"] == 2
    assert s["player"] == {"id": 7, "seen_s": 3.0, "samples": 3}  # id 5 is seen for 2 s only
    assert s["no_face_s"] == 6.0  # 10 s minus 4 s with a face
    assert s["share"] == {"happy": 0.6667, "neutral": 0.3333}
    assert s["dominant"] == "happy"
    assert "angry" not in [p["emotion"] for p in s["peaks"]]  # id 5's anger is not the player's


def test_ties_pick_the_lowest_track_id() -> None:
    frames = [frame(0, 0.0, face(9, happy=1.0), face(4, sad=1.0))]
    s = summarize(frames, 0.0, 1.0)
    assert s["player"]["id"] == 4
    assert s["dominant"] == "sad"


def test_empty_window_is_still_a_summary() -> None:
    s = summarize([], 50.0, 53.0)
    assert (s["duration_s"], s["frames"], s["faces_seen"], s["no_face_s"]) == (3.0, 0, 0, 3.0)
    assert s["player"] is None and s["dominant"] is None and s["curve"] == s["peaks"] == []
    text = render_emotions(s)
    assert "No face was visible" in text and "3.0 s" in text


def test_curve_is_resampled_to_at_most_60_points() -> None:
    # 120 frames at bin centres over 6 s: two frames per 0.1 s bin, happy rising from 0 to 1.
    frames = []
    for i in range(120):
        p = i / 119
        frames.append(frame(i, 0.025 + 0.05 * i, face(1, happy=p, neutral=1 - p)))
    s = summarize(frames, 0.0, 6.0)
    curve = s["curve"]
    assert len(curve) == 60
    assert curve[0]["t"] == 0.05 and curve[-1]["t"] == 5.95
    happy = CLASSES.index("happy")
    assert curve[0]["probs"][happy] == round((0 + 1 / 119) / 2, 3)
    assert curve[-1]["probs"][happy] == round((118 / 119 + 1) / 2, 3)
    # happy overtakes neutral at i = 60 (60/119 > 0.5), t = 0.025 + 3.0
    assert s["transitions"] == [{"t": 3.025, "from": "neutral", "to": "happy"}]
    assert s["valence_trend"] == pytest.approx(1 / 5.95, abs=1e-3)  # happy rises 1 per 5.95 s


def test_summary_is_wire_friendly(player_timeline: Timeline) -> None:
    s = summarize(player_timeline.slice(100.0, 104.0), 100.0, 104.0)
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert msgpack.unpackb(msgpack.packb(s), raw=False) == s


def test_render_emotions_reads_the_numbers(player_timeline: Timeline) -> None:
    text = render_emotions(summarize(player_timeline.slice(100.0, 104.0), 100.0, 104.0))
    assert "Duration: 4.0 s, 7 frames" in text
    assert "happy 57%, neutral 29%, surprise 14%" in text
    assert "Dominant emotion: happy." in text
    assert "neutral 0.70 at 0.5 s; surprise 0.80 at 1.5 s; happy 0.90 at 2.5 s" in text
    assert "neutral -> surprise at 1.5 s; surprise -> happy at 2.0 s" in text
    assert "trend +0.029 per second (rising)" in text


# -- prompt ------------------------------------------------------------------------------------


def test_default_template_is_the_specified_one() -> None:
    assert DEFAULT_PROMPT_TEMPLATE == (
        "Player intent: '{intent}'. Here is their emotion data during the desired event:\n"
        "{emotions}\n\nAnalyze how their emotions relate to intent."
    )
    check_template(DEFAULT_PROMPT_TEMPLATE)
    with pytest.raises(ValueError, match="emotions"):
        check_template("Intent: {intent}")


def test_prompt_holds_intent_and_emotion_data(player_timeline: Timeline) -> None:
    emotions = render_emotions(summarize(player_timeline.slice(100.0, 104.0), 100.0, 104.0))
    prompt = render_prompt(DEFAULT_PROMPT_TEMPLATE, "I'm going to open the chest", emotions)
    assert prompt.startswith("Player intent: 'I'm going to open the chest'. Here is their emotion")
    assert emotions in prompt
    assert prompt.endswith("\n\nAnalyze how their emotions relate to intent.")


def test_braces_in_the_intent_cannot_inject() -> None:
    intent = "open {emotions} and {0} and {intent} {"
    prompt = render_prompt("I={intent} E={emotions}", intent, "DATA")
    assert prompt == "I=open {emotions} and {0} and {intent} { E=DATA"
    # Placeholder-looking text in the emotions is left alone too.
    assert render_prompt("{emotions}|{intent}", "x", "{intent}") == "{intent}|x"


def test_parse_answer_valid_invalid_and_off_schema() -> None:
    good = {
        "analysis": " The player was mostly happy. ",
        "verdict": "Eager",
        "alignment": "aligned",
        "emotions": ["happy", "surprise", "happy"],
        "suggestion": "Keep the reveal.",
    }
    text, structured, note = parse_answer(json.dumps(good))
    assert text == "The player was mostly happy." and note is None
    assert structured == {
        "verdict": "Eager",
        "alignment": "aligned",
        "emotions": ["happy", "surprise"],
        "suggestion": "Keep the reveal.",
    }
    text, structured, note = parse_answer("They looked happy.")
    assert (text, structured) == ("They looked happy.", None) and "not JSON" in note
    off = {**good, "alignment": "sideways", "emotions": ["joy"]}
    text, structured, note = parse_answer(json.dumps(off))
    assert text == "The player was mostly happy." and structured is None
    assert "alignment" in note and "joy" in note
    # A raw newline inside a JSON string (as SmolLM2 under llama.cpp's grammar writes) is accepted.
    raw_newline = json.dumps(good).replace("mostly happy.", "mostly\nhappy.")
    text, structured, note = parse_answer(raw_newline)
    assert text == "The player was mostly\nhappy." and structured is not None and note is None
    assert schema_problems([1, 2]) == ["answer is a list, not an object"]
    assert set(ANALYSIS_SCHEMA["required"]) == set(ANALYSIS_SCHEMA["properties"])
