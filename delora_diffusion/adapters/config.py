"""What an adapter is: the method, its hyperparameters and the layers it targets.

One dataclass for every method so the trainer, the saved file and the CLI speak one language.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .methods import METHOD_TABLE, METHODS

DELORA_INITS = ("residual", "zero_b")
# The attention projections of every diffusers Attention module (self- and cross-attention).
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# Named target sets: the papers' default; with the transformer blocks' feed-forward layers (where a small
# UNet keeps much of what it knows about appearance); every nn.Linear of the model (kohya-like).
TARGET_PRESETS: dict[str, tuple[str, ...] | str] = {
    "attention": DEFAULT_TARGETS,
    "attention+ff": DEFAULT_TARGETS + ("ff.net.0.proj", "ff.net.2"),
    "all-linear": ".*",
}


class AdapterConfigError(UserError):
    """A configuration value that no method accepts."""


@dataclass
class AdapterConfig:
    """Hyperparameters of one adapter.

    Attributes:
        method: one of ``METHODS``.
        rank: r of DeLoRA / LoRA / DoRA (ignored by ETHER methods).
        target_modules: a list of module names matched exactly or as a dotted suffix, or a preset name
            (``TARGET_PRESETS``: attention, attention+ff, all-linear)
            (``"to_q"`` matches ``...attn1.to_q``), or one string used as a regex that must match the
            whole module name. Only ``nn.Linear`` modules are adapted.
        init: DeLoRA initialisation, ``"residual"`` (paper's code) or ``"zero_b"`` (PEFT's).
        lambda_init: initial DeLoRA strength λ (dimensionless; bounds ‖ΔW‖_F by 2λ·max_j‖W[:, j]‖).
        lora_alpha: LoRA/DoRA α; ``None`` means α = rank (scaling 1).
        ether_blocks: number n of diagonal blocks of the ETHER/ETHER+ reflections.
        one_sided: ETHER+ only: transform the input side only (W·H⁺), not both sides.
        lora_dropout: LoRA/DoRA only: dropout probability on the adapter's input while training (PEFT's).
    """

    # Each field's metadata is its command-line flag (``flag``, ``help``; training/args.py builds the flags
    # from these), so a hyperparameter, its default and its flag are declared here once.
    method: str = field(default="delora", metadata={"flag": "adapter", "choices": METHODS, "help": "method"})
    rank: int = field(default=16, metadata={"flag": "rank", "help": "r of DeLoRA / LoRA / DoRA"})
    target_modules: list[str] | str = field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        metadata={
            "flag": "target_modules",
            "nargs": "+",
            "metavar": "NAME",
            "help": "nn.Linear module names or dotted suffixes to adapt, one regex matching whole names, or one "
            "preset: attention (the papers' default, to_q/to_k/to_v/to_out.0), attention+ff (also the transformer "
            "blocks' feed-forward ff.net.0.proj/ff.net.2), all-linear (every nn.Linear)",
        },
    )
    init: str = field(
        default="residual", metadata={"flag": "adapter_init", "choices": DELORA_INITS, "help": "DeLoRA initialisation"}
    )
    lambda_init: float = field(default=15.0, metadata={"flag": "delora_lambda", "help": "initial DeLoRA strength λ"})
    lora_alpha: float | None = field(
        default=None, metadata={"flag": "lora_alpha", "help": "LoRA/DoRA α (default: α = rank)"}
    )
    ether_blocks: int = field(
        default=4,
        metadata={"flag": "ether_blocks", "help": "number of diagonal blocks of the ETHER/ETHER+ reflections"},
    )
    one_sided: bool = field(
        default=False, metadata={"flag": "ether_one_sided", "help": "ETHER+: transform the input side only"}
    )
    lora_dropout: float = field(
        default=0.0,
        metadata={"flag": "lora_dropout", "help": "LoRA/DoRA: dropout on the adapter's input while training"},
    )

    def __post_init__(self) -> None:
        targets = self.target_modules
        name = targets if isinstance(targets, str) else targets[0] if len(targets) == 1 else None
        if name in TARGET_PRESETS:  # a preset names its modules, so the saved config lists them
            preset = TARGET_PRESETS[name]
            targets = preset if isinstance(preset, str) else list(preset)
        self.target_modules = list(targets) if isinstance(targets, tuple) else targets
        self.validate()

    def validate(self) -> None:
        if self.method not in METHODS:
            raise AdapterConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        ranked = METHOD_TABLE[self.method].uses_rank
        if ranked and (not isinstance(self.rank, int) or self.rank < 1):
            raise AdapterConfigError(f"rank must be a positive integer, got {self.rank!r}")
        if self.init not in DELORA_INITS:
            raise AdapterConfigError(f"init must be one of {', '.join(DELORA_INITS)}, got {self.init!r}")
        if not ranked and (not isinstance(self.ether_blocks, int) or self.ether_blocks < 1):
            raise AdapterConfigError(f"ether_blocks must be a positive integer, got {self.ether_blocks!r}")
        if not self.target_modules:
            raise AdapterConfigError("target_modules is empty")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise AdapterConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.lora_dropout and not METHOD_TABLE[self.method].dropout:
            raise AdapterConfigError(f"lora_dropout applies to lora and dora (PEFT's dropout), not {self.method}")

    @property
    def alpha(self) -> float:
        return float(self.rank if self.lora_alpha is None else self.lora_alpha)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AdapterConfigError(f"unknown adapter config keys: {', '.join(unknown)}")
        return cls(**values)


def default_weight_decay(method: str) -> float:
    """AdamW weight decay used when the user gives none (the method table's)."""
    return METHOD_TABLE[method].weight_decay


def adapter_fields() -> list[dataclasses.Field[Any]]:
    """The hyperparameters of ``AdapterConfig``, each with its flag in ``field.metadata["flag"]``."""
    return list(dataclasses.fields(AdapterConfig))
