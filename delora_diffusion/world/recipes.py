"""Sizes and step counts of ``delora-world-pretrain`` runs: the shipped models' recipe and a smoke one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Sizes and step counts of one pretraining run (batches are totals over the processes)."""

    images: int = 48_000  # pretraining scenes (VAE, UNet, CLIP)
    processes: int = 2
    vae_steps: int = 1_600
    vae_batch: int = 64
    vae_lr: float = 2e-3
    unet_steps: int = 4_000
    unet_batch: int = 64
    unet_lr: float = 1e-3
    clip_steps: int = 2_000
    clip_batch: int = 96
    dino_steps: int = 2_500
    dino_instances: int = 3_000
    dino_views: int = 5
    quality_renders: int = 400  # fresh renders for the judges' figures
    quality_images_per_prompt: int = 2  # base-model images per (class, context) prompt
    checkpoint_every: int = 250  # steps between the UNet's and judges' checkpoints (a kill loses at most these)


RECIPES = {
    "full": Recipe(),
    # every stage in about a minute: a check of the command, not a model
    "smoke": Recipe(
        images=256,
        vae_steps=4,
        vae_batch=4,
        unet_steps=4,
        unet_batch=4,
        clip_steps=2,
        clip_batch=16,
        dino_steps=2,
        dino_instances=40,
        dino_views=3,
        quality_renders=8,
        quality_images_per_prompt=1,
        checkpoint_every=2,
    ),
}
