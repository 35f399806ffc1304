"""Shared fixtures: real FER2013 faces, and a small real checkpoint trained by ``training`` in-session."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import pytest

from tests.facevideo import crop_detected, detectable_faces, fer_dir

TINY_PER_CLASS = 6
# Four expressions that differ clearly; the tiny model still has all seven outputs.
TINY_CLASSES = ("angry", "happy", "neutral", "surprise")


@pytest.fixture(scope="session")
def fer_root() -> Path:
    root = fer_dir()
    if not (root / "train").is_dir():
        pytest.fail(f"FER2013 not found at {root}; set EMOTION_SIDECAR_FER_DIR")
    return root


@pytest.fixture(scope="session")
def tiny_faces(fer_root: Path) -> dict[str, list]:
    """A few real training faces per class that the Haar cascade finds (the tiny model learns these)."""
    return detectable_faces("train", TINY_PER_CLASS, TINY_CLASSES)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_faces: dict[str, list]) -> Path:
    """An ``iter1_cnn3`` checkpoint trained with the training code on the cascade's crops of ``tiny_faces``.

    It is small and overfits its few images on purpose: tests then know which label each of those
    faces must get, through the whole daemon pipeline, with real inference.
    """
    from training.train import get_args_parser, main

    root = tmp_path_factory.mktemp("tiny-data")
    for split in ("train", "val"):
        for label, faces in tiny_faces.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, face in enumerate(faces):
                cv2.imwrite(str(folder / f"{i:02d}.png"), crop_detected(face))
    out = tmp_path_factory.mktemp("tiny-model") / "tiny.pt"
    args: argparse.Namespace = get_args_parser().parse_args(
        [
            "--arch",
            "iter1_cnn3",
            "--data",
            str(root),
            "--out",
            str(out),
            "--run-dir",
            str(out.parent / "run"),
            "--epochs",
            "150",
            "--batch-size",
            "24",
            "--lr",
            "3e-3",
            "--threads",
            "1",
            "--augment",
            "none",
            "--amp",
            "off",
            "--scheduler",
            "cosine",
            "--no-progress",
            "--workers",
            "1",
        ]
    )
    best = main(args)
    assert best["val_accuracy"] >= 0.9, f"tiny model did not learn its faces: {best}"
    return out
