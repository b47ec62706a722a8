"""The method table: every fact about a method that is not its maths, in one row.

The method list, validation, default weight decay, the papers' learning rates, labels and the model
card's one-line description are all read from here. Adding a method is one file of maths plus one row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.py reads this table, so the import runs one way only
    from .config import AdapterConfig


@dataclass(frozen=True)
class Method:
    name: str  # the name in flags, configs and adapter files
    label: str  # as the papers print it
    uses_rank: bool  # r is a hyperparameter (ETHER methods have blocks instead)
    weight_decay: float  # AdamW default when the user gives none
    dreambooth_lr: float  # the papers' DreamBooth rate (SD 1.5, batch 1)
    sweep_lr: float  # base rate of the DeLoRA paper's learning-rate study (its Fig. 2)
    summary: Callable[[AdapterConfig], str]  # one line from an AdapterConfig, for the model card
    strength: bool = False  # a learnable per-layer strength λ with its own learning rate and a norm bound
    dropout: bool = False  # takes --lora_dropout (PEFT's dropout on the adapter's input)
    kohya_export: bool = True  # has a kohya / ComfyUI LoRA form (DoRA's files normalise another axis)


def _delora(c: AdapterConfig) -> str:
    return f"DeLoRA, rank {c.rank}, λ₀ = {c.lambda_init:g}, {c.init} init"


def _lora_like(label: str) -> Callable[[AdapterConfig], str]:
    return lambda c: f"{label}, rank {c.rank}, α = {c.alpha:g}"


def _ether_like(label: str) -> Callable[[AdapterConfig], str]:
    return lambda c: f"{label}, {c.ether_blocks} blocks" + (", one-sided" if c.one_sided else "")


# ETHER's reflections are not weight-decayed (its paper); the rank methods use AdamW's usual 1e-2.
METHOD_TABLE: dict[str, Method] = {
    m.name: m
    for m in (
        Method("delora", "DeLoRA", True, 1e-2, 2e-2, 6e-3, _delora, strength=True),
        Method("lora", "LoRA", True, 1e-2, 6e-4, 6e-4, _lora_like("LoRA"), dropout=True),
        Method("dora", "DoRA", True, 1e-2, 6e-4, 6e-4, _lora_like("DoRA"), dropout=True, kohya_export=False),
        Method("ether", "ETHER", False, 0.0, 6e-3, 6e-3, _ether_like("ETHER")),
        Method("etherplus", "ETHER+", False, 0.0, 6e-3, 6e-3, _ether_like("ETHER+")),
    )
}
METHODS = tuple(METHOD_TABLE)
# DeLoRA's λ has its own rate in both papers' recipes (and no weight decay by default).
PAPER_LAMBDA_LEARNING_RATE = 1e-3


def method(name: str) -> Method:
    """The row of ``name``; ``KeyError`` naming the known methods otherwise."""
    try:
        return METHOD_TABLE[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
