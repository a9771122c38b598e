"""Train one architecture from the command line, on one process or several (``torchrun``).

    python -m unetq.cli.train --arch unet --preset quick
    torchrun --nproc-per-node 4 -m unetq.cli.train --arch unet --preset paper      # 4 GPUs, DDP
    torchrun --nproc-per-node 2 -m unetq.cli.train --arch unet --preset ci         # CPU, gloo

Under ``torchrun`` the processes form one DistributedDataParallel run
(:mod:`unetq.train.distributed`: the same global batches as one process, SyncBatchNorm, rank-0
checkpoints); the batch size of the preset is the *global* batch. A killed run resumes after its
last finished epoch when the same command is run again. The checkpoint goes to ``--checkpoint``
(default ``checkpoints_dir()/<arch>_<preset>_ddp<N>.pt``); rank 0 prints, and with ``--json``
writes, the run's summary (best epoch, validation loss, history).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from ..config import get_preset
from ..data import splits_from_preset
from ..io import write_json
from ..models import create_model
from ..paths import checkpoints_dir
from ..train import TrainConfig, distributed, fit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data", default=None, metavar="PATH", help="a real dataset's root (default: the generator)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="the global batch (split over the processes)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--json", default=None, help="rank 0 writes the summary here")
    ap.add_argument("--kill-after-epoch", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    a = ap.parse_args(argv)
    size, rank = distributed.init()
    over = {k: v for k, v in dict(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size).items() if v is not None}
    cfg = get_preset(a.preset, source=a.data, **over)
    splits = splits_from_preset(cfg)
    tcfg = TrainConfig.from_preset(cfg)
    tcfg.progress = False
    torch.manual_seed(tcfg.seed)  # the same initial weights on every rank and in a single process
    model = create_model(a.arch, width=cfg.width)
    ckpt = Path(a.checkpoint) if a.checkpoint else checkpoints_dir() / f"{a.arch}_{cfg.preset}_ddp{size}.pt"

    def kill(done: int) -> None:
        if a.kill_after_epoch is not None and done == a.kill_after_epoch:
            os._exit(17)  # as if the machine died: no clean-up, the resume state stays

    res = fit(model, splits, tcfg, ckpt, on_epoch=kill, meta=dict(identity=f"cli.train {a.arch} {cfg.preset}"))
    if rank == 0:
        summary = dict(arch=a.arch, preset=cfg.preset, world_size=size, best_epoch=res.best_epoch,
                       best_val_loss=res.best_val_loss, resumed_from_epoch=res.resumed_from_epoch,
                       checkpoint=str(ckpt), history=res.history.to_dict(orient="records"))
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
        if a.json:
            write_json(summary, a.json)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
