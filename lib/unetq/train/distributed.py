"""Training on several processes with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N -m unetq.cli.train ...`` starts N processes; :func:`init` joins
them into one process group (NCCL on CUDA, one GPU per process by ``LOCAL_RANK``; gloo on the
CPU, which is how the tests run it), and :func:`unetq.train.fit` then trains with:

- **the same batches as one process**: every epoch's order is :func:`epoch_order` (a function
  of seed and epoch only); each global batch of ``batch_size`` images is cut into ``N`` equal
  slices, rank ``r`` taking slice ``r`` (:func:`shard_loader`), so the N processes together see
  exactly the batches of a single-process run (``batch_size`` must be divisible by ``N``);
- **SyncBatchNorm**, so BatchNorm statistics are those of the whole global batch;
- DDP's gradient average over the ranks. The only departure from one process is the Dice term
  of the loss, computed per rank on its slice and then averaged (the BCE term is a plain mean,
  identical): the documented tolerance against a single-process run is therefore a few percent
  of the loss, not bit-exactness (``tests/test_distributed.py``);
- validation, BatchNorm re-estimation and the choice of the best epoch on every rank (same
  weights, same data, so the same result), and **rank-0 checkpointing**: only rank 0 writes the
  checkpoint and the per-epoch resume state, the others wait at a barrier. A killed run is
  started again with the same command and resumes after the last finished epoch, with the same
  weights as an uninterrupted run of the same world size.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader


def world() -> tuple[int, int]:
    """``(world size, rank)`` of the process group (``(1, 0)`` outside one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def is_main() -> bool:
    """Whether this process writes files (rank 0, or no process group)."""
    return world()[1] == 0


def init(backend: str | None = None) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment);
    a no-op in a single process. Returns :func:`world`."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return world()


def barrier() -> None:
    if world()[0] > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: float) -> float:
    """The mean of a float over the ranks (the value itself in one process)."""
    size, _ = world()
    if size == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / size


def shard_loader(dataset, batch_size: int, order: list[int], num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """This rank's slice of every global batch of ``order`` (see the module docstring). A last
    global batch smaller than the number of processes is left out (every rank must take the same
    number of steps), and a smaller last batch is split as evenly as it goes."""
    size, rank = world()
    if batch_size % size:
        raise ValueError(f"batch size {batch_size} is not divisible by the {size} processes of the run")
    batches = []
    for start in range(0, len(order), batch_size):
        glob = order[start:start + batch_size]
        if len(glob) < size:
            break
        cut = [len(glob) * r // size for r in range(size + 1)]
        batches.append(glob[cut[rank]:cut[rank + 1]])
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=pin_memory)


def wrap(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(model, trained)``: in a process group, the model with SyncBatchNorm and the DDP
    wrapper that trains it; otherwise the model twice."""
    if world()[0] == 1:
        return model, model
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    dev = next(model.parameters()).device
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    return model, ddp
