"""DistributedDataParallel in a few lines: set up from torchrun's environment, shard, reduce.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) every helper is a no-op, so the same
training loop runs on one process. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = (
            "nccl"
            if torch.cuda.is_available() and os.environ.get("EMOTION_TRAIN_BACKEND") != "gloo"
            else "gloo"
        )
        dist.init_process_group(backend=backend)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def shard(order: torch.Tensor) -> torch.Tensor:
    """This rank's share of an epoch's permutation (equal length on every rank)."""
    if not is_dist():
        return order
    n = len(order) // world_size() * world_size()
    return order[rank() : n : world_size()]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    if not is_dist():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    if not is_dist():
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_float(value: float, device: torch.device) -> float:
    if not is_dist():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def cleanup() -> None:
    if is_dist():
        dist.barrier()
        dist.destroy_process_group()
