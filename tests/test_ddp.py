"""DistributedDataParallel with 2 CPU processes on gloo (``torchrun``): the real training loop
finishes, and both ranks end with the same weights.

Run as ``torchrun ... -m tests.test_ddp ARGS`` this file is also the worker: it trains with
``training.train.fit`` and saves each rank's parameters before the process group goes down.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fer_subset import write_subset
from training import distributed
from training.checkpoint import load_checkpoint, unwrap
from training.train import fit, get_args_parser

REPO = Path(__file__).resolve().parents[1]


def worker(argv: list[str]) -> None:
    args = get_args_parser().parse_args(argv)
    model, _ = fit(args)
    params = {k: v.detach().cpu() for k, v in unwrap(model).named_parameters()}
    torch.save(
        {"world": distributed.world_size(), "params": params},
        Path(args.run_dir) / f"rank{distributed.rank()}.pt",
    )
    distributed.cleanup()


@pytest.mark.slow
@pytest.mark.integration
def test_two_process_gloo_run_finishes_with_equal_weights(fer_root: Path, tmp_path: Path) -> None:
    data = write_subset(fer_root, tmp_path / "data", 8, 2)
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "EMOTION_TRAIN_BACKEND": "gloo",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "tests.test_ddp",
        "--arch", "iter1_cnn3", "--data", str(data), "--run-dir", str(run_dir),
        "--epochs", "2", "--batch-size", "8", "--threads", "1", "--workers", "1",
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world=2" in done.stderr

    ranks = [torch.load(run_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys()
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name

    # Rank 0 alone wrote the run's files; each rank took half of each epoch's 56 images.
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    ckpt = load_checkpoint(run_dir / "best.pt")
    assert ckpt["train_config"]["arch"] == "iter1_cnn3"
    final = torch.load(run_dir / "last.state.pt", weights_only=False)
    assert final["optimizer"]["state"][0]["step"] == 2 * 4  # 28 images per rank, batch 8
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, final["model"][name]), name


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    worker(sys.argv[1:])
