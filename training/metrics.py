"""Classification metrics from a confusion matrix (dependency-free; the eval CLI cross-checks with scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def confusion_matrix(labels: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are true classes, columns predicted classes."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def summarise(cm: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    cm = cm.double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp)
    )
    total = cm.sum().item()
    return {
        "accuracy": tp.sum().item() / total if total else 0.0,
        "macro_f1": f1.mean().item(),
        "per_class": {
            c: {
                "precision": round(precision[i].item(), 4),
                "recall": round(recall[i].item(), 4),
                "f1": round(f1[i].item(), 4),
                "support": int(support[i].item()),
            }
            for i, c in enumerate(classes)
        },
        "confusion": cm.long().tolist(),
    }
