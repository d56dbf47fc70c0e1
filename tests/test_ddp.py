"""Two CPU processes under torchrun (gloo) train exactly as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ganforge.data.prepare import prepare_dataset
from ganforge.train.config import build_config
from ganforge.train.loop import Trainer
from ganforge.train.rundir import read_log

SETTINGS = {"batch_size": "64", "kimg": "0.512", "tick_kimg": "0.256", "precision": "fp32"}


def test_two_processes_match_each_other_and_one_process(tmp_path):
    data = tmp_path / "ring8"
    prepare_dataset("ring8", data, count=4096, progress=False)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).with_name("ddp_worker.py")), str(data), str(tmp_path / "run2"), str(tmp_path),
               *[f"{k}={v}" for k, v in SETTINGS.items()]]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for part in ("G", "D"):
        for key in rank0[part]:
            assert torch.equal(rank0[part][key], rank1[part][key]), f"ranks differ in {part}.{key}"

    config = build_config(str(data), None, {k: float(v) if "." in v else v for k, v in SETTINGS.items()}
                          | {"batch_size": 64}, kind="points")
    (tmp_path / "run1").mkdir()
    single = Trainer(config, tmp_path / "run1", progress=False)
    single.run()
    assert single.images_seen == rank0["images_seen"] == 512
    for key, value in single.G.state_dict().items():
        torch.testing.assert_close(rank0["G"][key], value, rtol=1e-4, atol=1e-5, msg=f"G.{key}")
    # only rank 0 writes: one log line per tick (the start and two ticks), not one per process
    assert len(read_log(tmp_path / "run2")) == len(read_log(tmp_path / "run1")) == 3
