"""Weight initialisation: torchvision ImageNet weights, a local (possibly partial) file, or scratch.

No full ImageNet weights can be downloaded on an offline machine, so a partial state dict (for
example the stem, layer1 and layer2 of ResNet-50) is loaded non-strictly and the missing keys are
reported. The returned string says exactly what was used; it is logged and stored in the checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def _load_partial(model: nn.Module, path: str) -> str:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    result = model.load_state_dict(usable, strict=False)
    total = sum(v.numel() for v in own.values())
    loaded = sum(v.numel() for v in usable.values())
    log.info(
        "loaded %d/%d tensors (%.1f%% of values) from %s; %d missing, %d skipped (shape or name mismatch)",
        len(usable),
        len(own),
        100 * loaded / total,
        path,
        len(result.missing_keys),
        len(skipped),
    )
    if not usable:
        raise ValueError(f"{path}: no tensor matches the model's names and shapes")
    share = f"{100 * loaded / total:.1f}%"
    return (
        f"partial:{Path(path).name} ({len(usable)} tensors, {share} of values)"
        if result.missing_keys
        else f"file:{Path(path).name}"
    )


def _imagenet(model: nn.Module, arch: str) -> str:
    if arch != "resnet50":
        raise ValueError(f"no ImageNet weights exist for {arch}")
    from torchvision.models import ResNet50_Weights

    state = ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if model.conv1.weight.shape[1] != 3:  # type: ignore[union-attr]
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    model.load_state_dict(state, strict=False)
    return "imagenet:IMAGENET1K_V1"


def initialise(model: nn.Module, arch: str, mode: str, weights: str | None) -> str:
    """Initialise ``model`` in place; returns a description of what was used."""
    if weights:
        return _load_partial(model, weights)
    if mode == "scratch":
        return "scratch"
    if mode == "imagenet":
        return _imagenet(model, arch)
    if arch == "resnet50":
        try:
            return _imagenet(model, arch)
        except Exception as exc:  # noqa: BLE001 - offline or no cache: fall back, and say so
            log.warning(
                "ImageNet weights unavailable (%s); training from scratch", type(exc).__name__
            )
    return "scratch"
