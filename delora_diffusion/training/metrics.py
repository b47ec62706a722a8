"""What the trainer logs: DeLoRA's strengths λ, the weight distance, and how trackers receive them.

‖W_ft − W_0‖_F per layer (``adapters.weight_distances``, from the low-rank factors) is the curve the
DeLoRA paper uses to show robustness to learning rate and training length.
"""

from __future__ import annotations

import torch
from torch import nn

from ..adapters import adapter_layers, weight_distances


@torch.no_grad()
def lambda_stats(unet: nn.Module) -> dict[str, float]:
    """Mean/min/max of the DeLoRA strengths λ over layers; empty for other methods."""
    values = [getattr(layer, name).detach().float().flatten()
              for layer in adapter_layers(unet).values() for name in layer.lambda_params]
    if not values:
        return {}
    lam = torch.cat(values)
    return {"lambda/mean": lam.mean().item(), "lambda/min": lam.min().item(), "lambda/max": lam.max().item()}


def weight_distance_logs(unet: nn.Module) -> dict[str, float]:
    """``weight_distance/total`` (sum over layers) and ``weight_distance/<layer>``."""
    per_layer = weight_distances(unet)
    logs = {"weight_distance/total": float(sum(per_layer.values()))}
    logs.update({f"weight_distance/{name}": value for name, value in per_layer.items()})
    return logs


@torch.no_grad()
def adapter_fingerprint(unet: nn.Module, extra_modules: dict[str, nn.Module] | None = None) -> str:
    """SHA-256 of every adapter tensor (names and fp32 bytes), then of the tensors of ``extra_modules`` (a task's
    trained modules, e.g. a hint encoder): equal on processes that hold equal adapters and modules."""
    import hashlib

    digest = hashlib.sha256()
    tensors = [(f"{name}.{key}", tensor) for name, layer in adapter_layers(unet).items()
               for key, tensor in sorted(layer.adapter_state_dict().items())]
    tensors += [(f"{name}.{key}", tensor) for name, module in (extra_modules or {}).items()
                for key, tensor in module.state_dict().items()]
    for key, tensor in tensors:
        digest.update(key.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tracker_config(values: dict) -> dict:
    """Hyper-parameters as trackers accept them (scalars and strings only)."""
    config = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = " | ".join(map(str, value))
        config[key] = "none" if value is None else value
    return config


def log_images(accelerator, rows: list[tuple[str, list]], step: int) -> None:
    """Validation images to every tracker: one tag per row (its caption), N×H×W×C for TensorBoard."""
    import numpy as np

    for tracker in accelerator.trackers:
        for index, (caption, images) in enumerate(rows):
            tag = f"validation/{index}: {caption}"
            if tracker.name == "tensorboard":
                tracker.log_images({tag: np.stack([np.asarray(im) for im in images])}, step, dataformats="NHWC")
            else:
                tracker.log_images({tag: images}, step)
