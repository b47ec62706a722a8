"""Small models and helpers shared by the adapter tests."""

from __future__ import annotations

import torch
from torch import nn

ALL_METHODS = ["delora", "lora", "dora", "ether", "etherplus"]


class ToyAttention(nn.Module):
    """The projection names of a diffusers Attention module, with cross-attention-like input widths."""

    def __init__(self, dim: int = 16, context_dim: int = 24):
        super().__init__()
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.other = nn.Linear(dim, dim)


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn1 = ToyAttention()
        self.attn2 = ToyAttention()

    def forward(self, x, ctx):
        out = []
        for attn in (self.attn1, self.attn2):
            out.append(attn.to_out[0](attn.to_q(x)) + attn.to_k(ctx).mean() + attn.to_v(ctx).sum(-1, keepdim=True))
        return torch.cat(out, -1)


def toy_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 5, 16, generator=g), torch.randn(3, 5, 24, generator=g)


@torch.no_grad()
def perturb(model: nn.Module, std: float = 0.2, seed: int = 1) -> None:
    """Move every trainable parameter so the update is clearly non-zero (as after training)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(std * torch.randn(p.shape, generator=g))
