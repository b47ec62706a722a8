"""``--train_text_encoder``: the run's adapter method on the CLIP text encoder(s) too, trained with the UNet's.

The same method and settings (rank, λ, ...) go on every attention and MLP linear of each text encoder
(SDXL: both), as kohya's trainer does (diffusers' script adapts the attention projections only); their
layers are saved in the run's adapter file under ``text_encoder.`` / ``text_encoder_2.`` and exported with
the UNet's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..adapters import AdapterConfig, attach, cast_base, find_target_modules
from ..adapters.io import TEXT_ENCODERS
from .components import Components

TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]  # CLIP attention and MLP


def attach_text_encoder_adapters(
    components: Components, config: AdapterConfig, weight_dtype: torch.dtype, device: torch.device
) -> dict[str, nn.Module]:
    """Attach ``config``'s adapter to every text encoder of ``components`` in place (initialised from fp32
    weights, the base then cast to ``weight_dtype``, the adapter kept fp32), in training mode; returns them by
    their pipeline names (``text_encoder``, ``text_encoder_2``), which are also their names among the run's
    trained modules (``RunContext.trainable``)."""
    encoders = dict(zip(TEXT_ENCODERS, components.text_encoders()))
    for encoder in encoders.values():
        encoder.to(dtype=torch.float32)
        attach(encoder, config, layer_names=find_target_modules(encoder, TEXT_ENCODER_TARGETS))
        cast_base(encoder, weight_dtype)
        encoder.to(device)
        encoder.train()
    return encoders
