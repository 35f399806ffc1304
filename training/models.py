"""The four model iterations, by name.

This module is the single definition of each architecture: training builds from it, and the daemon
builds from it when it loads a checkpoint (``docs/checkpoint.md``). It imports only torch and
torchvision so that the daemon can use it without the training extras.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _conv_block(
    c_in: int, c_out: int, *, convs: int, dropout: float, bn_momentum: float
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        ]
    layers += [nn.MaxPool2d(2), nn.Dropout2d(dropout)]
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Plain conv blocks, then the flattened ``pooled`` x ``pooled`` feature map into a small head.

    Flattening keeps where on the face a feature fired (mouth vs. brows), which global average
    pooling throws away; on 48x48 inputs ``pooled`` equals the final map size, so the adaptive
    pooling is the identity there and only matters for other input sizes.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        *,
        num_classes: int = 7,
        in_channels: int = 1,
        convs_per_block: int = 1,
        block_dropout: float = 0.25,
        head_dropout: float = 0.5,
        bn_momentum: float = 0.1,
        hidden: int = 256,
        pooled: int = 1,
    ) -> None:
        super().__init__()
        blocks = []
        c = in_channels
        for w in widths:
            blocks.append(
                _conv_block(
                    c, w, convs=convs_per_block, dropout=block_dropout, bn_momentum=bn_momentum
                )
            )
            c = w
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pooled),
            nn.Flatten(),
            nn.Linear(c * pooled * pooled, hidden),
            nn.BatchNorm1d(hidden, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Dropout(head_dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def cnn3(num_classes: int = 7, in_channels: int = 1) -> nn.Module:
    """Iteration 1: three conv blocks with batch norm and dropout."""
    return SmallCNN((32, 64, 128), num_classes=num_classes, in_channels=in_channels, pooled=6)


def cnn4(num_classes: int = 7, in_channels: int = 1) -> nn.Module:
    """Iterations 2 and 3: four double-conv blocks, retuned batch norm momentum and dropout."""
    return SmallCNN(
        (64, 128, 256, 512),
        num_classes=num_classes,
        in_channels=in_channels,
        convs_per_block=2,
        block_dropout=0.3,
        head_dropout=0.4,
        bn_momentum=0.05,
        hidden=512,
        pooled=3,
    )


def resnet50(num_classes: int = 7, in_channels: int = 3) -> nn.Module:
    """Iteration 4: torchvision's ResNet-50 with a new ``num_classes`` head."""
    from torchvision.models import resnet50 as tv_resnet50

    model = tv_resnet50(weights=None)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "iter1_cnn3": cnn3,
    "iter2_cnn4": cnn4,
    "iter3_cnn4_noaug": cnn4,
    "resnet50": resnet50,
}

# What each iteration trains with by default (augmentation level and input channels).
ARCH_DEFAULTS: dict[str, dict[str, object]] = {
    "iter1_cnn3": {"augment": "basic", "channels": 1},
    "iter2_cnn4": {"augment": "full", "channels": 1},
    "iter3_cnn4_noaug": {"augment": "none", "channels": 1},
    "resnet50": {"augment": "full", "channels": 3},
}


def build_model(
    arch: str, num_classes: int = 7, in_channels: int = 1, **kwargs: object
) -> nn.Module:
    """Build an untrained network by its iteration name (see ``ARCHITECTURES``)."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; known: {known}") from None
    return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
