"""The toy model's VAE: a diffusers ``AutoencoderKL`` with 4× downsampling, trained on world renders.

64 × 64 RGB images become 8 × 16 × 16 latents (8 channels, as SD3's VAE widened SD's 4 to 16: with 4, a
striped body came back plain in a blended colour). Trained on random 32 × 32 crops (the network is
convolutional; a crop costs a quarter of a full image), with a squared-error reconstruction loss weighted
towards the object (what a subject is made of; backdrops are most of the pixels) and a small KL term that
keeps the latents near a unit Gaussian; ``scaling_factor`` is set to 1 / std of the latents afterwards, as
Stable Diffusion's 0.18215 was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

VAE_CHANNELS = (16, 32, 64)
LATENT_CHANNELS = 8
OBJECT_WEIGHT = 4.0  # squared error on object pixels counts this many times a backdrop pixel's


def build_vae(sample_size: int = 64):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=sample_size,
        mid_block_add_attention=False,  # a 16 × 16 latent needs no global attention; it also keeps crops exact
    )


class _Reconstruction(torch.nn.Module):
    """The VAE's training forward (encode, sample, decode) as one module, so data parallelism can wrap it."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample(generator)).sample, posterior.kl()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_vae(
    images: np.ndarray,
    masks: np.ndarray,
    steps: int,
    seed: int,
    log: Callable[[str], None],
    batch_size: int = 16,
    crop: int = 32,
    lr: float = 2e-3,
    kl_weight: float = 1e-5,
):
    """Train a VAE on ``images`` (N, 64, 64, 3 uint8) with their object ``masks`` (N, 64, 64 bool) for
    ``steps``; returns (vae, history).

    In a process group (``parallel.run_ranks``) every rank draws its share of the ``batch_size`` crops
    and gradients are averaged, so the result does not depend on how many cores share the work beyond
    the data each one draws.

    The loss is the squared error (in pilots it got colours right sooner than L1), ``OBJECT_WEIGHT`` times
    on object pixels, plus ``kl_weight`` × KL.
    The posterior starts near-deterministic (unit noise would drown the young encoder's signal) and every
    residual block as the identity (its second convolution zeroed).
    """
    from .parallel import data_parallel, rank_info

    rank, world = rank_info()
    torch.manual_seed(seed)  # the same initial weights on every rank
    vae = build_vae(images.shape[1])
    with torch.no_grad():
        vae.quant_conv.bias[vae.config.latent_channels :] = -8.0  # log-variance: unit noise would drown the signal
        for name, module in vae.named_modules():
            if "resnets" in name and name.endswith("conv2"):
                module.weight.zero_()
                module.bias.zero_()
    vae.train()
    model = data_parallel(_Reconstruction(vae))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed * 1000 + rank)
    history, start, smooth = [], time.perf_counter(), None
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(images), (batch_size // world,), generator=generator)
        x = to_tensor(images[idx.numpy()])
        weight = 1.0 + (OBJECT_WEIGHT - 1.0) * torch.from_numpy(masks[idx.numpy()]).float()[:, None]
        oy, ox = torch.randint(0, images.shape[1] - crop + 1, (2,), generator=generator).tolist()
        x = x[:, :, oy : oy + crop, ox : ox + crop]
        weight = weight[:, :, oy : oy + crop, ox : ox + crop]
        for group in optimizer.param_groups:  # cosine decay to 10 %
            group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        reconstruction, kl = model(x, generator)
        mse = ((reconstruction - x).pow(2) * weight).mean() / weight.mean()
        loss = mse + kl_weight * kl.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        smooth = mse.item() if smooth is None else 0.98 * smooth + 0.02 * mse.item()
        if rank == 0 and (step % 100 == 0 or step == steps):
            elapsed = time.perf_counter() - start
            history.append({"step": step, "seconds": round(elapsed, 1), "mse": round(smooth, 5)})
            log(f"vae step {step}/{steps}: MSE {smooth:.4f} ({elapsed:.0f} s)")
    vae.eval()
    return vae, history


@torch.no_grad()
def latent_statistics(vae, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior means and stds of ``images`` ((N, 4, h, w) float16 each) and the 1/std scaling factor."""
    means, stds = [], []
    for i in range(0, len(images), batch_size):
        dist = vae.encode(to_tensor(images[i : i + batch_size])).latent_dist
        means.append(dist.mean.half().numpy())
        stds.append(dist.std.half().numpy())
    mean, std = np.concatenate(means), np.concatenate(stds)
    scaling = 1.0 / float(np.sqrt((mean.astype(np.float32) ** 2).mean() + (std.astype(np.float32) ** 2).mean()))
    return mean, std, scaling


@torch.no_grad()
def round_trip(vae, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the same pictures encoded and decoded (posterior means), uint8."""
    out = []
    for i in range(0, len(images), batch_size):
        decoded = vae.decode(vae.encode(to_tensor(images[i : i + batch_size])).latent_dist.mode()).sample
        out.append(decoded.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


@torch.no_grad()
def reconstruction_error(vae, images: np.ndarray) -> float:
    """Mean absolute error of full-size reconstructions, in [0, 255] pixel units."""
    x = to_tensor(images)
    out = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    return float((out - x).abs().mean() * 127.5)
