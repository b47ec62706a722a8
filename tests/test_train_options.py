"""Loss options practitioners expect: --noise_offset (the target noise gets a per-channel offset)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from delora_diffusion.training.loss import diffusion_loss


def _loss(offset: float, predict_plain_noise: bool) -> torch.Tensor:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))  # what the loss draws first

    def denoiser(noisy, t, **_):
        return (plain if predict_plain_noise else torch.zeros_like(plain),)

    return diffusion_loss(denoiser, scheduler, latents, {}, torch.Generator().manual_seed(0), noise_offset=offset)


def test_noise_offset_shifts_the_target_per_channel():
    assert float(_loss(0.0, True).max()) == 0.0  # no offset: the target is exactly the drawn noise
    with_offset = _loss(0.1, True)
    assert float(with_offset.min()) > 0  # the offset part is now in the target
    # Its size: offset² per element on average (one N(0,1) per example and channel, broadcast over pixels).
    assert float(with_offset.mean()) == pytest.approx(0.1 ** 2, rel=0.9)
    assert torch.equal(_loss(0.0, False), _loss(0.0, False))
