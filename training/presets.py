"""Batched preprocessing on the training device: augmentation for training, the eval transform.

``eval_transform`` is the reference the daemon's numpy/OpenCV preprocessing must match
(``docs/checkpoint.md``): scale to [0, 1], bilinear resize without antialias, replicate channels,
normalise. Augmentations act on whole ``B x 1 x H x W`` batches with one ``affine_grid`` /
``grid_sample`` call, so there is no per-image Python work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Grayscale FER2013 statistics (train split); replicated per channel for 3-channel models.
FER_MEAN = 0.5077
FER_STD = 0.2550


@dataclass(frozen=True)
class Augment:
    """Augmentation strength; ``none`` / ``basic`` / ``full`` name the iterations' recipes."""

    hflip: bool = True
    rotation_deg: float = 10.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear_deg: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    @classmethod
    def preset(cls, name: str) -> Augment | None:
        if name == "none":
            return None
        if name == "basic":
            return cls(hflip=True, rotation_deg=10.0)
        if name == "full":
            return cls(
                hflip=True,
                rotation_deg=10.0,
                translate=0.1,
                scale=(0.9, 1.1),
                shear_deg=5.0,
                brightness=0.3,
                contrast=0.3,
            )
        raise ValueError(f"unknown augmentation preset {name!r} (none, basic, full)")


def eval_transform(
    images: torch.Tensor, *, input_size: int, channels: int, mean: list[float], std: list[float]
) -> torch.Tensor:
    """``B x 1 x H x W`` uint8 -> normalised float ``B x channels x S x S``."""
    x = images.float().div_(255.0)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=False
        )
    if channels != x.shape[1]:
        x = x.expand(-1, channels, -1, -1)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def _random_affine_grid(
    batch: int, aug: Augment, size: int, device: torch.device, gen: torch.Generator | None
) -> torch.Tensor:
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(batch, device=device, generator=gen) * (hi - lo) + lo

    angle = uniform(-aug.rotation_deg, aug.rotation_deg) * (math.pi / 180)
    shear = uniform(-aug.shear_deg, aug.shear_deg) * (math.pi / 180)
    scale = uniform(*aug.scale)
    tx = uniform(-aug.translate, aug.translate) * 2
    ty = uniform(-aug.translate, aug.translate) * 2
    flip = torch.ones(batch, device=device)
    if aug.hflip:
        flip = torch.where(torch.rand(batch, device=device, generator=gen) < 0.5, -flip, flip)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Inverse mapping output->input: rotation+shear, divided by scale, with horizontal flip.
    a = cos / scale * flip
    b = (-sin + torch.tan(shear) * cos) / scale
    c = sin / scale * flip
    d = (cos + torch.tan(shear) * sin) / scale
    theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)
    return F.affine_grid(theta, [batch, 1, size, size], align_corners=False)


def train_transform(
    images: torch.Tensor,
    aug: Augment | None,
    *,
    input_size: int,
    channels: int,
    mean: list[float],
    std: list[float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Augment a uint8 batch on its device, then apply the eval transform's resize and normalisation."""
    if aug is None:
        return eval_transform(images, input_size=input_size, channels=channels, mean=mean, std=std)
    x = images.float().div_(255.0)
    b, device = x.shape[0], x.device
    if x.shape[-1] != input_size:
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=False
        )
    grid = _random_affine_grid(b, aug, input_size, device, generator)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.brightness:
        x = x * (
            1
            + (torch.rand(b, 1, 1, 1, device=device, generator=generator) * 2 - 1) * aug.brightness
        )
    if aug.contrast:
        mu = x.mean(dim=(1, 2, 3), keepdim=True)
        factor = (
            1 + (torch.rand(b, 1, 1, 1, device=device, generator=generator) * 2 - 1) * aug.contrast
        )
        x = (x - mu) * factor + mu
    x = x.clamp_(0, 1)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (x - m) / s
