"""Seeded sampling: one seed per image, so an image never depends on what else is in its batch.

The starting noise of each image is drawn from its own ``torch.Generator`` on the CPU in float32 and
only then moved and cast: a seed gives the same starting latents on CPU or GPU, in fp32 or fp16, and
at any batch size. (Drawing in the pipeline dtype on the device, diffusers' default, would not.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from .defaults import DREAMBOOTH


@dataclass
class Samples:
    images: list[Image.Image]
    nsfw: list[bool]  # flagged (and blacked out) by the pipeline's safety checker; all False without one


def default_size(pipe) -> tuple[int, int]:
    """(height, width) in pixels the checkpoint was trained at: UNet sample size × VAE downsampling."""
    side = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    return side, side


def seeded_generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def initial_latents(pipe, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
    """Starting noise (len(generators), C, height/f, width/f) in the UNet's dtype and device, one draw per generator."""
    factor = int(pipe.vae_scale_factor)
    shape = (1, int(pipe.unet.config.in_channels), height // factor, width // factor)
    noise = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
    return torch.cat(noise).to(device=pipe.unet.device, dtype=pipe.unet.dtype)


@torch.no_grad()
def sample_images(
    pipe,
    prompts: list[str],
    seeds: list[int],
    *,
    negative_prompt: str | None = None,
    num_inference_steps: int = DREAMBOOTH.steps,
    guidance_scale: float = DREAMBOOTH.guidance,
    height: int | None = None,
    width: int | None = None,
    **pipeline_kwargs,
) -> Samples:
    """One image per (prompt, seed) pair, rendered as one batch; sizes in pixels (default: ``default_size``).

    ``pipeline_kwargs`` go to the pipeline call as they are (e.g. a ControlNet pipeline's ``image=``).
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: one seed per image is required")
    if not prompts:
        return Samples(images=[], nsfw=[])
    default_h, default_w = default_size(pipe)
    height, width = height or default_h, width or default_w
    generators = seeded_generators(seeds)
    output = pipe(
        list(prompts),
        height=height,
        width=width,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
        latents=initial_latents(pipe, generators, height, width),
        # Stochastic solvers (euler_a) go on drawing per-step noise from each image's own generator.
        generator=generators,
        output_type="pil",
        **pipeline_kwargs,
    )
    # SDXL pipelines have no safety checker, so their output has no such field
    flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(prompts)
    return Samples(images=list(output.images), nsfw=[bool(x) for x in flagged])
