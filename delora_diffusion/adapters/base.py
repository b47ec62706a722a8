"""The interface every adapted layer implements, whatever the method.

An ``AdapterLayer`` replaces one frozen ``nn.Linear`` (weight W, out×in) in the model tree and
keeps it as ``base_layer``. Every method's update W' − W is written as exact low-rank factors
(``lora_factors``), which gives the weight distance, merging and the export to plain LoRA one
shared implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import AdapterConfig


def fp32_region(x: torch.Tensor) -> torch.autocast:
    """Autocast off: adapter norms and updates are computed in fp32 under fp16/bf16 training."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def lowrank_frobenius(B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """‖B @ A‖_F for B (out×k), A (k×in) in O((out+in)·k²), without forming the out×in product; fp32 result.

    The k×k Gram is summed in float64: for residual DeLoRA the factors hold the trained and the frozen
    term, and the sum subtracts two nearly equal numbers (in float32 a small update's norm comes out 0).
    """
    B, A = B.double(), A.double()
    gram = (B.transpose(0, 1) @ B) * (A @ A.transpose(0, 1))
    return gram.sum().clamp_min(0).sqrt().float()


class AdapterLayer(nn.Module):
    """Base class of the adapted ``nn.Linear`` layers.

    Subclasses register ``base_layer`` (the frozen Linear) and implement ``adapted_forward`` and
    ``lora_factors``. ``scale`` (s ≥ 0) multiplies the update: the layer acts as W + s·(W' − W).
    """

    method: str = ""
    base_layer: nn.Linear  # registered by every subclass
    # Parameter names (as in named_parameters of this layer) trained with the λ learning rate.
    lambda_params: tuple[str, ...] = ()

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = 1.0
        self.enabled = True
        self._premerge_weight: torch.Tensor | None = None

    # --- to implement -------------------------------------------------------------------------
    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x·(W + s(W' − W))ᵀ + b for x (..., in) → (..., out)."""
        raise NotImplementedError

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact factors (B: out×k, A: k×in, fp32) with W' − W = B @ A at scale 1."""
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def merged(self) -> bool:
        return self._premerge_weight is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or not self.enabled or self.scale == 0:
            return self.base_layer(x)  # type: ignore[no-any-return]  # nn.Module.__call__ is untyped
        return self.adapted_forward(x)

    def delta_weight(self) -> torch.Tensor:
        """The update applied at the current scale, s·(W' − W), fp32, out×in."""
        B, A = self.lora_factors()
        return self.scale * (B @ A)

    def update_norm(self) -> torch.Tensor:
        """‖s·(W' − W)‖_F as a 0-dim fp32 tensor (the paper's weight distance), without forming W'."""
        B, A = self.lora_factors()
        return self.scale * lowrank_frobenius(B, A)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base_layer.weight``; ``unmerge`` restores the weight bit-exactly."""
        if self.merged:
            return
        weight = self.base_layer.weight
        delta = self.delta_weight()
        # Keep the original: for multiplicative methods the update depends on W itself.
        self._premerge_weight = weight.detach().clone()
        weight.add_(delta.to(weight.dtype))

    @torch.no_grad()
    def unmerge(self) -> None:
        if self._premerge_weight is None:
            return
        self.base_layer.weight.copy_(self._premerge_weight)
        self._premerge_weight = None

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """The live tensors (parameters and buffers) that define the update, by local name."""
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if not k.startswith("base_layer.")}

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor needed to rebuild this layer's update (trainable and frozen), detached."""
        return {k: v.detach() for k, v in self.adapter_tensors().items()}

    @torch.no_grad()
    def load_adapter_state_dict(self, tensors: dict[str, torch.Tensor], layer_name: str) -> None:
        own = self.adapter_tensors()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise ValueError(f"layer {layer_name}: missing tensors {missing}, unexpected tensors {unexpected}")
        for key, target in own.items():
            value = tensors[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"layer {layer_name}: tensor {key} has shape {tuple(value.shape)} in the file, "
                    f"expected {tuple(target.shape)}"
                )
            target.copy_(value.to(device=target.device, dtype=target.dtype))

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable adapter parameters split into ``{"adapter": [...], "lambda": [...]}``."""
        groups: dict[str, list[nn.Parameter]] = {"adapter": [], "lambda": []}
        for name, tensor in self.adapter_tensors().items():
            if isinstance(tensor, nn.Parameter) and tensor.requires_grad:
                groups["lambda" if name in self.lambda_params else "adapter"].append(tensor)
        return groups

    def extra_repr(self) -> str:
        return f"method={self.method}, in={self.in_features}, out={self.out_features}, scale={self.scale}"
