"""Train one model iteration on FER2013.

    emotion-train --arch iter1_cnn3 --data DATA --out runs/iter1.pt
    emotion-train --arch resnet50 --data DATA --weights resnet50_partial.pth --out daemon/models/emotion_resnet50.pt --half
    emotion-train --resume runs/resnet50/last.state.pt          # continue an interrupted run
    emotion-train --arch iter2_cnn4 --data DATA --stop-after 5   # a chunk; later --resume
    torchrun --nproc-per-node 2 -m training --arch resnet50 --data DATA ...   # DistributedDataParallel

``DATA`` is an ImageFolder root with ``train/`` and ``val/`` or the original ``fer2013.csv``.
The recipe's defaults (Adam, cross-entropy, lr 3e-4 with a scheduler, batch 64, 30 epochs) are the
flags' defaults; every run writes ``args.json``, ``metrics.jsonl`` and ``last.state.pt`` into its run
directory and the best checkpoint (by validation accuracy) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training import distributed
from training.checkpoint import save_checkpoint, unwrap
from training.data import TensorDataset, load_split
from training.init import initialise
from training.metrics import confusion_matrix, summarise
from training.models import ARCH_DEFAULTS, CLASSES, build_model
from training.presets import FER_MEAN, FER_STD, Augment, eval_transform, train_transform

log = logging.getLogger("training")
DEFAULT_EPOCHS = 30


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--threads`` and ``--workers``: where and how wide to run, for every CLI."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch, 0 = torch's default (default: 0)",
    )
    p.add_argument("--workers", type=int, default=4, help="image decoding workers (default: 4)")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emotion-train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--arch",
        default="resnet50",
        choices=sorted(ARCH_DEFAULTS),
        help="model iteration (default: resnet50)",
    )
    p.add_argument(
        "--data",
        help="ImageFolder root with train/ and val/, or fer2013.csv (required unless --resume)",
    )
    p.add_argument("--out", help="best checkpoint path (default: RUN_DIR/best.pt)")
    p.add_argument("--run-dir", help="where logs and resumable state go (default: runs/ARCH-TIME)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs (default: {DEFAULT_EPOCHS}; with --resume, the interrupted run's own)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="batch size per process (default: 64)"
    )
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default: 3e-4)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (default: 0)")
    p.add_argument(
        "--scheduler",
        default="cosine",
        choices=["cosine", "step", "plateau", "none"],
        help="lr decay (default: cosine)",
    )
    p.add_argument(
        "--step-size",
        type=int,
        default=10,
        help="epochs per decay for --scheduler step (default: 10)",
    )
    p.add_argument(
        "--gamma", type=float, default=0.1, help="decay factor for step/plateau (default: 0.1)"
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        help="cross-entropy label smoothing (default: 0)",
    )
    p.add_argument(
        "--input-size", type=int, default=48, help="model input side in pixels (default: 48)"
    )
    p.add_argument(
        "--augment",
        choices=["none", "basic", "full"],
        help="augmentation (default: the iteration's own)",
    )
    p.add_argument(
        "--init",
        default="auto",
        choices=["auto", "scratch", "imagenet"],
        help="auto: --weights if given, else torchvision ImageNet weights if obtainable, else scratch (default: auto)",
    )
    p.add_argument(
        "--weights", help="local state dict (full or partial ImageNet weights), loaded non-strictly"
    )
    p.add_argument("--resume", help="RUN_DIR/last.state.pt of an interrupted run")
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop after this epoch, keeping the --epochs schedule, to --resume later "
        "(training in chunks on a shared CPU); 0 = run to the end (default: 0)",
    )
    add_runtime_arguments(p)
    p.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "off", "bf16", "fp16"],
        help="mixed precision: auto = bf16 where supported (default: auto)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format (default: on)",
    )
    p.add_argument(
        "--limit-per-class",
        type=int,
        default=0,
        help="use at most N training images per class, 0 = all (default: 0)",
    )
    p.add_argument(
        "--val-limit-per-class", type=int, default=0, help="same for validation (default: 0)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="stop each epoch after N steps, 0 = no limit (default: 0)",
    )
    p.add_argument(
        "--half",
        action="store_true",
        help="store the checkpoint's weights as float16 (default: off)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (default: bars on a terminal)"
    )
    return p


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off":
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # CPU autocast in bf16 pays off only with native bf16 instructions (AVX512-BF16 / AMX).
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and _cpu_has_bf16() else None


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_scheduler(
    opt: torch.optim.Optimizer, args: argparse.Namespace, steps_per_epoch: int
) -> Any:
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, args.epochs))
    if args.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=args.step_size, gamma=args.gamma)
    if args.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=args.gamma, patience=2
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def limit_per_class(ds: TensorDataset, n: int, seed: int) -> TensorDataset:
    if n <= 0:
        return ds
    g = torch.Generator().manual_seed(seed)
    keep: list[int] = []
    for c in range(len(CLASSES)):
        idx = (ds.labels == c).nonzero().flatten()
        keep += idx[torch.randperm(len(idx), generator=g)[:n]].tolist()
    return ds.subset(sorted(keep))


class Recipe:
    """What a batch goes through: input size, channels, normalisation, augmentation."""

    def __init__(
        self,
        *,
        input_size: int,
        channels: int,
        mean: list[float],
        std: list[float],
        augment: str = "none",
    ) -> None:
        self.input_size = input_size
        self.channels = channels
        self.mean = mean
        self.std = std
        self.augment_name = augment
        self.augment = Augment.preset(augment)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Recipe:
        defaults = ARCH_DEFAULTS[args.arch]
        channels = int(defaults["channels"])  # type: ignore[call-overload]
        return cls(
            input_size=args.input_size,
            channels=channels,
            mean=[FER_MEAN] * channels,
            std=[FER_STD] * channels,
            augment=args.augment or str(defaults["augment"]),
        )

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Recipe:
        """The eval preprocessing a checkpoint was trained with (no augmentation)."""
        channels = int(ckpt["channels"])
        mean, std = [float(v) for v in ckpt["mean"]], [float(v) for v in ckpt["std"]]
        return cls(
            input_size=int(ckpt["input_size"]),
            channels=channels,
            mean=mean * (channels // len(mean)),
            std=std * (channels // len(std)),
        )

    def train_batch(self, images: torch.Tensor) -> torch.Tensor:
        return train_transform(
            images,
            self.augment,
            input_size=self.input_size,
            channels=self.channels,
            mean=self.mean,
            std=self.std,
        )

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return eval_transform(
            images, input_size=self.input_size, channels=self.channels, mean=self.mean, std=self.std
        )


def train_one_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: TensorDataset,
    recipe: Recipe,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, float]:
    model.train()
    order = distributed.shard(
        torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
    )
    steps = math.ceil(len(order) / args.batch_size)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    bar = _progress(steps, f"epoch {epoch}", args)
    seen = correct = 0
    loss_sum = 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        idx = order[step * args.batch_size : (step + 1) * args.batch_size]
        images = data.images[idx].to(device, non_blocking=True)
        labels = data.labels[idx].to(device, non_blocking=True)
        x = recipe.train_batch(images)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        n = labels.numel()
        seen += n
        loss_sum += loss.item() * n
        correct += int((logits.argmax(1) == labels).sum())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    if bar is not None:
        bar.close()
    totals = distributed.all_sum([seen, loss_sum, correct], device)
    elapsed = time.perf_counter() - t0
    return {
        "loss": totals[1] / max(1, totals[0]),
        "accuracy": totals[2] / max(1, totals[0]),
        "images_per_s": totals[0] / elapsed,
    }


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    recipe: Recipe,
    device: torch.device,
    batch_size: int = 256,
    channels_last: bool = False,
) -> torch.Tensor:
    """Softmax probabilities for uint8 images, through the eval transform (the daemon's reference)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = recipe.eval_batch(images[i : i + batch_size].to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0, len(CLASSES))


def evaluate(
    model: nn.Module, data: TensorDataset, recipe: Recipe, device: torch.device, channels_last: bool
) -> dict[str, Any]:
    probs = predict(model, data.images, recipe, device, channels_last=channels_last)
    pred = probs.argmax(1)
    cm = confusion_matrix(data.labels, pred, len(CLASSES))
    return summarise(cm, CLASSES)


def _progress(total: int, desc: str, args: argparse.Namespace) -> Any:
    if args.no_progress or not sys.stderr.isatty() or not distributed.is_main():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def fit(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    """Train as ``args`` say; returns the (possibly DDP-wrapped) model and the best metrics.

    The process group stays up so a caller can still inspect every rank; ``main`` tears it down.
    """
    resume_state = None
    if args.resume:
        resume_state = torch.load(args.resume, map_location="cpu", weights_only=False)
        saved = resume_state["args"]
        for key, value in saved.items():
            if key == "epochs" and args.epochs is not None:
                continue  # an explicit --epochs moves where the resumed run stops
            if key not in {
                "resume",
                "stop_after",
                "device",
                "threads",
                "no_progress",
                "workers",
            }:
                setattr(args, key, value)
        args.run_dir = str(Path(args.resume).parent)
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS
    if not args.data:
        raise SystemExit(
            "emotion-train: --data is required (ImageFolder root with train/ and val/, or fer2013.csv)"
        )

    distributed.init()
    device = pick_device(args.device)
    if device.type == "cuda" and distributed.world_size() > 1:
        device = torch.device("cuda", distributed.local_rank())
        torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    run_dir = Path(args.run_dir or f"runs/{args.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(args.out or run_dir / "best.pt")
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2, sort_keys=True))

    recipe = Recipe.from_args(args)
    train = limit_per_class(
        load_split(args.data, "train", workers=args.workers), args.limit_per_class, args.seed
    )
    val = limit_per_class(
        load_split(args.data, "val", workers=args.workers), args.val_limit_per_class, args.seed
    )
    model = build_model(args.arch, num_classes=len(CLASSES), in_channels=recipe.channels)
    init = initialise(model, args.arch, args.init, args.weights)
    model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train) / distributed.world_size() / args.batch_size)
    sched = make_scheduler(opt, args, steps_per_epoch)
    autocast_dtype = amp_dtype(args.amp, device)
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    start_epoch, best = 1, {"val_accuracy": -1.0}
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        start_epoch, best = resume_state["epoch"] + 1, resume_state["best"]
        if resume_state.get("rng") is not None:
            torch.set_rng_state(resume_state["rng"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        init = f"{resume_state.get('init', '?')}, resumed after epoch {resume_state['epoch']}"
    model = distributed.wrap(model, device)

    if distributed.is_main():
        log.info(
            "arch=%s init=%s device=%s amp=%s train=%d val=%d input=%dx%d channels=%d augment=%s world=%d",
            args.arch,
            init,
            device,
            autocast_dtype,
            len(train),
            len(val),
            recipe.input_size,
            recipe.input_size,
            recipe.channels,
            recipe.augment_name,
            distributed.world_size(),
        )
    for epoch in range(start_epoch, args.epochs + 1):
        lr = opt.param_groups[0]["lr"]
        stats = train_one_epoch(
            model, opt, train, recipe, args, epoch, device, autocast_dtype, scaler
        )
        metrics = (
            evaluate(unwrap(model), val, recipe, device, args.channels_last)
            if distributed.is_main()
            else {}
        )
        if args.scheduler == "plateau":
            sched.step(distributed.broadcast_float(metrics.get("accuracy", 0.0), device))
        else:
            sched.step()
        stop = 0 < args.stop_after <= epoch < args.epochs
        if not distributed.is_main():
            if stop:
                break
            continue
        line = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": round(stats["loss"], 4),
            "train_acc": round(stats["accuracy"], 4),
            "val_acc": round(metrics["accuracy"], 4),
            "val_macro_f1": round(metrics["macro_f1"], 4),
            "images_per_s": round(stats["images_per_s"], 1),
        }
        log.info(
            "epoch %d/%d loss %.4f acc %.4f | val acc %.4f macro-F1 %.4f | lr %.2e | %.0f img/s",
            epoch,
            args.epochs,
            stats["loss"],
            stats["accuracy"],
            metrics["accuracy"],
            metrics["macro_f1"],
            lr,
            stats["images_per_s"],
        )
        with open(run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        if metrics["accuracy"] > best["val_accuracy"]:
            best = {
                "val_accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "epoch": epoch,
                "per_class": metrics["per_class"],
                "confusion": metrics["confusion"],
            }
            save_checkpoint(
                out,
                model,
                arch=args.arch,
                input_size=recipe.input_size,
                channels=recipe.channels,
                mean=recipe.mean,
                std=recipe.std,
                train_config=vars(args),
                init=init,
                metrics=best,
                epoch=epoch,
                half=args.half,
            )
            log.info("saved best checkpoint %s (val acc %.4f)", out, metrics["accuracy"])
        state = {
            "model": unwrap(model).state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best": best,
            "args": vars(args),
            "init": init,
            # Dropout and augmentation draw from the global generator: saving it makes a
            # resumed run continue exactly as the uninterrupted one would have.
            "rng": torch.get_rng_state(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        torch.save(state, run_dir / "last.state.pt.tmp")
        os.replace(run_dir / "last.state.pt.tmp", run_dir / "last.state.pt")
        if stop:
            log.info(
                "stopping after epoch %d of %d (--stop-after); continue with --resume %s",
                epoch,
                args.epochs,
                run_dir / "last.state.pt",
            )
            break
    return model, best


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run training; returns the best validation metrics."""
    _, best = fit(args)
    distributed.cleanup()
    return best


def cli(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = get_args_parser().parse_args(argv)
    best = main(args)
    if distributed.is_main() and best.get("val_accuracy", -1) >= 0:
        print(
            json.dumps(
                {
                    "best_val_accuracy": best["val_accuracy"],
                    "macro_f1": best["macro_f1"],
                    "epoch": best["epoch"],
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
