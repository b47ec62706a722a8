"""The toy model's UNet and text encoder, trained together from scratch on cached VAE latents.

Stable Diffusion's shape at miniature scale: a ``UNet2DConditionModel`` whose attention blocks hold
``to_q/to_k/to_v/to_out.0`` self- and cross-attention projections (what the adapters target), reading the
hidden states of a ``CLIPTextModel`` over the world's word-level tokenizer. Each scene has two captions,
its DreamBooth-template one ("a toy in the snow") and the alt-text one that describes the instance ("a
striped orange toy with teal parts in the snow"); a step draws either, so the model knows both what a
class looks like on average and which words bind which colours and patterns. The schedule is the cosine
one with v-prediction (its last step is pure noise, so bright snow and dark jungle keep their overall
colour) and Min-SNR-5 weighting; 10 % of captions are dropped for classifier-free guidance. The weights
kept are an exponential moving average.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .vocabulary import caption_words

UNET_CHANNELS = (32, 64, 128)
TEXT_WIDTH = 64
MAX_TOKENS = 24
TEXT_LAYERS = 4
CAPTION_DROPOUT = 0.1
DETAILED_SHARE = 0.5  # of the steps' captions: the alt-text description rather than the template


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
        timestep_spacing="trailing",
        steps_offset=1,
    )


def build_unet(sample_size: int = 16, latent_channels: int = 8):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        layers_per_block=1,
        block_out_channels=UNET_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def build_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_WIDTH,
            intermediate_size=4 * TEXT_WIDTH,
            num_hidden_layers=TEXT_LAYERS,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=TEXT_WIDTH,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )


class _Denoiser(torch.nn.Module):
    """UNet conditioned on the text encoder's hidden states, as one module for data parallelism."""

    def __init__(self, unet, text_encoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy, timesteps, self.text_encoder(input_ids)[0]).sample


class _Ema:
    """Exponential moving average of parameters with the usual warm-up of its decay."""

    def __init__(self, modules: list[torch.nn.Module], decay: float):
        self.shadow = [copy.deepcopy(m).requires_grad_(False) for m in modules]
        self.modules, self.decay, self.updates = modules, decay, 0

    def state_dict(self) -> dict:
        return {"shadow": [m.state_dict() for m in self.shadow], "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for module, weights in zip(self.shadow, state["shadow"]):
            module.load_state_dict(weights)
        self.updates = state["updates"]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, live in zip(self.shadow, self.modules):
            for s, p in zip(shadow.parameters(), live.parameters()):
                s.lerp_(p, 1 - decay)


def train_denoiser(
    latent_mean: np.ndarray,
    latent_std: np.ndarray,
    scaling: float,
    captions: list[list[str]],
    tokenizer,
    steps: int,
    seed: int,
    log: Callable[[str], None],
    batch_size: int = 32,
    lr: float = 1e-3,
    ema_decay: float = 0.999,
    snr_gamma: float = 5.0,
    checkpoints=None,
):
    """Train UNet + text encoder on (latent, caption) pairs for ``steps``.

    ``latent_mean``/``latent_std`` (N, C, h, w) are VAE posteriors; a latent sample is drawn per step.
    ``captions[k]`` is scene k's (template, detailed) pair; each step takes the detailed one with
    probability ``DETAILED_SHARE``.
    In a process group each rank trains on its share of ``batch_size`` and gradients are averaged.
    Returns (unet, text_encoder) holding the EMA weights, and the loss history. With ``checkpoints``
    (a ``resume.LoopCheckpoints``) the loop saves its state periodically and resumes from the newest.
    """
    from diffusers.training_utils import compute_snr

    from .parallel import data_parallel, rank_info

    rank, world = rank_info()
    batch_size //= world
    torch.manual_seed(seed)  # the same initial weights on every rank
    scheduler = build_scheduler()
    unet = build_unet(latent_mean.shape[-1], latent_mean.shape[1])
    text_encoder = build_text_encoder(len(tokenizer.get_vocab()))
    unet.train()
    text_encoder.train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    model = data_parallel(_Denoiser(unet, text_encoder))
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    ema = _Ema([unet, text_encoder], ema_decay)
    flat = [c for pair in captions for c in pair]
    token_ids = tokenizer(
        flat + [""], padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids
    empty, token_ids = token_ids[-1], token_ids[:-1].view(len(captions), 2, MAX_TOKENS)
    mean_t, std_t = torch.from_numpy(latent_mean), torch.from_numpy(latent_std)
    generator = torch.Generator().manual_seed(seed * 1000 + rank)
    history, start, smooth, first = [], time.perf_counter(), None, 1
    state = checkpoints.restore() if checkpoints else None
    if state is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        history, smooth, first = state["history"], state["smooth"], state["step"] + 1
        log(f"unet: resumed at step {state['step']} from {checkpoints.folder}")
    warmup = min(200, steps // 10 + 1)
    for step in range(first, steps + 1):
        scale = min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        idx = torch.randint(0, len(latent_mean), (batch_size,), generator=generator)
        latents = mean_t[idx].float() + std_t[idx].float() * torch.randn(mean_t[idx].shape, generator=generator)
        latents = latents * scaling
        detailed = (torch.rand(batch_size, generator=generator) < DETAILED_SHARE).long()
        ids = token_ids[idx, detailed].clone()
        drop = torch.rand(batch_size, generator=generator) < CAPTION_DROPOUT
        ids[drop] = empty
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = scheduler.get_velocity(latents, noise, timesteps)
        prediction = model(noisy, timesteps, ids)
        snr = compute_snr(scheduler, timesteps)
        weights = torch.clamp(snr, max=snr_gamma) / (snr + 1)
        loss = (F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update()
        smooth = loss.item() if smooth is None else 0.99 * smooth + 0.01 * loss.item()
        if rank == 0 and (step % 100 == 0 or step == steps):
            elapsed = time.perf_counter() - start
            history.append({"step": step, "seconds": round(elapsed, 1), "loss": round(smooth, 5)})
            log(
                f"unet step {step}/{steps}: loss {smooth:.4f} (rank 0's share) lr {lr * scale:.2e} ({elapsed:.0f} s, "
                f"{(step - first + 1) * batch_size * world / elapsed:.1f} samples/s)"
            )
        if checkpoints:
            checkpoints.save(
                step,
                lambda smooth=smooth: {  # called at once, inside save
                    "unet": unet.state_dict(),
                    "text_encoder": text_encoder.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "ema": ema.state_dict(),
                    "generator": generator.get_state(),
                    "history": history,
                    "smooth": smooth,
                },
            )
    unet_ema, text_ema = ema.shadow
    return unet_ema.eval(), text_ema.eval(), history


@torch.no_grad()
def calibrate_identifiers(text_encoder, tokenizer, identifiers, seed: int) -> None:
    """Give the identifier tokens ("sks", ...) embeddings like a real rare token's: random directions at the
    mean norm of the trained words' rows.

    Real CLIP learned "sks" from web text, so it has an embedding of ordinary size that means nothing to the
    UNet. Here the identifiers never occur in a caption, so their rows only decayed (norm 0.14 against 0.28-0.37
    for trained words in the first toy model): "a photo of sks toy" then differed from "a photo of a toy" by 11 %
    of its hidden state and the adapter learned "toy" rather than "sks toy".
    """
    table = text_encoder.get_input_embeddings().weight
    ids = [tokenizer.convert_tokens_to_ids(f"{word}</w>") for word in identifiers]
    trained = [tokenizer.convert_tokens_to_ids(f"{word}</w>") for word in caption_words()]
    norm = table[trained].norm(dim=1).mean()
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(len(ids), table.shape[1], generator=generator)
    table[ids] = (rows / rows.norm(dim=1, keepdim=True) * norm).to(table.dtype)


def assemble_pipeline(unet, vae, text_encoder, tokenizer, scaling: float):
    """A ``StableDiffusionPipeline`` of the trained parts (no safety checker: the world has nothing to flag)."""
    from diffusers import StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scaling)
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
