"""Write and read checkpoints in the format of ``docs/checkpoint.md``.

The checkpoint holds only what inference needs plus the run's provenance; the resumable training
state (optimizer, scheduler, RNG) lives in a separate ``*.state.pt`` so the shipped file stays small.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.models import CLASSES, build_model

FORMAT = "emotion-sidecar-checkpoint"
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import torchvision

    try:
        from importlib.metadata import version

        pkg = version("emotion-sidecar")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        pkg = "unknown"
    return {
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "emotion_sidecar": str(pkg),
    }


def _plain(value: Any) -> Any:
    """Make ``value`` loadable with ``weights_only=True`` (no Paths, tuples become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    input_size: int,
    channels: int,
    mean: list[float],
    std: list[float],
    train_config: dict[str, Any],
    init: str,
    metrics: dict[str, Any],
    epoch: int,
    half: bool = False,
    arch_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint; ``half`` stores float weights as float16."""
    state = {}
    for k, v in unwrap(model).state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v.clone()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": _plain(arch_kwargs or {}),
        "classes": list(CLASSES),
        "input_size": int(input_size),
        "channels": int(channels),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": "bilinear",
        "crop": {"margin": 0.0},
        "state_dict": state,
        "weights_dtype": "float16" if half else "float32",
        "train_config": _plain(train_config),
        "init": init,
        "metrics": _plain(metrics),
        "epoch": int(epoch),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint (weights stay as stored; see ``build_from_checkpoint``)."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an emotion-sidecar checkpoint")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than {FORMAT_VERSION}"
        )
    return ckpt


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the float32 network of a loaded checkpoint, in eval mode."""
    model = build_model(
        ckpt["arch"],
        num_classes=len(ckpt["classes"]),
        in_channels=ckpt["channels"],
        **ckpt.get("arch_kwargs", {}),
    )
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()
