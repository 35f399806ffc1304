"""A small real FER2013 ImageFolder (a few images per class and split) for training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from training.models import CLASSES


def write_subset(fer_root: Path, dest: Path, train_per_class: int, val_per_class: int) -> Path:
    """Copy the first images (by name) of every class into ``dest/{train,val}/<class>/``."""
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for name in CLASSES:
            folder = dest / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for src in sorted((fer_root / split / name).iterdir())[:n]:
                shutil.copyfile(src, folder / src.name)
    return dest
