"""FER2013 loaders: the original CSV format and the ImageFolder layout give the same tensors for
the same real images, and bad input gets an error that says what is wrong."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from training.data import load_csv, load_image_folder, load_split
from training.models import CLASSES

PER_CLASS = 3


def _pick(fer_root: Path, split: str) -> list[tuple[int, Path]]:
    """The first ``PER_CLASS`` images of every class of ``split``, in ImageFolder order."""
    picked = []
    for label, name in enumerate(CLASSES):
        files = sorted((fer_root / split / name).iterdir())[:PER_CLASS]
        picked += [(label, p) for p in files]
    return picked


@pytest.fixture(scope="module")
def same_images(fer_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ImageFolder root and a ``fer2013.csv`` (emotion,pixels,Usage) holding the same faces."""
    root = tmp_path_factory.mktemp("fer-subset")
    folder_root = root / "images"
    rows = []
    for split, usage in (("train", "Training"), ("val", "PublicTest")):
        for label, src in _pick(fer_root, split):
            dst = folder_root / split / CLASSES[label] / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            pixels = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
            rows.append((label, " ".join(str(int(v)) for v in pixels.flatten()), usage))
    # The original file interleaves usages; a row of the held-out split must be skipped.
    rows.insert(2, rows[-1][:2] + ("PrivateTest",))
    csv_path = root / "fer2013.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)
    return folder_root, csv_path


@pytest.mark.parametrize("split", ["train", "val"])
def test_csv_and_image_folder_agree(same_images: tuple[Path, Path], split: str) -> None:
    folder_root, csv_path = same_images
    from_folder = load_split(folder_root, split, workers=1)
    from_csv = load_split(csv_path, split)
    assert len(from_folder) == len(from_csv) == PER_CLASS * len(CLASSES)
    assert from_folder.images.dtype == from_csv.images.dtype == torch.uint8
    assert from_folder.images.shape == (len(from_folder), 1, 48, 48)
    assert torch.equal(from_folder.labels, from_csv.labels)
    assert torch.equal(from_folder.images, from_csv.images)
    assert from_folder.class_counts() == [PER_CLASS] * len(CLASSES)


def test_csv_test_split_is_private_test(same_images: tuple[Path, Path]) -> None:
    _, csv_path = same_images
    held_out = load_csv(csv_path, "test")
    assert len(held_out) == 1 and held_out.labels.tolist() == [len(CLASSES) - 1]


def test_image_folder_with_unknown_class_is_refused(tmp_path: Path, fer_root: Path) -> None:
    src = sorted((fer_root / "train" / "happy").iterdir())[0]
    for name in ("happy", "bored"):
        (tmp_path / name).mkdir()
        shutil.copyfile(src, tmp_path / name / src.name)
    with pytest.raises(ValueError, match="bored"):
        load_image_folder(tmp_path, workers=1)


def test_csv_errors_name_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3," + " ".join(["7"] * 47) + ",Training\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: 47 pixels is not a square image"):
        load_csv(bad)
    bad.write_text("emotion,pixels,Usage\n9," + " ".join(["7"] * 2304) + ",Training\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: emotion 9 outside 0..6"):
        load_csv(bad)
    bad.write_text("label,image\n3,1 2 3 4\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_csv(bad)


def test_missing_split_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train/<class>/"):
        load_split(tmp_path, "train")
