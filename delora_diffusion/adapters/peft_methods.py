"""LoRA and DoRA from PEFT, behind the same interface as DeLoRA and ETHER.

The math and the forward pass are PEFT's ``lora.Linear`` built from a ``LoraConfig``; this wrapper
adds what the shared interface needs: exact factors / dense update, scale, merge, save names.

    LoRA: W' = W + (α/r)·B A
    DoRA: W' = m ⊙ (W + (α/r)·B A) / ‖W + (α/r)·B A‖_row   (m: out, one magnitude per output row)
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from .base import AdapterLayer, fp32_region
from .config import AdapterConfig

ADAPTER_NAME = "default"


class PeftLoRALinear(AdapterLayer):
    """LoRA (``method="lora"``) or DoRA (``method="dora"``) via PEFT's layer."""

    peft: Any  # PEFT's lora.Linear; its attributes (lora_A, scaling, ...) are untyped ModuleDicts and dicts
    lora_scaling: float  # α / r

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig) -> None:
        super().__init__(config)
        self.method = config.method
        self.use_dora = config.method == "dora"
        lora_config = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,  # type: ignore[arg-type]  # PEFT annotates int; any float works
            use_dora=self.use_dora,
            lora_dropout=config.lora_dropout,
            target_modules=["layer"],
        )
        # PEFT's public injection (stable across versions, unlike lora.Linear's constructor) on a holder.
        holder = nn.Module()
        holder.layer = base_layer
        inject_adapter_in_model(lora_config, holder, adapter_name=ADAPTER_NAME)
        self.peft = holder.layer
        if not isinstance(self.peft, LoraLayer):
            raise TypeError(f"PEFT did not wrap the {type(base_layer).__name__} layer with LoRA")
        # PEFT may create adapter weights in the base dtype; the interface keeps them fp32.
        for tensor in self.adapter_tensors().values():
            tensor.data = tensor.data.float()
        self.lora_scaling = config.alpha / config.rank

    @property  # PEFT keeps the frozen layer; this reads it
    def base_layer(self) -> nn.Linear:  # type: ignore[override]
        layer: nn.Linear = self.peft.get_base_layer()
        return layer

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        named = {
            "lora_A": self.peft.lora_A[ADAPTER_NAME].weight,
            "lora_B": self.peft.lora_B[ADAPTER_NAME].weight,
        }
        if self.use_dora:
            named["magnitude"] = self.peft.lora_magnitude_vector[ADAPTER_NAME].weight
        return named

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor
        if self.scale == 1.0:
            y = self.peft(x)
            return y
        if not self.use_dora:
            # LoRA is additive: PEFT's own scaling is exactly s·(W' − W).
            self.peft.scaling[ADAPTER_NAME] = self.lora_scaling * self.scale
            try:
                y = self.peft(x)
                return y
            finally:
                self.peft.scaling[ADAPTER_NAME] = self.lora_scaling
        # DoRA is not additive in its factors: blend the outputs, x·(W + s(W' − W))ᵀ.
        y0: torch.Tensor = self.base_layer(x)
        y = self.peft(x)
        return y0 + self.scale * (y - y0)

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_dora:
            raise NotImplementedError("DoRA's update m⊙(W+BA)/‖W+BA‖ − W is full rank; use delta_weight()")
        named = self.adapter_tensors()
        return named["lora_B"].float() * self.lora_scaling, named["lora_A"].float()

    def _dora_weight(self) -> torch.Tensor:
        """DoRA's W' (out×in, fp32) at scale 1, by the DoRA paper's formula on PEFT's tensors."""
        named = self.adapter_tensors()
        W = self.base_layer.weight.float()
        with fp32_region(W):
            directional = W + self.lora_scaling * (named["lora_B"].float() @ named["lora_A"].float())
            weight: torch.Tensor = (
                named["magnitude"].float().unsqueeze(1) * directional / directional.norm(dim=1, keepdim=True)
            )
            return weight

    def delta_weight(self) -> torch.Tensor:
        if not self.use_dora:
            return super().delta_weight()
        return self.scale * (self._dora_weight() - self.base_layer.weight.float())

    def update_norm(self) -> torch.Tensor:
        return self.delta_weight().norm() if self.use_dora else super().update_norm()
