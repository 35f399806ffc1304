"""``training.evaluate``: scikit-learn metrics on a hand-built case, and the ``emotion-eval`` CLI
reproducing the numbers training recorded for a real checkpoint on real faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch

from tests.facevideo import crop_detected
from training.evaluate import format_table, main, metrics_from_predictions
from training.metrics import confusion_matrix, summarise
from training.models import CLASSES

# Class indices: angry 0, disgust 1, fear 2, happy 3, neutral 4, sad 5, surprise 6.
LABELS = [0, 0, 0, 3, 3, 4, 4, 4, 6, 6]
PREDS = [0, 0, 3, 3, 3, 4, 6, 4, 6, 0]


def test_metrics_on_a_hand_built_case() -> None:
    m = metrics_from_predictions(torch.tensor(LABELS), torch.tensor(PREDS))
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.7)
    expected = {
        # (precision, recall, f1, support), worked out by hand from the lists above.
        "angry": (2 / 3, 2 / 3, 2 / 3, 3),
        "disgust": (0.0, 0.0, 0.0, 0),
        "fear": (0.0, 0.0, 0.0, 0),
        "happy": (2 / 3, 1.0, 0.8, 2),
        "neutral": (1.0, 2 / 3, 0.8, 3),
        "sad": (0.0, 0.0, 0.0, 0),
        "surprise": (0.5, 0.5, 0.5, 2),
    }
    for name, (p, r, f1, support) in expected.items():
        got = m["per_class"][name]
        assert got["precision"] == pytest.approx(p), name
        assert got["recall"] == pytest.approx(r), name
        assert got["f1"] == pytest.approx(f1), name
        assert got["support"] == support, name
    # Macro F1 averages all seven classes, the three absent ones counting 0.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.8 + 0.5) / 7)
    assert m["confusion"] == [
        [2, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 2, 0, 0, 0],
        [0, 0, 0, 0, 2, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 1],
    ]
    assert m["classes"] == list(CLASSES)


def test_training_metrics_agree_with_scikit_learn() -> None:
    """The training loop's own (torch-only) metrics select checkpoints: they must match sklearn's."""
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 7, (500,), generator=gen)
    pred = torch.where(torch.rand(500, generator=gen) < 0.6, labels, torch.randint(0, 7, (500,)))
    ours = summarise(confusion_matrix(labels, pred, 7), CLASSES)
    ref = metrics_from_predictions(labels, pred)
    assert ours["confusion"] == ref["confusion"]
    assert ours["accuracy"] == pytest.approx(ref["accuracy"])
    assert ours["macro_f1"] == pytest.approx(ref["macro_f1"])
    for name in CLASSES:
        for key in ("precision", "recall", "f1"):
            assert ours["per_class"][name][key] == pytest.approx(
                ref["per_class"][name][key], abs=1e-4
            )


def test_table_lists_every_class_and_the_totals() -> None:
    text = format_table(metrics_from_predictions(LABELS, PREDS))
    for name in CLASSES:
        assert name in text
    assert "0.7000" in text and f"{(2 / 3 + 0.8 + 0.8 + 0.5) / 7:.4f}" in text


def _write_tiny_val(root: Path, tiny_faces: dict[str, list]) -> Path:
    """The same images the ``tiny_checkpoint`` fixture validated on (PNG, so byte-identical)."""
    for label, faces in tiny_faces.items():
        folder = root / "val" / label
        folder.mkdir(parents=True)
        for i, face in enumerate(faces):
            cv2.imwrite(str(folder / f"{i:02d}.png"), crop_detected(face))
    return root


@pytest.mark.slow
def test_cli_writes_json_and_png_matching_training(
    tmp_path: Path, tiny_checkpoint: Path, tiny_faces: dict[str, list], capsys
) -> None:
    data = _write_tiny_val(tmp_path / "data", tiny_faces)
    out = tmp_path / "results"
    assert main([str(tiny_checkpoint), str(data), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "macro F1" in printed and "surprise" in printed

    result = json.loads((out / "iter1_cnn3.json").read_text())
    recorded = torch.load(tiny_checkpoint, weights_only=True)["metrics"]
    # Same images, same eval path: emotion-eval reproduces what training logged for this epoch.
    assert result["accuracy"] == pytest.approx(recorded["val_accuracy"])
    assert result["confusion"] == recorded["confusion"]
    assert result["n"] == sum(len(f) for f in tiny_faces.values())
    assert result["arch"] == "iter1_cnn3" and result["split"] == "val"

    png = cv2.imread(str(out / "iter1_cnn3.png"))
    assert png is not None and png.shape[0] > 300 and png.shape[1] > 300
    assert png.std() > 10  # a drawn figure, not a blank canvas


def test_cli_reports_missing_data_clearly(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    assert main([str(tiny_checkpoint), str(tmp_path / "nowhere")]) == 2
    assert "expected a FER2013 .csv file or a folder" in capsys.readouterr().err


def test_cli_refuses_a_file_that_is_not_a_checkpoint(
    tmp_path: Path, fer_root: Path, capsys
) -> None:
    bogus = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, bogus)
    assert main([str(bogus), str(fer_root)]) == 2
    assert "not an emotion-sidecar checkpoint" in capsys.readouterr().err
