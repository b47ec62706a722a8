"""DeLoRA (Bini, Girrbach, Akata, ICLR 2025, Eq. 5-9, 15): decoupled angles and strength.

    ΔW = (λ / r) · (B Ξ A − B0 Ξ0 A0) · diag(w),   Ξ = diag(1 / (‖b_i‖ ‖a_i‖)),   w_j = ‖W[:, j]‖

Shapes (torch layout): W out×in, A r×in (rows a_i), B out×r (columns b_i), w in (column norms of the
*pretrained* W, fp32, computed once and saved with the adapter), λ a learnable scalar per layer.
Each normalised rank-1 term has ‖b̂_i â_iᵀ diag(w)‖_F ≤ max_j w_j, so ‖ΔW‖_F ≤ 2|λ|·max_j w_j
(residual init) or |λ|·max_j w_j (zero_b): the strength is bounded whatever the learning rate.

init="residual" (the paper's code): A, B Kaiming-uniform, A0/B0 frozen *clones*, so ΔW = 0 at step 0
and the frozen term is scaled by the current λ. init="zero_b" (PEFT's DeloraConfig): B = 0, no
frozen term.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import AdapterLayer, fp32_region
from .config import AdapterConfig

NORM_EPS = 1e-4  # clamp of ‖a_i‖, ‖b_i‖ (as PEFT) so a zero B column does not divide by zero


class DeLoRALinear(AdapterLayer):
    method = "delora"
    lambda_params = ("delora_lambda",)
    lora_A0: torch.Tensor  # buffers (residual init): the frozen copies of A and B
    lora_B0: torch.Tensor
    w_norm: torch.Tensor  # buffer: ‖W[:, j]‖ of the pretrained weight

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig) -> None:
        super().__init__(config)
        self.base_layer = base_layer
        r, weight = config.rank, base_layer.weight
        device, fp32 = weight.device, torch.float32
        self.rank = r
        self.residual = config.init == "residual"
        self.lora_A = nn.Parameter(torch.empty(r, base_layer.in_features, device=device, dtype=fp32))
        self.lora_B = nn.Parameter(torch.empty(base_layer.out_features, r, device=device, dtype=fp32))
        self.delora_lambda = nn.Parameter(torch.full((1,), float(config.lambda_init), device=device, dtype=fp32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        if self.residual:
            nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))
            # clone(): the authors' code aliases these to A, B, which keeps ΔW at 0 for ever.
            self.register_buffer("lora_A0", self.lora_A.detach().clone())
            self.register_buffer("lora_B0", self.lora_B.detach().clone())
        else:
            nn.init.zeros_(self.lora_B)
        with torch.no_grad():
            self.register_buffer("w_norm", weight.detach().float().norm(dim=0))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A: k×in, coef: k, B: out×k) with ΔW = B · diag(coef) · A · diag(w), k = r or 2r."""
        lam_r = self.delora_lambda / self.rank
        A: torch.Tensor = self.lora_A
        B: torch.Tensor = self.lora_B
        coef = lam_r / (A.norm(dim=1).clamp_min(NORM_EPS) * B.norm(dim=0).clamp_min(NORM_EPS))
        if self.residual:
            A0, B0 = self.lora_A0, self.lora_B0
            coef0 = lam_r / (A0.norm(dim=1).clamp_min(NORM_EPS) * B0.norm(dim=0).clamp_min(NORM_EPS))
            A, B, coef = torch.cat([A, A0]), torch.cat([B, B0], dim=1), torch.cat([coef, -coef0])
        return A.float(), coef.float(), B.float()

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        # x·diag(w) → A → scale → B without forming ΔW (out×in); diag(w) is folded into A (k×in),
        # which is cheaper than scaling every token of x. The cost over LoRA is the norms.
        y: torch.Tensor = self.base_layer(x)
        with fp32_region(x):
            A, coef, B = self._factors()
            h = F.linear(x.float(), A * self.w_norm) * (coef * self.scale)
            delta = F.linear(h, B)
        return y + delta.to(y.dtype)

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=self.lora_A.device.type, enabled=False):
            A, coef, B = self._factors()
            return B * coef, A * self.w_norm


def bound_coefficient(saved: dict[str, torch.Tensor], init: str) -> float:
    """c·max_j w_j of one layer from its saved tensors (``w_norm``), so that ‖ΔW‖_F ≤ |λ| times it:
    c = 2 with the residual init (trained term minus frozen copy), 1 with zero_b."""
    return (2.0 if init == "residual" else 1.0) * float(saved["w_norm"].float().max())
