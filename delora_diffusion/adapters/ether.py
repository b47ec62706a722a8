"""ETHER and ETHER+ (Bini et al., ICML 2024): bounded multiplicative updates by hyperplane reflections.

Shapes (torch layout): W out×in. The input dimension is cut into n contiguous chunks of size
d = in/n (the paper's block-diagonal split); block k of a transform acts on chunk k only.

ETHER:   W' = W · H,   H = blockdiag(H_1..H_n),  H_k = I − 2 û_k û_kᵀ   (û = u/‖u‖, u: n×d)
         H is orthogonal and ‖H_k − I‖_F = 2, so the distance to W is bounded.
ETHER+:  W' = H̃ · W · H,  H_k = I − û_k û_kᵀ + v̂_k v̂_kᵀ on inputs, H̃ with its own pair (p, q) on the
         outputs (one_sided=True drops H̃). v = u and q = p at init, so W' = W at step 0.

Both updates are low rank: W(H − I) has rank n; ETHER+'s W' − W = (H̃ − I)·W·H + W·(H − I) has rank
at most 4 per block. ``lora_factors`` writes them exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import AdapterLayer, fp32_region
from .config import AdapterConfig


def _unit_rows(u: torch.Tensor) -> torch.Tensor:
    unit: torch.Tensor = u / u.norm(dim=-1, keepdim=True)
    return unit


def _kaiming_rows(n: int, d: int, device: torch.device) -> nn.Parameter:
    # The paper's code: Kaiming-uniform(a=√5) vectors, one per block.
    u = torch.empty(n, d, device=device, dtype=torch.float32)
    nn.init.kaiming_uniform_(u, a=math.sqrt(5))
    return nn.Parameter(u)


def block_project(x: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Σ_k (x_k · ê_k) ê_k per block: x (..., n·d), units (n, d) unit rows → (..., n·d)."""
    n, d = units.shape
    xb = x.reshape(*x.shape[:-1], n, d)
    coeff = (xb * units).sum(-1, keepdim=True)
    return (coeff * units).reshape(x.shape)


def block_embed(units: torch.Tensor) -> torch.Tensor:
    """Rows of ``units`` (n×d) placed in their chunk of an n×(n·d) matrix (zeros elsewhere)."""
    n, d = units.shape
    eye = torch.eye(n, device=units.device, dtype=units.dtype)
    return (eye[:, :, None] * units[None, :, :]).reshape(n, n * d)


def _check_blocks(name: str, size: int, n: int, side: str) -> None:
    if size % n:
        raise ValueError(f"ether_blocks={n} does not divide the {side} dimension {size} of a targeted layer ({name})")


class ETHERLinear(AdapterLayer):
    method = "ether"

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig) -> None:
        super().__init__(config)
        self.base_layer = base_layer
        n = config.ether_blocks
        _check_blocks("ETHER", base_layer.in_features, n, "input")
        self.ether_u = _kaiming_rows(n, base_layer.in_features // n, base_layer.weight.device)

    def input_update(self, x: torch.Tensor) -> torch.Tensor:
        """x·(H − I) = −2 Σ_k (x_k·û_k) û_k; H is symmetric, so this is also (H − I)·x."""
        return -2.0 * block_project(x, _unit_rows(self.ether_u))

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        # W + s(WH − W) = W(I + s(H − I)): transform the input, then the frozen layer.
        with fp32_region(x):
            x32 = x.float()
            x_ref = x32 + self.scale * self.input_update(x32)
        return self.base_layer(x_ref.to(x.dtype))  # type: ignore[no-any-return]  # nn.Module.__call__ is untyped

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        U = block_embed(_unit_rows(self.ether_u.float()))  # n × in
        W = self.base_layer.weight.float()
        return -2.0 * (W @ U.T), U


class ETHERPlusLinear(AdapterLayer):
    method = "etherplus"

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig) -> None:
        super().__init__(config)
        self.base_layer = base_layer
        n, device = config.ether_blocks, base_layer.weight.device
        self.one_sided = config.one_sided
        _check_blocks("ETHER+", base_layer.in_features, n, "input")
        self.ether_u = _kaiming_rows(n, base_layer.in_features // n, device)
        self.ether_v = nn.Parameter(self.ether_u.detach().clone())
        if not self.one_sided:
            _check_blocks("ETHER+", base_layer.out_features, n, "output")
            self.ether_p = _kaiming_rows(n, base_layer.out_features // n, device)
            self.ether_q = nn.Parameter(self.ether_p.detach().clone())

    @staticmethod
    def _update(z: torch.Tensor, minus: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        """z·(H⁺ − I) = −Σ_k (z_k·m̂_k) m̂_k + Σ_k (z_k·p̂_k) p̂_k (H⁺ symmetric)."""
        return block_project(z, _unit_rows(plus)) - block_project(z, _unit_rows(minus))

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        # y = W x + s·Δ, Δ = H̃ W H x − W x: one frozen matmul (in the model's precision); W(H − I)x in
        # its low-rank form −(W Ûᵀ)(Û x) + (W V̂ᵀ)(V̂ x), so the scale needs no second pass over W.
        weight, bias = self.base_layer.weight, self.base_layer.bias
        y0 = F.linear(x.to(weight.dtype), weight)
        with fp32_region(x):
            x32, w32 = x.float(), weight.float()
            U = block_embed(_unit_rows(self.ether_u.float()))
            V = block_embed(_unit_rows(self.ether_v.float()))
            delta = F.linear(F.linear(x32, V), w32 @ V.T) - F.linear(F.linear(x32, U), w32 @ U.T)  # W(H − I)x
            if not self.one_sided:
                delta = delta + self._update(y0.float() + delta, self.ether_p, self.ether_q)  # (H̃ − I) W H x
            out = y0.float() + self.scale * delta
        out = out.to(y0.dtype)
        return out if bias is None else out + bias

    def lora_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        W = self.base_layer.weight.float()
        U = block_embed(_unit_rows(self.ether_u.float()))
        V = block_embed(_unit_rows(self.ether_v.float()))
        # W(H − I) = (−W Uᵀ) U + (W Vᵀ) V
        Bs, As = [-(W @ U.T), W @ V.T], [U, V]
        if not self.one_sided:
            P = block_embed(_unit_rows(self.ether_p.float()))
            Q = block_embed(_unit_rows(self.ether_q.float()))
            WH = W + (W @ V.T) @ V - (W @ U.T) @ U
            # (H̃ − I) W H = (−Pᵀ)(P W H) + (Qᵀ)(Q W H)
            Bs += [-P.T, Q.T]
            As += [P @ WH, Q @ WH]
        return torch.cat(Bs, dim=1), torch.cat(As, dim=0)
