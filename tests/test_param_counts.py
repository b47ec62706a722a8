"""Trainable parameter counts on the real SD 1.5 UNet architecture (meta device, no weights)."""

from __future__ import annotations

import pytest

from delora_diffusion.adapters import AdapterConfig, adapter_layers, attach, trainable_parameter_count
from delora_diffusion.models.sd15 import sd15_unet

LORA_R16 = 3_188_736  # the well-known count of rank-16 LoRA on SD 1.5's attention projections


@pytest.mark.parametrize(
    "config,expected",
    [
        (AdapterConfig(method="lora", rank=16, lora_alpha=32), LORA_R16),
        (AdapterConfig(method="delora", rank=16), LORA_R16 + 128),  # + one λ per layer
        (AdapterConfig(method="ether", ether_blocks=4), 99_456),  # Σ in_features
        (AdapterConfig(method="etherplus", ether_blocks=4), 398_592),  # 2·Σ in + 2·Σ out
        (AdapterConfig(method="etherplus", ether_blocks=4, one_sided=True), 198_912),
    ],
)
def test_sd15_parameter_counts(config, expected):
    unet = sd15_unet(empty=True)
    attach(unet, config)
    assert len(adapter_layers(unet)) == 128
    assert trainable_parameter_count(unet) == expected
