"""Run by tests/test_ddp.py under torchrun: train, then save this rank's final generator weights."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ganforge.train.config import build_config
from ganforge.train.loop import Trainer

data, run_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
overrides = dict(arg.split("=", 1) for arg in sys.argv[4:])
config = build_config(data, None, {k: (float(v) if k in ("kimg", "tick_kimg") else int(v) if v.isdigit() else v)
                                    for k, v in overrides.items()}, kind="points")
run_dir.mkdir(parents=True, exist_ok=True)
trainer = Trainer(config, run_dir, progress=False)
trainer.run()
torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "images_seen": trainer.images_seen},
           out / f"rank{dist.get_rank()}.pt")
trainer.dist.close()
