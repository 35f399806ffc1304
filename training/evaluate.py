"""Evaluate a checkpoint on FER2013: accuracy, per-class precision/recall/F1, macro F1, confusion.

    emotion-eval daemon/models/emotion_resnet50.pt DATA                  # DATA/val, table on stdout
    emotion-eval runs/iter1/best.pt DATA --split train --out docs/results  # + iter1_cnn3.json/.png
    emotion-eval runs/iter1/best.pt fer2013.csv --split test            # CSV: Usage PrivateTest

``DATA`` is an ImageFolder root (``DATA/<split>/<class>/*.jpg``) or the original ``fer2013.csv``.
Predictions go through training's own eval path (``train.predict`` and ``presets.eval_transform``),
so the numbers equal the ones training logged for the same checkpoint and split; the metrics come
from scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import build_from_checkpoint, load_checkpoint
from training.data import load_split
from training.models import ARCH_DEFAULTS, CLASSES
from training.train import Recipe, add_runtime_arguments, pick_device, predict

# What of a checkpoint's training configuration the evaluation report repeats.
SCHEDULE_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "scheduler",
    "augment",
    "amp",
    "input_size",
    "limit_per_class",
    "val_limit_per_class",
)


def metrics_from_predictions(
    labels: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor
) -> dict[str, Any]:
    """scikit-learn's metrics over all seven classes (a class never predicted scores 0)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y, p = np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    order = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, p, labels=order, zero_division=0
    )
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, p)) if len(y) else 0.0,
        "macro_f1": float(f1_score(y, p, labels=order, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASSES)
        },
        "classes": list(CLASSES),
        "confusion": confusion_matrix(y, p, labels=order).tolist(),
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    device: str = "auto",
    batch_size: int = 256,
    workers: int = 4,
) -> dict[str, Any]:
    """Load ``checkpoint``, predict ``split`` of ``data`` and return the metrics with provenance."""
    ckpt = load_checkpoint(checkpoint)
    if list(ckpt["classes"]) != list(CLASSES):
        raise ValueError(f"{checkpoint}: classes {ckpt['classes']} are not {list(CLASSES)}")
    model = build_from_checkpoint(ckpt)
    dev = pick_device(device)
    model.to(dev)
    dataset = load_split(data, split, workers=workers)
    if not len(dataset):
        raise ValueError(f"{data}: split {split!r} holds no images")
    t0 = time.perf_counter()
    probs = predict(model, dataset.images, Recipe.from_checkpoint(ckpt), dev, batch_size)
    elapsed = time.perf_counter() - t0
    result = metrics_from_predictions(dataset.labels, probs.argmax(1))
    config = ckpt.get("train_config", {})
    schedule = {k: config.get(k) for k in SCHEDULE_KEYS}
    if not schedule.get("augment") and ckpt["arch"] in ARCH_DEFAULTS:
        schedule["augment"] = ARCH_DEFAULTS[ckpt["arch"]]["augment"]
    result.update(
        {
            "checkpoint": Path(checkpoint).name,
            "arch": ckpt["arch"],
            "init": ckpt.get("init"),
            "epoch": ckpt.get("epoch"),
            "train_config": schedule,
            "data": str(data),
            "split": split,
            "device": str(dev),
            "images_per_s": round(len(dataset) / elapsed, 1) if elapsed > 0 else None,
        }
    )
    return result


def format_table(result: dict[str, Any]) -> str:
    """Per-class precision/recall/F1/support, then accuracy and macro F1, as aligned text."""
    lines = [f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, m in result["per_class"].items():
        lines.append(
            f"{name:<10} {m['precision']:>9.4f} {m['recall']:>7.4f} {m['f1']:>7.4f} "
            f"{m['support']:>8d}"
        )
    lines.append(f"{'accuracy':<10} {result['accuracy']:>33.4f} {result['n']:>8d}")
    lines.append(f"{'macro F1':<10} {result['macro_f1']:>33.4f}")
    lines.append("confusion (rows true, columns predicted):")
    width = max(6, max(len(str(v)) for row in result["confusion"] for v in row) + 1)
    lines.append(" " * 10 + "".join(f"{c[: width - 1]:>{width}}" for c in result["classes"]))
    for name, row in zip(result["classes"], result["confusion"], strict=True):
        lines.append(f"{name:<10}" + "".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def plot_confusion(result: dict[str, Any], path: str | Path) -> Path:
    """Write the confusion matrix as a PNG: colour is the row share (recall), text the count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(result["confusion"], dtype=np.int64)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    classes = result["classes"]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour, fontsize=9)
    ax.set_title(
        f"{result.get('arch', '')} on {result.get('split', '')}: "
        f"accuracy {result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f}"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emotion-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint written by emotion-train")
    p.add_argument("data", help="ImageFolder root with SPLIT/<class>/ images, or fer2013.csv")
    p.add_argument(
        "--split",
        default="val",
        help="split folder, or for a CSV train/val/test or a Usage value (default: val)",
    )
    p.add_argument("--out", help="folder for NAME.json and NAME.png (default: print only)")
    p.add_argument("--name", help="file name stem in --out (default: the checkpoint's arch)")
    add_runtime_arguments(p)
    p.add_argument("--batch-size", type=int, default=256, help="inference batch (default: 256)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            split=args.split,
            device=args.device,
            batch_size=args.batch_size,
            workers=args.workers,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"emotion-eval: {exc}", file=sys.stderr)
        return 2
    print(f"{result['checkpoint']} ({result['arch']}) on {args.data} [{args.split}]")
    print(format_table(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = args.name or result["arch"]
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        plot_confusion(result, out / f"{stem}.png")
        print(f"wrote {out / stem}.json and {out / stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
