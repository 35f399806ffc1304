"""AnalysisService: intents in, exactly one persisted analysis per ended intent out, against the
Ollama API double (real HTTP) and a real Timeline, with state on a real directory."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.analysis.backends import EmbeddedBackend, LLMFailure
from daemon.analysis.service import AnalysisService
from daemon.analysis.store import JobStore, intent_key, write_json_atomic
from daemon.analysis.summary import render_emotions, summarize
from daemon.timeline import FaceResult, FrameResult, Timeline
from game_sdk import protocol
from tests.ollama_double import OllamaDouble

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0  # wall-clock times of the hand-built timeline


def _face(probs: dict[str, float], fid: int = 1) -> FaceResult:
    vector = tuple(probs.get(c, 0.0) for c in protocol.CLASSES)
    top = max(range(len(vector)), key=vector.__getitem__)
    return FaceResult(fid, (100, 80, 120, 120), vector, vector, protocol.CLASSES[top], vector[top])


@pytest.fixture
def timeline() -> Timeline:
    """20 s at 10 fps: neutral for 5 s, then happy; a second face (id 2) for the last 10 s."""
    tl = Timeline()
    for i in range(200):
        t = T0 + i * 0.1
        faces = [
            _face({"neutral": 0.8, "happy": 0.2} if i < 50 else {"happy": 0.9, "neutral": 0.1})
        ]
        if i >= 100:
            faces.append(_face({"sad": 0.7, "neutral": 0.3}, fid=2))
        tl.append(FrameResult(i, t, 640, 480, tuple(faces)))
    return tl


class Inbox:
    """What ``deliver`` was called with, from the worker thread."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, client_id: str, body: dict[str, Any]) -> None:
        with self._cond:
            self.items.append((client_id, body))
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as d:
        yield d


@pytest.fixture
def make_service(
    tmp_path: Path, timeline: Timeline, double: OllamaDouble
) -> Iterator[Callable[..., tuple[AnalysisService, Inbox]]]:
    started: list[AnalysisService] = []

    def make(**kwargs: Any) -> tuple[AnalysisService, Inbox]:
        inbox = Inbox()
        args: dict[str, Any] = {
            "timeline": timeline,
            "state_dir": tmp_path / "state",
            "deliver": inbox,
            "host": double.host,
            "connect_timeout": 0.5,
            "request_timeout": 2.0,
            "backoff_s": 0.05,
            **kwargs,
        }
        service = AnalysisService(**args)
        service.start()
        started.append(service)
        return service, inbox

    yield make
    for service in started:
        service.stop(timeout=3.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def as_wire(body: dict[str, Any]) -> dict[str, Any]:
    """Round-trip a body through the real protocol encoder and validating decoder."""
    msg = protocol.make_message("analysis", body, seq=1, session="s" * 8)
    return protocol.decode(protocol.encode(msg))["body"]


def test_intent_to_delivered_analysis(
    make_service: Callable[..., tuple[AnalysisService, Inbox]],
    double: OllamaDouble,
    timeline: Timeline,
) -> None:
    service, inbox = make_service()
    assert service.begin("game-1", "i1", "I'm going to open the chest", T0 + 2.0)
    assert service.end("game-1", "i1", T0 + 8.0) == "queued"
    [(client, body)] = inbox.wait(1)
    assert client == "game-1"
    assert body["status"] == "ok" and body["reason"] is None
    assert (body["intent_id"], body["intent"]) == ("i1", "I'm going to open the chest")
    assert (body["t_begin"], body["t_end"]) == (T0 + 2.0, T0 + 8.0)
    expected = summarize(timeline.slice(T0 + 2.0, T0 + 8.0), T0 + 2.0, T0 + 8.0)
    assert body["summary"] == expected
    assert body["summary"]["transitions"] == [{"t": 3.0, "from": "neutral", "to": "happy"}]
    llm = body["llm"]
    assert (llm["backend"], llm["model"], llm["attempts"]) == ("ollama", "mistral", 1)
    assert llm["text"] == "Canned analysis from the Ollama double."
    assert llm["structured"]["alignment"] == "aligned"
    assert set(llm["timings"]) == {"queue_ms", "llm_ms", "total_ms"}
    assert as_wire(body) == body
    # What Mistral was asked: the intent and the rendered emotion data.
    (chat,) = double.bodies("/api/chat")
    prompt = chat["messages"][-1]["content"]
    assert "Player intent: 'I'm going to open the chest'" in prompt
    assert render_emotions(expected) in prompt
    assert double.count("/api/generate") == 1  # the warm-up
    # Resent until acknowledged, then forgotten; the same intent cannot come back.
    assert service.undelivered("game-1") == [body]
    assert service.acknowledge("game-1", "i1") is True
    assert service.undelivered("game-1") == [] and service.acknowledge("game-1", "i1") is False
    assert service.begin("game-1", "i1", "again", T0 + 9.0) is False
    assert service.end("game-1", "i1", T0 + 9.5) == "duplicate"
    status = service.status()
    assert (status["backend"], status["state"], status["done"], status["queue"]) == (
        "ollama",
        "ready",
        1,
        0,
    )


def test_intake_answers(make_service: Callable[..., tuple[AnalysisService, Inbox]]) -> None:
    service, _ = make_service()
    assert service.end("game-1", "never-begun", T0 + 1.0) == "unknown_intent"
    assert service.begin("game-1", "a", "jump", T0 + 5.0) is True
    assert service.begin("game-1", "a", "jump", T0 + 5.0) is False
    assert service.end("game-1", "a", T0 + 4.0) == "invalid"  # ends before it began
    assert service.end("game-1", "a", T0 + 6.0) == "queued"
    assert service.end("game-1", "a", T0 + 6.0) == "duplicate"


def test_state_files_are_private(
    tmp_path: Path, make_service: Callable[..., tuple[AnalysisService, Inbox]]
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    service, inbox = make_service()
    service.begin("game-1", "a", "dodge", T0 + 1.0)
    service.begin("game-1", "b", "parry", T0 + 1.0)
    service.end("game-1", "a", T0 + 3.0)
    inbox.wait(1)
    dirs = [state, *[p for p in state.rglob("*") if p.is_dir()]]
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in dirs} >= {"state", "intents", "jobs", "results", "done"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in dirs)
    assert len(files) == 2  # intent b, result a
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_no_retry_when_the_model_is_missing(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    service, inbox = make_service(retries=3)
    wait_until(lambda: service.status()["state"] == "ready")
    double.set_mode("missing_model")
    service.begin("game-1", "a", "open the door", T0 + 1.0)
    service.end("game-1", "a", T0 + 7.0)
    [(_, body)] = inbox.wait(1)
    assert (body["status"], body["reason"]) == ("failed", "model_missing")
    assert body["llm"]["attempts"] == 1 and "ollama pull mistral" in body["llm"]["error"]
    assert body["summary"]["dominant"] == "neutral"  # the game still gets its numbers (4 s vs 2 s)
    assert double.count("/api/chat") == 1
    assert as_wire(body) == body
    status = service.status()
    assert status["state"] == "model_missing" and status["failed"] == 1
    assert status["last_error"]["reason"] == "model_missing"


def test_transient_errors_are_retried_with_backoff(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    service, inbox = make_service(retries=3, backoff_s=0.1)
    wait_until(lambda: service.status()["state"] == "ready")
    double.set_mode("http_503", times=2)
    service.begin("game-1", "a", "open the door", T0 + 1.0)
    service.end("game-1", "a", T0 + 7.0)
    [(_, body)] = inbox.wait(1)
    assert body["status"] == "ok" and body["llm"]["attempts"] == 3
    times = [r.t for r in double.requests if r.path == "/api/chat"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.19  # 0.1 s, then 0.2 s


def test_retries_run_out_into_an_explicit_failure(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    service, inbox = make_service(retries=1)
    wait_until(lambda: service.status()["state"] == "ready")
    double.set_mode("http_500")
    service.begin("game-1", "a", "open the door", T0 + 1.0)
    service.end("game-1", "a", T0 + 7.0)
    [(_, body)] = inbox.wait(1)
    assert (body["status"], body["reason"], body["llm"]["attempts"]) == ("failed", "llm_error", 2)
    assert double.count("/api/chat") == 2


def test_a_hung_server_times_out_per_request(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    service, inbox = make_service(retries=0, request_timeout=0.5)
    wait_until(lambda: service.status()["state"] == "ready")
    double.set_mode("hang")
    service.begin("game-1", "a", "open the door", T0 + 1.0)
    t0 = time.monotonic()
    service.end("game-1", "a", T0 + 7.0)
    [(_, body)] = inbox.wait(1)
    assert (body["status"], body["reason"]) == ("failed", "timeout")
    assert 0.45 < time.monotonic() - t0 < 1.5


def test_stop_mid_queue_then_restart_gives_one_result_per_intent(
    tmp_path: Path,
    make_service: Callable[..., tuple[AnalysisService, Inbox]],
    double: OllamaDouble,
) -> None:
    double.latency = 0.4  # each chat takes 0.4 s
    first, inbox1 = make_service()
    intents = [f"i{k}" for k in range(4)]
    for k, intent_id in enumerate(intents):
        first.begin("game-1", intent_id, f"intent {k}", T0 + k)
        assert first.end("game-1", intent_id, T0 + k + 3.0) == "queued"
    inbox1.wait(1)
    first.stop()  # the next job is mid-request: cancelled, it stays on disk
    delivered_first = [b["intent_id"] for _, b in inbox1.items]
    assert 1 <= len(delivered_first) < len(intents)
    assert len(list((tmp_path / "state" / "jobs").iterdir())) >= 2

    double.latency = 0.0
    second, inbox2 = make_service()
    wait_until(lambda: len(second.undelivered("game-1")) == len(intents))
    wait_until(lambda: second.status()["queue"] == 0 and second.status()["in_flight"] is None)
    delivered_second = [b["intent_id"] for _, b in inbox2.items]
    # Nothing delivered twice, nothing lost: a job cut short re-ran after the restart.
    delivered = delivered_first + delivered_second
    assert len(delivered) == len(set(delivered)) and len(delivered_second) >= 2
    # Results stay until acknowledged, across the restart too: exactly one per intent.
    pending = second.undelivered("game-1")
    assert sorted(b["intent_id"] for b in pending) == intents
    assert all(b["status"] == "ok" for b in pending)
    assert len(list((tmp_path / "state" / "results").iterdir())) == len(intents)
    assert list((tmp_path / "state" / "jobs").iterdir()) == []


def test_a_crash_after_the_result_was_written_does_not_run_the_job_again(
    tmp_path: Path,
    make_service: Callable[..., tuple[AnalysisService, Inbox]],
    double: OllamaDouble,
) -> None:
    """The kill -9 window between writing the result and removing the job."""
    store = JobStore(tmp_path / "state")
    store.open()
    store.add_intent("game-1", "a", "open", T0)
    job = {
        "client": "game-1",
        "intent_id": "a",
        "intent": "open",
        "t_begin": T0,
        "t_end": T0 + 1,
        "summary": summarize([], T0, T0 + 1),
        "enqueued_at": time.time(),
    }
    key = store.add_job(job)
    body = {"intent_id": "a", "intent": "open", "status": "ok", "reason": None,
            "summary": job["summary"], "llm": None, "t_begin": T0, "t_end": T0 + 1}  # fmt: skip
    record = {"client": "game-1", "intent_id": "a", "body": body, "created": time.time()}
    write_json_atomic(store.root / "results" / f"{key}.json", record)  # ...then killed
    service, inbox = make_service()
    wait_until(lambda: service.status()["state"] == "ready")
    assert service.undelivered("game-1") == [body]
    assert service.status()["queue"] == 0 and inbox.items == []
    assert double.count("/api/chat") == 0
    assert service.end("game-1", "a", T0 + 1) == "duplicate"


def test_begun_intents_survive_a_restart(
    make_service: Callable[..., tuple[AnalysisService, Inbox]],
) -> None:
    first, _ = make_service()
    assert first.begin("game-1", "a", "climb", T0 + 1.0)
    first.stop()
    second, inbox = make_service()
    assert second.end("game-1", "a", T0 + 4.0) == "queued"
    [(_, body)] = inbox.wait(1)
    assert body["intent"] == "climb" and body["status"] == "ok"


def test_overlapping_windows_of_two_clients_stay_apart(
    make_service: Callable[..., tuple[AnalysisService, Inbox]],
) -> None:
    service, inbox = make_service()
    # The same intent id from two games: ids are per client.
    assert service.begin("game-A", "x", "open the chest", T0 + 1.0)
    assert service.begin("game-B", "x", "fight the boss", T0 + 3.0)
    assert service.end("game-A", "x", T0 + 6.0) == "queued"
    assert service.end("game-B", "x", T0 + 9.0) == "queued"
    got = dict(inbox.wait(2))
    assert got["game-A"]["intent"] == "open the chest"
    assert got["game-B"]["intent"] == "fight the boss"
    assert got["game-A"]["summary"]["duration_s"] == 5.0
    assert got["game-B"]["summary"]["duration_s"] == 6.0
    assert [b["intent"] for b in service.undelivered("game-A")] == ["open the chest"]
    assert service.acknowledge("game-A", "x")
    assert service.undelivered("game-A") == []
    assert [b["intent"] for b in service.undelivered("game-B")] == ["fight the boss"]
    assert intent_key("game-A", "x") != intent_key("game-B", "x")


def test_full_queue_still_gives_a_summary(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    double.latency = 0.5
    service, inbox = make_service(queue_max=1)
    wait_until(lambda: service.status()["state"] == "ready")
    for k in range(3):
        service.begin("game-1", f"i{k}", f"intent {k}", T0 + k)
    assert service.end("game-1", "i0", T0 + 5.0) == "queued"
    wait_until(lambda: service.status()["in_flight"] == "i0")
    assert service.end("game-1", "i1", T0 + 5.0) == "queued"
    assert service.end("game-1", "i2", T0 + 5.0) == "busy"
    [busy] = [b for b in service.undelivered("game-1") if b["intent_id"] == "i2"]
    assert (busy["status"], busy["reason"], busy["llm"]) == ("summary_only", "busy", None)
    assert busy["summary"]["frames"] == 31
    assert as_wire(busy) == busy
    assert sorted(b["intent_id"] for _, b in inbox.wait(2)) == ["i0", "i1"]


def test_backend_none_gives_summaries_only(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    service, inbox = make_service(backend_mode="none")
    service.begin("game-1", "a", "sneak past", T0 + 1.0)
    service.end("game-1", "a", T0 + 4.0)
    [(_, body)] = inbox.wait(1)
    assert (body["status"], body["reason"]) == ("summary_only", "no_llm")
    assert body["llm"]["backend"] == "none" and "disabled" in body["llm"]["note"]
    assert body["llm"]["text"] is None and body["llm"]["timings"]["llm_ms"] == 0.0
    assert body["summary"]["dominant"] == "neutral"
    assert double.requests == []
    assert service.status()["state"] == "none" and service.status()["backend"] == "none"


def test_a_window_without_faces_skips_the_llm(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    service, inbox = make_service()
    service.begin("game-1", "a", "look away", T0 + 100.0)  # after the timeline's last frame
    service.end("game-1", "a", T0 + 105.0)
    [(_, body)] = inbox.wait(1)
    assert (body["status"], body["reason"]) == ("summary_only", "no_frames")
    assert body["summary"]["no_face_s"] == 5.0
    assert double.count("/api/chat") == 0


@pytest.mark.skipif(EmbeddedBackend.available(), reason="auto would fall back to the embedded LLM")
def test_auto_without_ollama_then_ollama_appears(
    make_service: Callable[..., tuple[AnalysisService, Inbox]], double: OllamaDouble
) -> None:
    double.set_mode("refuse")
    service, inbox = make_service(reprobe_s=0.0)
    wait_until(lambda: service.status()["state"] == "unreachable")
    assert "ollama" in service.status()["note"].lower()
    service.begin("game-1", "a", "open", T0 + 1.0)
    service.end("game-1", "a", T0 + 4.0)
    [(_, body)] = inbox.wait(1)
    assert (body["status"], body["reason"]) == ("summary_only", "ollama_unreachable")
    assert body["llm"]["backend"] == "none" and "not installed" in body["llm"]["note"]
    double.set_mode("ok")
    service.begin("game-1", "b", "open again", T0 + 1.0)
    service.end("game-1", "b", T0 + 4.0)
    items = inbox.wait(2)
    assert items[1][1]["status"] == "ok" and service.status()["backend"] == "ollama"


def test_ollama_mode_fails_loudly_at_start(
    tmp_path: Path, double: OllamaDouble, timeline: Timeline
) -> None:
    double.set_mode("refuse")
    service = AnalysisService(
        timeline=timeline,
        state_dir=tmp_path / "state",
        deliver=Inbox(),
        backend_mode="ollama",
        host=double.host,
        connect_timeout=0.5,
    )
    t0 = time.monotonic()
    with pytest.raises(LLMFailure) as info:
        service.start()
    assert info.value.reason == "ollama_unreachable" and time.monotonic() - t0 < 3.0
    double.set_mode("missing_model")
    with pytest.raises(LLMFailure) as info:
        AnalysisService(
            timeline=timeline,
            state_dir=tmp_path / "state",
            deliver=Inbox(),
            backend_mode="ollama",
            host=double.host,
        ).start()
    assert info.value.reason == "model_missing" and "ollama pull mistral" in info.value.message
    assert double.count("/api/chat") == double.count("/api/generate") == 0
    with pytest.raises(ValueError):
        AnalysisService(
            timeline=timeline, state_dir=tmp_path, deliver=Inbox(), prompt_template="{intent}"
        )
