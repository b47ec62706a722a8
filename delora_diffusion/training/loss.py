"""The denoising objective: noise clean latents at random timesteps and score the UNet's prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diffusion_loss(
    unet,
    noise_scheduler,
    latents: torch.Tensor,
    conditioning: dict,
    generator: torch.Generator,
    snr_gamma: float | None = None,
    input_dtype: torch.dtype | None = None,
    noise_offset: float = 0.0,
) -> torch.Tensor:
    """Per-example MSE (B,) between the UNet's prediction and its target (noise or velocity).

    ``latents`` (B, C, h, w) are clean, scaled VAE latents; noise and timesteps come from
    ``generator`` only. ``input_dtype`` (the frozen UNet's dtype under mixed precision) is what the
    UNet receives, so it also runs where no autocast covers the mismatch; the loss is fp32. With ``snr_gamma`` each example is weighted by min(SNR, γ)/SNR (ε-prediction)
    or min(SNR, γ)/(SNR + 1) (v-prediction), the Min-SNR strategy (Hang et al., ICCV 2023). ``noise_offset``
    adds ``offset · N(0, 1)`` per example and channel to the noise (Guttenberg 2023: lets the model learn
    overall brightness; diffusers' and kohya's ``--noise_offset``).
    """
    from diffusers.training_utils import compute_snr

    config = noise_scheduler.config
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    timesteps = torch.randint(
        0, config.num_train_timesteps, (latents.shape[0],), generator=generator, device=latents.device
    )
    if noise_offset:  # drawn after the rest, so runs without it keep their exact noise
        noise = noise + noise_offset * torch.randn(
            (*latents.shape[:2], 1, 1), generator=generator, device=latents.device, dtype=latents.dtype
        )
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if config.prediction_type == "epsilon":
        target = noise
    elif config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"unsupported prediction_type {config.prediction_type!r} in the model's scheduler")
    if input_dtype is not None:
        noisy = noisy.to(input_dtype)
        conditioning = _cast(conditioning, input_dtype)
    prediction = unet(noisy, timesteps, **conditioning, return_dict=False)[0]
    per_example = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma is not None:
        snr = compute_snr(noise_scheduler, timesteps)
        denominator = snr + 1 if config.prediction_type == "v_prediction" else snr
        per_example = per_example * torch.clamp(snr, max=snr_gamma) / denominator
    return per_example


def _cast(value, dtype: torch.dtype):
    """Floating tensors in ``value`` (nested dicts too: SDXL's ``added_cond_kwargs``) cast to ``dtype``."""
    if isinstance(value, dict):
        return {key: _cast(item, dtype) for key, item in value.items()}
    return value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value
