"""The Ollama API double, checked against the real ``ollama`` client (and raw httpx where the client
has no call), so tests that rely on it rely on something that behaves like ``ollama serve``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest

from daemon.analysis.prompt import ANALYSIS_SCHEMA, schema_problems
from tests.ollama_double import BAD_JSON_CONTENT, OllamaDouble

pytestmark = pytest.mark.timeout(30)
MESSAGES = [{"role": "user", "content": "How did the player feel?"}]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(drip_interval=0.05) as d:
        yield d


@pytest.fixture
def client(double: OllamaDouble) -> ollama.Client:
    return ollama.Client(host=double.host, timeout=5)


def test_listing_show_version_and_root(double: OllamaDouble, client: ollama.Client) -> None:
    listed = client.list()
    assert [m.model for m in listed.models] == ["mistral:latest"]
    assert listed.models[0].details.parameter_size == "7.2B"
    shown = client.show("mistral")
    assert shown.details.family == "llama" and shown.modelinfo["llama.context_length"] == 32768
    assert "completion" in shown.capabilities
    assert httpx.get(f"{double.host}/api/version").json() == {"version": "0.12.6"}
    root = httpx.get(double.host)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert httpx.head(double.host).status_code == 200
    assert [r.path for r in double.requests[:2]] == ["/api/tags", "/api/show"]
    assert double.bodies("/api/show") == [{"model": "mistral"}]


def test_chat_with_a_schema_streams_valid_json(double: OllamaDouble, client: ollama.Client) -> None:
    chunks = list(
        client.chat(model="mistral", messages=MESSAGES, format=ANALYSIS_SCHEMA, stream=True)
    )
    assert len(chunks) > 2 and all(not c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.done_reason == "stop"
    assert final.total_duration and final.load_duration and final.eval_count == len(chunks) - 1
    content = "".join(c.message.content or "" for c in chunks)
    assert schema_problems(json.loads(content)) == []
    body = double.bodies("/api/chat")[0]
    assert body["model"] == "mistral" and body["stream"] is True
    assert body["format"] == ANALYSIS_SCHEMA and body["messages"] == MESSAGES


def test_ndjson_framing_on_the_wire(double: OllamaDouble) -> None:
    payload = {"model": "mistral", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{double.host}/api/chat", json=payload) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in response.iter_lines()]
    assert lines[-1]["done"] is True and all(line["done"] is False for line in lines[:-1])


def test_non_streaming_chat_and_generate(client: ollama.Client) -> None:
    reply = client.chat(model="mistral", messages=MESSAGES, stream=False)
    assert reply.done and reply.message.role == "assistant" and reply.message.content
    generated = client.generate(model="mistral", prompt="Hello", stream=False)
    assert generated.done and generated.response
    streamed = list(client.generate(model="mistral:latest", prompt="Hello", stream=True))
    assert "".join(c.response for c in streamed) == generated.response
    loaded = client.generate(model="mistral", prompt="", keep_alive="5m")
    assert loaded.done_reason == "load" and loaded.response == ""


def test_missing_model(double: OllamaDouble, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="llama3", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.error == 'model "llama3" not found, try pulling it first'
    double.set_mode("missing_model")
    assert client.list().models == []
    for call in (
        lambda: client.show("mistral"),
        lambda: list(client.chat(model="mistral", messages=MESSAGES, stream=True)),
    ):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 404 and "not found" in info.value.error


@pytest.mark.parametrize(("mode", "status"), [("http_500", 500), ("http_503", 503)])
def test_server_errors(double: OllamaDouble, client: ollama.Client, mode: str, status: int) -> None:
    double.set_mode(mode)
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="mistral", messages=MESSAGES)
    assert info.value.status_code == status
    with pytest.raises(ollama.ResponseError) as info:
        list(client.chat(model="mistral", messages=MESSAGES, stream=True))
    assert info.value.status_code == status
    assert client.list().models  # listing still works, as with a busy runner


def test_errors_for_a_limited_number_of_calls(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_mode("http_503", times=2)
    for _ in range(2):
        with pytest.raises(ollama.ResponseError):
            client.chat(model="mistral", messages=MESSAGES)
    assert client.chat(model="mistral", messages=MESSAGES).done
    assert double.mode == "ok" and double.count("/api/chat") == 3


def test_refuse_closes_the_port_and_reopens_it(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_mode("refuse")
    with pytest.raises(ConnectionError):  # the client's own translation (non-streaming)
        client.list()
    with pytest.raises(httpx.ConnectError):  # streaming calls surface httpx's error
        list(client.chat(model="mistral", messages=MESSAGES, stream=True))
    double.set_mode("ok")
    assert client.list().models


def test_hang_answers_nothing(double: OllamaDouble) -> None:
    double.set_mode("hang")
    slow = ollama.Client(host=double.host, timeout=httpx.Timeout(0.4, connect=1.0))
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        slow.chat(model="mistral", messages=MESSAGES)
    assert 0.35 < time.monotonic() - t0 < 2.0


def test_drip_defeats_a_read_timeout(double: OllamaDouble) -> None:
    """Bytes keep coming, so a 0.3 s read timeout never fires though no line completes in 1 s."""
    double.set_mode("drip")
    payload = {"model": "mistral", "messages": MESSAGES, "stream": True}
    received = b""
    t0 = time.monotonic()
    with httpx.stream("POST", f"{double.host}/api/chat", json=payload, timeout=0.3) as response:
        assert response.status_code == 200
        for piece in response.iter_raw():
            received += piece
            if time.monotonic() - t0 > 1.0:
                break
    assert 5 < len(received) and b"\n" not in received


def test_break_stream_cuts_the_connection_midway(
    double: OllamaDouble, client: ollama.Client
) -> None:
    double.set_mode("break_stream")
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in client.chat(model="mistral", messages=MESSAGES, stream=True):
            got.append(chunk)
    assert len(got) == 2 and not any(c.done for c in got)


def test_bad_json_ignores_the_schema(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_mode("bad_json")
    reply = client.chat(model="mistral", messages=MESSAGES, format=ANALYSIS_SCHEMA)
    assert reply.message.content == BAD_JSON_CONTENT
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.message.content)
