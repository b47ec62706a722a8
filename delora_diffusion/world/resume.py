"""Periodic checkpoints of the pretraining loops: a killed ``delora-world-pretrain`` loses at most one
interval of the phase it was in, not the phase (the UNet alone is an hour of two cores).

A checkpoint holds everything the next step depends on (weights, optimiser and EMA state, the loop's
random generators, the smoothed loss and the log history), so a resumed phase ends with the weights an
uninterrupted one would have. Each rank writes its own file, as their generators differ; a restart
resumes from the newest step that every rank finished writing, so a kill between two ranks' writes costs
one interval and never mixes steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from .parallel import barrier, rank_info


class LoopCheckpoints:
    """Checkpoints ``{folder}/{name}-{step}-rank{r}.pt`` every ``every`` steps (no folder: none at all)."""

    def __init__(self, folder: Path | None, name: str, every: int):
        self.folder, self.name, self.every = (Path(folder) if folder else None), name, every
        self.rank, self.world = rank_info()

    def _path(self, step: int, rank: int) -> Path:
        return self.folder / f"{self.name}-{step}-rank{rank}.pt"

    def _steps(self) -> list[int]:
        pattern = re.compile(rf"{re.escape(self.name)}-(\d+)-rank0\.pt$")
        found = [int(m.group(1)) for p in self.folder.glob(f"{self.name}-*-rank0.pt") if (m := pattern.match(p.name))]
        return sorted(s for s in found if all(self._path(s, r).exists() for r in range(self.world)))

    def restore(self) -> dict | None:
        """This rank's state at the newest step all ranks saved (``state["step"]``), or None."""
        if self.folder is None or not self.folder.is_dir():
            return None
        steps = self._steps()
        if not steps:
            return None
        return torch.load(self._path(steps[-1], self.rank), map_location="cpu", weights_only=False)

    def save(self, step: int, state: Callable[[], dict]) -> None:
        """At multiples of ``every``: write ``state()`` with ``step`` atomically, then drop this rank's older ones."""
        if self.folder is None or step % self.every:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._path(step, self.rank)
        tmp = target.with_name(f".{target.name}.tmp")
        torch.save({**state(), "step": step}, tmp)
        os.replace(tmp, target)
        barrier()  # every rank now holds this step: the older ones are no longer needed
        for old in self.folder.glob(f"{self.name}-*-rank{self.rank}.pt"):
            if old != target:
                old.unlink(missing_ok=True)
