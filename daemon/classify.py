"""Emotion classification of face boxes with a checkpoint written by ``training/``.

Used by the pipeline thread only. The checkpoint says how to preprocess (``docs/checkpoint.md``);
this module does it in numpy/OpenCV exactly as training's eval transform does in torch: crop (with
margin, clipped), scale to [0, 1], bilinear resize without antialias, replicate channels,
normalise. ``tests/test_checkpoint_contract.py`` holds the two equal. All faces of a frame go
through the network in one forward pass, from a preallocated input buffer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from game_sdk.protocol import CLASSES

log = logging.getLogger(__name__)

FORMAT = "emotion-sidecar-checkpoint"
SUPPORTED_FORMAT_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "emotion_resnet50.pt"
TRAIN_HINT = (
    "Train one with `emotion-train --arch resnet50 --data DIR --out "
    "daemon/models/emotion_resnet50.pt --half` (DIR: FER2013 with train/ and val/), "
    "or pass --model PATH"
)
Box = tuple[int, int, int, int]


class ModelError(RuntimeError):
    """The checkpoint is missing, unreadable or incompatible (the message says which)."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU raises ModelError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device 'cuda' asked for, but torch sees no CUDA device")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ModelError(f"unknown torch device {name!r}") from exc


def default_threads() -> int:
    """Torch CPU threads for inference: half the cores, 1 to 4 (capture and server need some)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _checked_meta(ckpt: Any, path: Path) -> dict[str, Any]:
    """The checkpoint's metadata after checking every field inference depends on."""

    def bad(what: str) -> ModelError:
        return ModelError(f"{path} is not a usable checkpoint: {what}. {TRAIN_HINT}")

    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(
            f"{path} is not an emotion-sidecar checkpoint (no format tag {FORMAT!r}). {TRAIN_HINT}"
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise bad(f"format_version {version!r}")
    if version > SUPPORTED_FORMAT_VERSION:
        raise ModelError(
            f"{path} has checkpoint format {version}; this daemon reads up to "
            f"{SUPPORTED_FORMAT_VERSION}: update emotion-sidecar"
        )
    if list(ckpt.get("classes") or []) != list(CLASSES):
        raise bad(f"classes {ckpt.get('classes')} are not {list(CLASSES)}")
    size, channels = ckpt.get("input_size"), ckpt.get("channels")
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise bad(f"input_size {size!r}")
    if channels not in (1, 3):
        raise bad(f"channels {channels!r} (1 or 3)")
    for key in ("mean", "std"):
        values = ckpt.get(key)
        if (
            not isinstance(values, list)
            or len(values) not in (1, channels)
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        ):
            raise bad(f"{key} {values!r}")
    if any(s <= 0 for s in ckpt["std"]):
        raise bad(f"std {ckpt['std']!r} must be positive")
    if ckpt.get("interpolation", "bilinear") != "bilinear":
        raise bad(f"interpolation {ckpt.get('interpolation')!r} (only bilinear is supported)")
    margin = (ckpt.get("crop") or {}).get("margin", 0.0)
    if not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
        raise bad(f"crop margin {margin!r}")
    if not isinstance(ckpt.get("arch"), str) or not isinstance(ckpt.get("arch_kwargs", {}), dict):
        raise bad("arch or arch_kwargs missing")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise bad("state_dict is not a dict of tensors")
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


class EmotionClassifier:
    """A loaded checkpoint: ``predict(gray, boxes)`` gives one probability row per box."""

    def __init__(
        self,
        model: torch.nn.Module,
        meta: dict[str, Any],
        device: torch.device,
        path: Path | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = device
        self.path = path
        self.arch: str = meta["arch"]
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.input_size: int = int(meta["input_size"])
        self.channels: int = int(meta["channels"])
        self.margin: float = float((meta.get("crop") or {}).get("margin", 0.0))
        mean = [float(v) for v in meta["mean"]]
        std = [float(v) for v in meta["std"]]
        self._mean = np.asarray(mean * (self.channels // len(mean)), np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(std * (self.channels // len(std)), np.float32).reshape(-1, 1, 1)
        # Equal means and stds (the usual replicated-gray case) let one channel be normalised
        # and copied, instead of normalising each channel.
        self._same_norm = bool(
            np.all(self._mean == self._mean[0]) and np.all(self._std == self._std[0])
        )
        self._buffer = np.empty((4, self.channels, self.input_size, self.input_size), np.float32)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        *,
        threads: int | None = None,
        warmup: bool = True,
    ) -> EmotionClassifier:
        """Load and check a checkpoint; raises :class:`ModelError` saying what to do.

        Args:
            path: the checkpoint (default: the shipped ``daemon/models/emotion_resnet50.pt``).
            device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
            threads: torch CPU threads; ``None`` picks :func:`default_threads`, ``0`` leaves
                torch's own default (the setting is process-wide).
            warmup: run one forward pass now so that the first frame is not slow.
        """
        path = Path(path) if path else DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"No trained model at {path}. {TRAIN_HINT}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated, not a zip, pickled code, ...
            raise ModelError(
                f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                f"{str(exc)[:200]}). {TRAIN_HINT}"
            ) from exc
        meta = _checked_meta(ckpt, path)
        from training.models import build_model  # the single definition of each architecture

        try:
            model = build_model(
                meta["arch"],
                num_classes=len(CLASSES),
                in_channels=int(meta["channels"]),
                **meta.get("arch_kwargs", {}),
            )
            state = {
                k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
            }
            model.load_state_dict(state)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(
                f"{path}: the weights do not fit architecture {meta['arch']!r}: {str(exc)[:300]}"
            ) from exc
        dev = pick_device(device)
        if dev.type == "cpu":
            n = default_threads() if threads is None else threads
            if n > 0:
                torch.set_num_threads(n)
        clf = cls(model, meta, dev, path)
        if warmup:
            clf.predict(
                np.zeros((clf.input_size, clf.input_size), np.uint8),
                [(0, 0, clf.input_size, clf.input_size)],
            )
        log.info(
            "model %s: %s, input %dx%dx%d, val accuracy %s, on %s",
            path.name,
            clf.arch,
            clf.channels,
            clf.input_size,
            clf.input_size,
            (meta.get("metrics") or {}).get("val_accuracy"),
            dev,
        )
        return clf

    def describe(self) -> dict[str, Any]:
        """What the status message says about the model."""
        metrics = self.meta.get("metrics") or {}
        return {
            "arch": self.arch,
            "path": str(self.path) if self.path else None,
            "device": str(self.device),
            "input_size": self.input_size,
            "val_accuracy": metrics.get("val_accuracy"),
            "init": self.meta.get("init"),
            "created": self.meta.get("created"),
        }

    def crop_box(self, gray: np.ndarray, box: Box) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the box grown by ``margin`` of its side on each side, clipped."""
        x, y, w, h = box
        m = self.margin
        x0, y0 = max(0, int(round(x - m * w))), max(0, int(round(y - m * h)))
        x1 = min(gray.shape[1], int(round(x + w + m * w)))
        y1 = min(gray.shape[0], int(round(y + h + m * h)))
        return x0, y0, x1, y1

    def _fill(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Write the normalised inputs of ``boxes`` into the reused buffer; returns its first N."""
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"predict needs a 2-D uint8 gray image, got {gray.dtype} {gray.shape}")
        n, s = len(boxes), self.input_size
        if n > len(self._buffer):
            grown = max(n, 2 * len(self._buffer))
            self._buffer = np.empty((grown, self.channels, s, s), np.float32)
        out = self._buffer[:n]
        for i, box in enumerate(boxes):
            x0, y0, x1, y1 = self.crop_box(gray, box)
            plane = out[i, 0]
            if x1 <= x0 or y1 <= y0:
                plane.fill(0.0)  # a box outside the frame: a black input, never a crash
            else:
                # Scale to [0, 1] first, then resize in float: the order (and the arithmetic)
                # of training's eval transform, so both sides give equal tensors.
                crop = gray[y0:y1, x0:x1].astype(np.float32) / np.float32(255.0)
                if crop.shape == (s, s):
                    plane[...] = crop
                else:
                    plane[...] = cv2.resize(crop, (s, s), interpolation=cv2.INTER_LINEAR)
        if self._same_norm:
            first = out[:, :1]
            first -= self._mean[0]
            first /= self._std[0]
            if self.channels > 1:
                out[:, 1:] = first
        else:
            out[:, 1:] = out[:, :1]
            out -= self._mean
            out /= self._std
        return out

    def preprocess(self, gray: np.ndarray, boxes: Sequence[Box]) -> torch.Tensor:
        """The model input for ``boxes`` of a grayscale uint8 frame: ``N x C x S x S`` float32."""
        return torch.from_numpy(self._fill(gray, boxes).copy())

    @torch.inference_mode()
    def predict(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Softmax probabilities, ``N x 7`` float32 in ``classes`` order (one forward for all)."""
        if not len(boxes):
            return np.zeros((0, len(self.classes)), np.float32)
        x = torch.from_numpy(self._fill(gray, boxes)).to(self.device, non_blocking=True)
        logits = self.model(x)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()
