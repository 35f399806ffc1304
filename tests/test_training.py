"""Training on real FER2013 images: every architecture learns, resume continues exactly, and a
checkpoint exports to a valid ONNX model that computes what PyTorch computes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.facevideo import crop_detected
from tests.fer_subset import write_subset
from training.checkpoint import build_from_checkpoint, load_checkpoint
from training.data import load_split
from training.export import export_onnx, run_onnx
from training.export import main as export_main
from training.init import initialise
from training.models import ARCHITECTURES, CLASSES, build_model
from training.train import Recipe, get_args_parser, main, train_one_epoch

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small_data(fer_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_subset(fer_root, tmp_path_factory.mktemp("fer-small"), 4, 2)


def _args(*argv: str) -> argparse.Namespace:
    return get_args_parser().parse_args(list(argv))


def _loss_without_dropout(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy on ``x`` as training computes it, minus dropout's noise (batch-norm still
    uses the batch's statistics), so that two calls differ only by the weights."""
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            m.eval()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


# iter3_cnn4_noaug is iter2_cnn4's network trained without augmentation: one case covers both.
_FIRST_BY_NETWORK: dict = {}
for _arch, _factory in ARCHITECTURES.items():
    _FIRST_BY_NETWORK.setdefault(_factory, _arch)
NETWORKS = sorted(_FIRST_BY_NETWORK.values())


@pytest.mark.slow
@pytest.mark.parametrize("arch", NETWORKS)
def test_each_architecture_learns_real_faces(arch: str, small_data: Path) -> None:
    """12 steps of the real training loop on 28 real faces: the loss falls well below chance."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = load_split(small_data, "train", workers=1)
    args = _args("--arch", arch, "--batch-size", "28", "--lr", "3e-3", "--augment", "none")
    args.no_progress = True
    recipe = Recipe.from_args(args)
    model = build_model(arch, num_classes=len(CLASSES), in_channels=recipe.channels)
    assert initialise(model, arch, "scratch", None) == "scratch"
    model = model.to(memory_format=torch.channels_last)
    x = recipe.eval_batch(data.images).contiguous(memory_format=torch.channels_last)
    before = _loss_without_dropout(model, x, data.labels)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, 13):
        stats = train_one_epoch(model, opt, data, recipe, args, epoch, CPU, None, None)
        assert np.isfinite(stats["loss"]) and stats["images_per_s"] > 0
    after = _loss_without_dropout(model, x, data.labels)
    assert before > 1.6, before  # chance level is ln 7 = 1.95
    assert after < 0.8 * before, (before, after)


def _run(data: Path, run_dir: Path, epochs: int, *extra: str) -> dict:
    return main(
        _args(
            "--arch", "iter1_cnn3", "--data", str(data), "--run-dir", str(run_dir),
            "--epochs", str(epochs), "--batch-size", "8", "--max-steps", "2",
            "--threads", "1", "--workers", "1", "--no-progress", *extra,
        )
    )  # fmt: skip


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(small_data: Path, tmp_path: Path) -> None:
    """3 epochs in one go == 2 epochs, stop, ``--resume last.state.pt`` for the 3rd (augmentation
    and dropout included: the generator state travels in the state file)."""
    _run(small_data, tmp_path / "straight", 3)
    _run(small_data, tmp_path / "stopped", 3, "--stop-after", "2")
    first = torch.load(tmp_path / "stopped" / "last.state.pt", weights_only=False)
    assert first["epoch"] == 2
    resumed = main(
        _args("--resume", str(tmp_path / "stopped" / "last.state.pt"), "--epochs", "3",
              "--threads", "1", "--no-progress")
    )  # fmt: skip
    assert resumed["epoch"] in (1, 2, 3)
    a = torch.load(tmp_path / "straight" / "last.state.pt", weights_only=False)
    b = torch.load(tmp_path / "stopped" / "last.state.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert not torch.equal(first["model"]["head.6.weight"], b["model"]["head.6.weight"])
    epochs = [json.loads(line)["epoch"] for line in open(tmp_path / "stopped" / "metrics.jsonl")]
    assert epochs == [1, 2, 3]
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"] == 6


@pytest.mark.slow
def test_export_is_valid_onnx_and_matches_pytorch(
    tiny_checkpoint: Path, tiny_faces: dict[str, list], tmp_path: Path
) -> None:
    out = tmp_path / "tiny.onnx"
    meta = export_onnx(tiny_checkpoint, out)
    model_proto = onnx.load(str(out))
    onnx.checker.check_model(model_proto, full_check=True)
    props = {p.key: p.value for p in model_proto.metadata_props}
    assert json.loads(props["classes"]) == list(CLASSES) == json.loads(meta["classes"])
    assert (props["input_size"], props["channels"], props["arch"]) == ("48", "1", "iter1_cnn3")

    ckpt = load_checkpoint(tiny_checkpoint)
    model, recipe = build_from_checkpoint(ckpt), Recipe.from_checkpoint(ckpt)
    crops = np.stack([crop_detected(f) for faces in tiny_faces.values() for f in faces])
    x = recipe.eval_batch(torch.from_numpy(crops)[:, None])
    with torch.inference_mode():
        expected = model(x).numpy()
    for batch in (x[:1], x):  # the batch dimension is dynamic
        got, runtime = run_onnx(out, batch.numpy())
        assert got.shape == (len(batch), len(CLASSES))
        np.testing.assert_allclose(got, expected[: len(batch)], atol=1e-4, rtol=1e-4)
    assert runtime in ("onnxruntime", "onnx.reference")


def test_export_cli_refuses_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    assert export_main([str(tmp_path / "none.pt"), str(tmp_path / "x.onnx")]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
