"""Images to VAE latents for training: fresh encodes, or a cache of the VAE posteriors.

The cache keeps each image's posterior (mean and log-variance, as diffusers' ``latent_dist.parameters``)
rather than one sample, so a cached run still draws a new latent sample every step, exactly as a
fresh encode would; only the deterministic encoder pass is saved.
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution


def _scale(latents: torch.Tensor, vae) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


@torch.no_grad()
def posterior_parameters(vae, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] → (B, 2·C, H/f, W/f) posterior mean and log-variance, fp32."""
    return vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.parameters.float()


def sample_latents(parameters: torch.Tensor, vae, generator: torch.Generator | None) -> torch.Tensor:
    """A scaled latent sample (B, C, h, w), fp32, from posterior parameters."""
    posterior = DiagonalGaussianDistribution(parameters.float())
    return _scale(posterior.sample(generator=generator), vae)


def batch_latents(batch: dict, vae, generator: torch.Generator | None) -> torch.Tensor:
    """Latents of a batch holding either ``latent_dist`` (cached) or ``pixel_values`` (fresh encode)."""
    if "latent_dist" in batch:
        parameters = batch["latent_dist"]
    else:
        parameters = posterior_parameters(vae, batch["pixel_values"])
    return sample_latents(
        parameters.to(generator.device if generator is not None else parameters.device), vae, generator
    )


@torch.no_grad()
def cache_posteriors(images: list[torch.Tensor], vae, batch_size: int = 8) -> torch.Tensor:
    """Posterior parameters of each (3, H, W) image, stacked on the CPU: (N, 2·C, H/f, W/f)."""
    chunks = []
    for start in range(0, len(images), batch_size):
        chunk = torch.stack(images[start : start + batch_size])
        chunks.append(posterior_parameters(vae, chunk).cpu())
    return torch.cat(chunks)
