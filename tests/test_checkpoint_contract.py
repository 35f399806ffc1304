"""The checkpoint contract (docs/checkpoint.md): a checkpoint written by ``training`` loads in the
daemon's classifier, whose numpy/OpenCV preprocessing gives the same tensors as training's eval
transform, and the same predictions as training's eval path, on real face crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from daemon.classify import DEFAULT_MODEL, EmotionClassifier
from tests.facevideo import compose, detect, detectable_faces
from training.checkpoint import build_from_checkpoint, load_checkpoint
from training.train import Recipe, predict

CPU = torch.device("cpu")


def _frames_and_boxes(faces: dict[str, list]) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Each face pasted into a 640x480 frame, with the box the daemon's Haar cascade finds."""
    out = []
    for group in faces.values():
        for face in group:
            frame = compose([face])
            (box,) = detect(frame)
            out.append((cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), box))
    return out


def _training_side(ckpt_path: Path) -> tuple[torch.nn.Module, Recipe]:
    ckpt = load_checkpoint(ckpt_path)
    return build_from_checkpoint(ckpt), Recipe.from_checkpoint(ckpt)


def _assert_same(clf: EmotionClassifier, model, recipe, gray: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    crop = torch.from_numpy(np.ascontiguousarray(gray[y : y + h, x : x + w]))[None, None]
    daemon_x = clf.preprocess(gray, [box])
    train_x = recipe.eval_batch(crop)
    assert daemon_x.shape == train_x.shape == (1, clf.channels, clf.input_size, clf.input_size)
    # OpenCV and torch round the interpolation weights differently: 1e-4 here (normalised units)
    # is 1/150 of one gray level.
    torch.testing.assert_close(daemon_x, train_x, atol=1e-4, rtol=0)
    daemon_p = clf.predict(gray, [box])
    train_p = predict(model, crop, recipe, CPU).numpy()
    np.testing.assert_allclose(daemon_p, train_p, atol=1e-5)
    assert daemon_p.argmax(1).tolist() == train_p.argmax(1).tolist()
    return daemon_p[0]


@pytest.mark.slow
def test_tiny_checkpoint_daemon_equals_training_on_detected_faces(
    tiny_checkpoint: Path, tiny_faces: dict[str, list]
) -> None:
    clf = EmotionClassifier.from_checkpoint(tiny_checkpoint, "cpu", threads=0)
    model, recipe = _training_side(tiny_checkpoint)
    assert (clf.input_size, clf.channels, clf.arch) == (48, 1, "iter1_cnn3")
    pairs = _frames_and_boxes(tiny_faces)
    assert len(pairs) == sum(len(v) for v in tiny_faces.values())
    assert all(box[2] != 48 for _, box in pairs)  # the resize path is exercised
    probs = [_assert_same(clf, model, recipe, gray, box) for gray, box in pairs]
    # A real model, not a constant: its answers differ across expressions.
    assert len({int(p.argmax()) for p in probs}) >= 2


@pytest.mark.slow
def test_shipped_model_daemon_equals_training(fer_root: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"the shipped model {DEFAULT_MODEL} is missing")
    clf = EmotionClassifier.from_checkpoint(None, "cpu", threads=0)
    model, recipe = _training_side(DEFAULT_MODEL)
    assert clf.arch == "resnet50" and clf.channels == 3
    faces = detectable_faces("val", 1)
    for gray, box in _frames_and_boxes(faces):
        _assert_same(clf, model, recipe, gray, box)
    # The FER2013 images themselves, at the model's input size: no resize on either side.
    for (face,) in faces.values():
        _assert_same(clf, model, recipe, face, (0, 0, 48, 48))


def test_half_precision_checkpoint_loads_as_float32(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """``--half`` stores float16 weights; both readers cast them to float32 and still agree."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
    }
    ckpt["weights_dtype"] = "float16"
    half = tmp_path / "half.pt"
    torch.save(ckpt, half)
    clf = EmotionClassifier.from_checkpoint(half, "cpu", threads=0, warmup=False)
    model, recipe = _training_side(half)
    assert all(p.dtype == torch.float32 for p in clf.model.parameters())
    face = detectable_faces("train", 1, ("happy",))["happy"][0]
    _assert_same(clf, model, recipe, face, (0, 0, 48, 48))
