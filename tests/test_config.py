"""``daemon.config.load_config``: precedence, validation, loopback-only binds, and the CLI's exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import (
    DEFAULT_MODEL,
    ConfigError,
    DaemonConfig,
    is_loopback_endpoint,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with its own HOME and XDG dirs, so the developer's own config never leaks in."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
    }


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_work_and_resolve_paths(env: dict[str, str], tmp_path: Path) -> None:
    cfg = load_config([], env)
    assert cfg.source == "auto" and cfg.llm == "auto" and cfg.llm_model == "mistral"
    assert cfg.events == "tcp://127.0.0.1:5680" and cfg.control == "tcp://127.0.0.1:5681"
    assert cfg.model == DEFAULT_MODEL and cfg.model.name == "emotion_resnet50.pt"
    assert cfg.state_dir == tmp_path / "xdg-state" / "emotion-sidecar"
    assert cfg.lock_path == cfg.state_dir / "emotiond.lock"  # no XDG_RUNTIME_DIR here
    assert cfg.config_file is None

    run = load_config([], {**env, "XDG_RUNTIME_DIR": str(tmp_path / "run")})
    assert run.lock_path == tmp_path / "run" / "emotion-sidecar" / "emotiond.lock"

    no_xdg = load_config([], {"HOME": str(tmp_path / "h")})
    assert no_xdg.state_dir == tmp_path / "h" / ".local" / "state" / "emotion-sidecar"


def test_precedence_defaults_toml_env_flags(env: dict[str, str], tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path / "xdg-config" / "emotion-sidecar" / "emotiond.toml",
        'fps = 12.5\nllm = "none"\nllm_model = "from-toml"\nsmoothing = 0.5\n'
        'status-interval = 2\nsource = "sample"\n',
    )
    only_toml = load_config([], env)
    assert only_toml.config_file == toml
    assert (only_toml.fps, only_toml.llm, only_toml.llm_model, only_toml.smoothing) == (
        12.5,
        "none",
        "from-toml",
        0.5,
    )
    assert only_toml.status_interval == 2.0 and only_toml.threads == DaemonConfig().threads

    environ = {
        **env,
        "EMOTIOND_FPS": "20",
        "EMOTIOND_LLM_MODEL": "from-env",
        "EMOTIOND_LOOP_VIDEO": "no",
    }
    with_env = load_config([], environ)
    assert (with_env.fps, with_env.llm_model, with_env.loop_video) == (20.0, "from-env", False)
    assert with_env.llm == "none" and with_env.smoothing == 0.5  # still from the file

    flags = load_config(["--fps", "7", "--llm-model", "from-flag", "--loop-video"], environ)
    assert (flags.fps, flags.llm_model, flags.loop_video) == (7.0, "from-flag", True)
    assert flags.llm == "none"


def test_explicit_config_file_beats_the_xdg_one(env: dict[str, str], tmp_path: Path) -> None:
    write_toml(tmp_path / "xdg-config" / "emotion-sidecar" / "emotiond.toml", "fps = 1\n")
    via_env = write_toml(tmp_path / "env.toml", "[emotiond]\nfps = 2\n")
    via_flag = write_toml(tmp_path / "flag.toml", "fps = 3\n")
    assert load_config([], {**env, "EMOTIOND_CONFIG": str(via_env)}).fps == 2.0
    assert (
        load_config(["--config", str(via_flag)], {**env, "EMOTIOND_CONFIG": str(via_env)}).fps
        == 3.0
    )
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(["--config", str(tmp_path / "missing.toml")], env)


def test_prompt_template_from_file_and_its_check(env: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "prompt.txt"
    good.write_text("Intent {intent}; emotions {emotions}", encoding="utf-8")
    assert load_config(["--prompt-file", str(good)], env).prompt_template == good.read_text()
    with pytest.raises(ConfigError, match=r"lacks \{emotions\}"):
        load_config(["--prompt-template", "only {intent}"], env)


@pytest.mark.parametrize(
    ("argv", "extra_env", "match"),
    [
        (["--fps", "0"], {}, "fps must be > 0"),
        (["--fps", "fast"], {}, "'fast' is not valid"),
        (["--smoothing", "1.5"], {}, "smoothing"),
        (["--llm", "gpt"], {}, "llm must be one of"),
        (["--device", "tpu"], {}, "device must be one of"),
        (["--log-level", "chatty"], {}, "log_level"),
        (["--camera-index", "-1"], {}, "camera_index"),
        (["--source", "webcam:x"], {}, "webcam:N"),
        (["--source", "/no/such/clip.mp4"], {}, "neither auto"),
        (["--source", "video:/no/such/clip.mp4"], {}, "no video file"),
        (["--unknown-flag"], {}, "unrecognized arguments"),
        ([], {"EMOTIOND_THREADS": "two"}, "EMOTIOND_THREADS"),
        ([], {"EMOTIOND_ONCE": "maybe"}, "EMOTIOND_ONCE"),
        (["--events", "tcp://127.0.0.1:5681"], {}, "must differ"),
        (["--control", "tcp://127.0.0.1"], {}, "tcp://HOST:PORT"),
        (["--control", "udp://127.0.0.1:5"], {}, "expected tcp://"),
    ],
)
def test_bad_values_are_refused_clearly(
    env: dict[str, str], argv: list[str], extra_env: dict[str, str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(argv, {**env, **extra_env})


def test_bad_toml_key_and_type(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'fsp'"):
        load_config(["--config", str(write_toml(tmp_path / "a.toml", "fsp = 3\n"))], env)
    with pytest.raises(ConfigError, match="threads"):
        load_config(["--config", str(write_toml(tmp_path / "b.toml", "threads = 1.5\n"))], env)
    with pytest.raises(ConfigError, match="config file"):
        load_config(["--config", str(write_toml(tmp_path / "c.toml", "fps = = 3\n"))], env)


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://0.0.0.0:5680",
        "tcp://*:5680",
        "tcp://192.168.1.10:5680",
        "tcp://eth0:5680",
        "tcp://example.com:5680",
        "tcp://[::]:5680",
    ],
)
def test_non_loopback_bind_refused_unless_allowed(env: dict[str, str], endpoint: str) -> None:
    assert not is_loopback_endpoint(endpoint)
    with pytest.raises(ConfigError, match="--allow-remote"):
        load_config(["--events", endpoint], env)
    assert load_config(["--events", endpoint, "--allow-remote"], env).events == endpoint
    with pytest.raises(ConfigError, match="--allow-remote"):
        load_config([], {**env, "EMOTIOND_CONTROL": endpoint})


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:5680",
        "tcp://127.0.0.2:1",
        "tcp://localhost:9",
        "tcp://[::1]:5680",
        "tcp://127.0.0.1:*",
        "ipc:///tmp/emotiond-events",
    ],
)
def test_loopback_endpoints_accepted(env: dict[str, str], endpoint: str) -> None:
    assert load_config(["--events", endpoint], env).events == endpoint


def test_summary_is_plain_and_hides_the_prompt(env: dict[str, str]) -> None:
    cfg = load_config(["--prompt-template", "secret {intent} {emotions}"], env)
    summary = cfg.summary()
    assert summary["prompt_template"] == "<26 characters>"
    assert isinstance(summary["model"], str) and summary["fps"] == 30.0


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_bad_value_exits_2_and_help_documents_every_option(env: dict[str, str]) -> None:
    bad = _run_cli("--fps", "-3", env=env)
    assert bad.returncode == 2, bad.stderr
    assert "fps must be > 0" in bad.stderr

    helped = _run_cli("--help", env=env)
    assert helped.returncode == 0
    for flag in (
        "--source",
        "--model",
        "--events",
        "--control",
        "--allow-remote",
        "--llm",
        "--llm-model",
        "--state-dir",
        "--lock-path",
        "--max-frames",
        "--once",
        "EMOTIOND_FPS",
        "Exit codes",
    ):
        assert flag in helped.stdout


def test_cli_missing_model_exits_3_with_the_training_command(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nothing.pt"
    proc = _run_cli(
        "--model",
        str(missing),
        "--lock-path",
        str(tmp_path / "lock"),
        "--state-dir",
        str(tmp_path / "state"),
        "--source",
        "sample",
        env=env,
    )
    assert proc.returncode == 3, proc.stderr
    assert f"No trained model at {missing}" in proc.stderr
    assert "emotion-train --arch resnet50" in proc.stderr
