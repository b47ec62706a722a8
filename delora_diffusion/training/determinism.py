"""Randomness that is a pure function of (seed, epoch, batch), so a resumed run replays it exactly.

The global RNG is shared with libraries (data-loader iterators draw from it, accelerate restores and
broadcasts it), so training noise, timesteps and the data order never read it: each batch gets its
own generator seeded from (seed, process, epoch, batch index), and each epoch its own permutation.
Nothing random then has to be saved in a checkpoint, on any number of processes.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from torch.utils.data import Sampler


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing non-negative integers ``parts`` (NumPy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def seed_batch(
    seed: int, process_index: int, epoch: int, batch_index: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """Seed one batch on one process: returns the generator of its noise, timesteps and latent samples.

    Also reseeds the global RNG from the same parts: dropout layers (LoRA's ``lora_dropout``) draw their
    masks from it, and a resumed run reaches a batch after other draws than an uninterrupted one.
    """
    torch.manual_seed(derive_seed(seed, 4, process_index, epoch, batch_index))
    return torch.Generator(device=device).manual_seed(derive_seed(seed, 1, process_index, epoch, batch_index))


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation of ``range(length)`` each epoch, fixed by (seed, epoch).

    Every process draws the same permutation; accelerate's batch sharding then gives each its share.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.seed, 2, self.epoch))
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of at most ``batch_size`` items that share one aspect-ratio bucket, fixed by (seed, epoch).

    Items are taken in the epoch's permutation (``EpochShuffleSampler``, kept as ``.sampler`` so
    accelerate's ``set_epoch`` reaches it), grouped by bucket and cut into batches, and the batches are
    shuffled: a bucket's last batch may be short, as in kohya's trainer.
    """

    def __init__(self, item_buckets: list, batch_size: int, seed: int, describe: str = "buckets") -> None:
        self.item_buckets = item_buckets
        self.describe = describe  # recorded with checkpoints: a resume with other buckets is told
        self.batch_size = None  # batches vary in length: accelerate then shards whole batches
        self.per_batch = batch_size
        self.sampler = EpochShuffleSampler(len(item_buckets), seed)
        self.length = sum(math.ceil(n / batch_size) for n in Counter(item_buckets).values())

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        groups: dict = {}
        for index in self.sampler:
            groups.setdefault(self.item_buckets[index], []).append(index)
        batches = [
            group[k : k + self.per_batch] for group in groups.values() for k in range(0, len(group), self.per_batch)
        ]
        generator = torch.Generator().manual_seed(derive_seed(self.sampler.seed, 3, self.sampler.epoch))
        return iter([batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()])

    def __len__(self) -> int:
        return self.length
