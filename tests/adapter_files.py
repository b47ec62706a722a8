"""Adapter files for inference tests: attach to a tiny UNet, move the trainable tensors away from their
initial values (so the adapter really changes the images), save."""

from __future__ import annotations

from pathlib import Path

import torch

from delora_diffusion.adapters import AdapterConfig, adapter_layers, attach, save_adapter


def make_adapter_file(
    unet, path: Path, base_model: str, method: str = "delora", seed: int = 0, noise: float = 0.3
) -> Path:
    """Attach ``method`` to ``unet`` (modified in place), perturb every trainable parameter, save to ``path``."""
    attach(unet, AdapterConfig(method=method, rank=4, lambda_init=2.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapter_layers(unet).values():
            for group in layer.trainable_parameters().values():
                for p in group:
                    p.add_(noise * torch.randn(p.shape, generator=generator))
    return save_adapter(unet, path, base_model=base_model)
