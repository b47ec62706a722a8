"""The frozen parts of a Stable Diffusion checkpoint the trainers use, loaded the way users name them.

``load_components`` reads tokenizer, text encoder, VAE, UNet and the training noise scheduler from a
pipeline folder or hub id; ``sampling_pipeline`` assembles a ``StableDiffusionPipeline`` around the
in-memory modules (no reload, no dtype change: the adapter weights stay fp32) for class images and
validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.loading import load_unet
from ..models.tiny import COMPLETE_MARKER, DEFAULT_TINY_DIR, ensure_tiny


@dataclass
class Components:
    base_model: str
    tokenizer: object
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: object  # DDPMScheduler with the checkpoint's schedule

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def is_default_tiny(name_or_path: str) -> bool:
    return Path(name_or_path).resolve() == (DEFAULT_TINY_DIR / "sd").resolve()


def ensure_base_model(name_or_path: str) -> str:
    """Build the tiny offline model when ``name_or_path`` is its default folder and it is missing."""
    if is_default_tiny(name_or_path) and not (Path(name_or_path) / COMPLETE_MARKER).exists():
        print(f"building the tiny random-weight Stable Diffusion model in {name_or_path} (first use)", flush=True)
        ensure_tiny("sd", DEFAULT_TINY_DIR)
    return name_or_path


def load_components(name_or_path: str, revision: str | None = None, variant: str | None = None,
                    zero_terminal_snr: bool = False) -> Components:
    """Load the pipeline's components; ``OSError`` naming the checkpoint if one is missing. ``zero_terminal_snr``
    rescales the training schedule's betas so the last step has SNR 0 (Lin et al., 2024; v-prediction only:
    an ε target says nothing at SNR 0)."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    def load(what, fn):
        try:
            return fn()
        except (OSError, ValueError) as exc:
            raise OSError(f"could not load the {what} of {name_or_path!r} (expected a diffusers Stable Diffusion "
                          f"pipeline folder or hub id): {exc}") from exc

    # A hub id is "name" or "owner/name"; anything else that does not exist is a mistyped local folder.
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not Path(name_or_path).expanduser().exists():
        raise OSError(f"base model folder {name_or_path} does not exist")
    kw = dict(revision=revision)
    return Components(
        base_model=name_or_path,
        tokenizer=load("tokenizer", lambda: CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", **kw)),
        text_encoder=load("text encoder", lambda: CLIPTextModel.from_pretrained(
            name_or_path, subfolder="text_encoder", variant=variant, **kw)),
        vae=load("VAE", lambda: AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", variant=variant, **kw)),
        unet=load_unet(name_or_path, revision=revision, variant=variant),
        noise_scheduler=load("scheduler", lambda: DDPMScheduler.from_pretrained(
            name_or_path, subfolder="scheduler", **kw, **({"rescale_betas_zero_snr": True} if zero_terminal_snr else {}))),
    )


def sampling_pipeline(components: Components, unet: torch.nn.Module | None = None):
    """A ``StableDiffusionPipeline`` over the in-memory modules (no reload, no copy, no recast) with
    the inference default solver, so its images match ``generate.py``'s for the same seeds."""
    from diffusers import StableDiffusionPipeline

    from ..inference.schedulers import DEFAULT_SCHEDULER, set_scheduler

    pipeline = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=unet if unet is not None else components.unet,
        scheduler=components.noise_scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    set_scheduler(pipeline, DEFAULT_SCHEDULER)  # a new scheduler object: the training one is untouched
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def encode_batch(tokenizer, text_encoder: torch.nn.Module, prompts: list[str], device, dtype) -> torch.Tensor:
    """Hidden states (B, tokens, width) of ``prompts`` in ``dtype``, with gradients when the encoder has any
    (``--train_text_encoder``)."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    return text_encoder(ids)[0].to(dtype)


@torch.no_grad()
def encode_prompts(components: Components, prompts: list[str], device, dtype) -> dict[str, torch.Tensor]:
    """Text-encoder hidden states per distinct prompt: ``{prompt: (tokens, width)}``."""
    unique = list(dict.fromkeys(prompts))
    return dict(zip(unique, encode_batch(components.tokenizer, components.text_encoder, unique, device, dtype)))
