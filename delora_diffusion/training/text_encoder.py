"""``--train_text_encoder``: the run's adapter method on the CLIP text encoder too, trained with the UNet's.

The same method and settings (rank, λ, ...) go on every attention and MLP linear of the text encoder, as
kohya's trainer does (diffusers' script adapts the attention projections only); its layers are saved in
the run's adapter file under ``text_encoder.`` and exported with the UNet's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..adapters import AdapterConfig, attach, cast_base, find_target_modules

TEXT_ENCODER = "text_encoder"  # its name among the run's trained modules (``RunContext.trainable``)
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]  # CLIP attention and MLP


def attach_text_encoder_adapter(text_encoder: nn.Module, config: AdapterConfig, weight_dtype: torch.dtype,
                                device: torch.device) -> int:
    """Attach ``config``'s adapter to ``text_encoder`` in place (initialised from fp32 weights, the base then
    cast to ``weight_dtype``, the adapter kept fp32) and put it in training mode; returns the layer count."""
    text_encoder.to(dtype=torch.float32)
    layers = attach(text_encoder, config, layer_names=find_target_modules(text_encoder, TEXT_ENCODER_TARGETS))
    cast_base(text_encoder, weight_dtype)
    text_encoder.to(device)
    text_encoder.train()
    return len(layers)

