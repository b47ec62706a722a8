"""Sampling defaults of each kind of run, in one place (no torch here: the flag parsers read them)."""

from __future__ import annotations

from dataclasses import dataclass

from .schedulers import DEFAULT_SCHEDULER


@dataclass(frozen=True)
class SamplingDefaults:
    steps: int
    guidance: float
    scheduler: str


# DreamBooth prompts (generate.py, validation, class images): DPM-Solver++ is close to DDIM-50 in 25 steps.
DREAMBOOTH = SamplingDefaults(steps=25, guidance=7.5, scheduler=DEFAULT_SCHEDULER)
# Semantic maps (generate.py semantic, train_semantic.py validation): the OFT / ETHER / DeLoRA S2I sampling.
SEMANTIC = SamplingDefaults(steps=50, guidance=9.0, scheduler="ddim")
