"""FER2013 loaders: ImageFolder layout and the original CSV, both into uint8 tensors in memory.

The whole data set is 28,709 + 3,589 images of 48x48 bytes (about 75 MB), so it is decoded once
into one ``uint8`` tensor per split and batches are sliced from it; augmentation then runs on whole
batches on the training device (``presets.py``) instead of per image in Python.
"""

from __future__ import annotations

import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.models import CLASSES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}
CSV_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


@dataclass
class TensorDataset:
    """A split held in memory: ``images`` is ``N x 1 x H x W`` uint8, ``labels`` is ``N`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(CLASSES)).tolist()

    def subset(self, index: torch.Tensor | list[int]) -> TensorDataset:
        idx = torch.as_tensor(index, dtype=torch.long)
        return TensorDataset(
            self.images[idx], self.labels[idx], [self.paths[i] for i in idx.tolist()]
        )


def _read_gray(path: str, size: int) -> np.ndarray:
    import cv2

    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def load_image_folder(root: str | Path, *, size: int = 48, workers: int = 4) -> TensorDataset:
    """Load ``root/<class>/*.jpg`` with the fixed class order (folders must be the 7 classes)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    unknown = set(found) - set(CLASSES)
    if unknown or not found:
        raise ValueError(f"{root}: class folders {found} do not match {list(CLASSES)}")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arrays = list(pool.map(lambda p: _read_gray(p, size), paths, chunksize=256))
    images = (
        torch.from_numpy(np.stack(arrays)).unsqueeze(1)
        if arrays
        else torch.empty(0, 1, size, size, dtype=torch.uint8)
    )
    log.info("loaded %d images from %s", len(paths), root)
    return TensorDataset(images, torch.tensor(labels, dtype=torch.long), paths)


def load_csv(path: str | Path, split: str = "train", *, size: int = 48) -> TensorDataset:
    """Load the original ``fer2013.csv`` (``emotion,pixels,Usage``); ``split`` picks the Usage."""
    usage = CSV_USAGE.get(split, split)
    images: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row_no, row in enumerate(reader, start=2):
            if "Usage" in row and row["Usage"] and row["Usage"] != usage:
                continue
            pixels = np.array(row["pixels"].split(), dtype=np.uint8)
            side = int(round(len(pixels) ** 0.5))
            if side * side != len(pixels):
                raise ValueError(f"{path}:{row_no}: {len(pixels)} pixels is not a square image")
            img = pixels.reshape(side, side)
            if side != size:
                import cv2

                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            label = int(row["emotion"])
            if not 0 <= label < len(CLASSES):
                raise ValueError(f"{path}:{row_no}: emotion {label} outside 0..{len(CLASSES) - 1}")
            images.append(img)
            labels.append(label)
            names.append(f"{path}:{row_no}")
    stacked = (
        torch.from_numpy(np.stack(images)).unsqueeze(1)
        if images
        else torch.empty(0, 1, size, size, dtype=torch.uint8)
    )
    return TensorDataset(stacked, torch.tensor(labels, dtype=torch.long), names)


def load_split(data: str | Path, split: str, *, size: int = 48, workers: int = 4) -> TensorDataset:
    """Load ``split`` from a FER2013 CSV file or an ImageFolder root holding ``train/`` and ``val/``."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        return load_csv(data, split, size=size)
    folder = data / split
    if folder.is_dir():
        return load_image_folder(folder, size=size, workers=workers)
    raise FileNotFoundError(
        f"{data}: expected a FER2013 .csv file or a folder with {split}/<class>/ images"
    )
