"""Export a checkpoint to ONNX, check it, and compare it with PyTorch.

    python -m training.export daemon/models/emotion_resnet50.pt emotion_resnet50.onnx
    python -m training.export runs/iter1/best.pt iter1.onnx --opset 20 --no-verify

The graph takes ``input``: float32 ``N x channels x input_size x input_size`` (the batch dimension
is dynamic), already preprocessed as ``docs/checkpoint.md`` says, and returns ``logits``:
``N x 7`` in the checkpoint's class order (apply softmax for probabilities). The checkpoint's
preprocessing (classes, input size, channels, mean, std, interpolation, crop margin) is stored in
the model's ``metadata_props`` so that an ONNX consumer needs nothing else.

It uses torch's ``torch.export``-based exporter (``dynamo=True``, which needs ``onnxscript``) at
opset 20, that exporter's default in torch 2.9-2.14. The file is validated with
``onnx.checker`` (full check, with shape inference) and, by default, run on random inputs with
onnxruntime when it is installed, else with onnx's reference evaluator, and compared with the
PyTorch model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import build_from_checkpoint, load_checkpoint

DEFAULT_OPSET = 20
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET
) -> dict[str, Any]:
    """Write ``out`` from ``checkpoint`` and check it with ``onnx.checker``; returns its metadata."""
    import onnx

    ckpt = load_checkpoint(checkpoint)
    model = build_from_checkpoint(ckpt)
    size, channels = int(ckpt["input_size"]), int(ckpt["channels"])
    example = torch.zeros(2, channels, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    meta = {
        "arch": ckpt["arch"],
        "classes": json.dumps(list(ckpt["classes"])),
        "input_size": str(size),
        "channels": str(channels),
        "mean": json.dumps(ckpt["mean"]),
        "std": json.dumps(ckpt["std"]),
        "interpolation": ckpt.get("interpolation", "bilinear"),
        "crop_margin": str((ckpt.get("crop") or {}).get("margin", 0.0)),
        "output": "logits",
        "source_checkpoint": Path(checkpoint).name,
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    return meta


def run_onnx(path: str | Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Run the exported model on ``x``: onnxruntime if installed, else onnx's reference evaluator."""
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        session = ReferenceEvaluator(str(path))
        return np.asarray(session.run(None, {INPUT_NAME: x})[0]), "onnx.reference"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]), "onnxruntime"


def verify(
    checkpoint: str | Path, onnx_path: str | Path, *, batch: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Largest absolute logit difference between PyTorch and the ONNX file on normalised noise."""
    ckpt = load_checkpoint(checkpoint)
    model = build_from_checkpoint(ckpt)
    size, channels = int(ckpt["input_size"]), int(ckpt["channels"])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen)
    with torch.inference_mode():
        expected = model(x).numpy()
    got, runtime = run_onnx(onnx_path, x.numpy())
    return {
        "runtime": runtime,
        "batch": batch,
        "max_abs_diff": float(np.abs(expected - got).max()),
        "same_argmax": bool((expected.argmax(1) == got.argmax(1)).all()),
    }


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint written by emotion-train")
    p.add_argument("out", help="ONNX file to write")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})"
    )
    p.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare with PyTorch on random inputs (default: on)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest logit difference accepted by --verify (default: 1e-3)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        meta = export_onnx(args.checkpoint, args.out, opset=args.opset)
    except (FileNotFoundError, ValueError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({meta['arch']}, opset {args.opset}); onnx.checker: ok")
    if args.verify:
        report = verify(args.checkpoint, args.out)
        ok = report["max_abs_diff"] <= args.tolerance and report["same_argmax"]
        print(
            f"{report['runtime']} vs PyTorch on {report['batch']} inputs: "
            f"max |logit difference| {report['max_abs_diff']:.2e}, "
            f"same argmax: {report['same_argmax']} -> {'ok' if ok else 'MISMATCH'}"
        )
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
