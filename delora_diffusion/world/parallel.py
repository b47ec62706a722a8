"""Data-parallel training on CPU cores: one process and one thread per core, gradients averaged by gloo.

On two cores, two single-threaded processes train the toy UNet 1.75× as fast as one (63 against 36
samples/s); one process with two threads collapses as soon as anything else runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import torch
import torch.distributed as dist


def _entry(rank: int, fn: Callable, world_size: int, init: str, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes sharing a gloo group."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(
            _entry, args=(fn, world_size, f"file://{tmp}/rendezvous", args), nprocs=world_size, join=True
        )


def rank_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` wrapped for data-parallel training when in a process group (else itself).

    Small buckets let the gradient all-reduce of one part overlap the backward pass of the next:
    measured on 2 cores with the toy UNet, 63 samples/s against 53 with one all-reduce after backward.
    """
    if rank_info()[1] == 1:
        return module
    return torch.nn.parallel.DistributedDataParallel(module, bucket_cap_mb=2)


def barrier() -> None:
    if rank_info()[1] > 1:
        dist.barrier()
