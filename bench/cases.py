"""The benchmark cases; each runs in its own process (see run.py) and returns median ms + max RSS."""

from __future__ import annotations

import resource
import statistics
import time

import torch
from torch import nn

from delora_diffusion.adapters import AdapterConfig, attach, merge, param_groups

# SD 1.5 attention projections at 256 px (latent 32×32): (width, tokens) per UNet level, batch 1.
SD15_PROJECTIONS = [(320, 32 * 32), (640, 16 * 16), (1280, 8 * 8)]
METHOD_CONFIGS = {
    "lora": AdapterConfig(method="lora", rank=16, lora_alpha=32),
    "dora": AdapterConfig(method="dora", rank=16, lora_alpha=32),
    "delora": AdapterConfig(method="delora", rank=16),
    "delora-zero_b": AdapterConfig(method="delora", rank=16, init="zero_b"),
    "ether": AdapterConfig(method="ether", ether_blocks=4),
    "etherplus": AdapterConfig(method="etherplus", ether_blocks=4),
}

LAYER_CASES = ["peft-lora", "peft-delora", "base", *METHOD_CONFIGS]
STEP_CASES = ["none", "lora", "dora", "delora", "delora-zero_b", "ether", "etherplus"]
INFER_CASES = ["base", "delora-merged", "etherplus-merged", "lora-unmerged", "dora-unmerged", "delora-unmerged",
               "ether-unmerged", "etherplus-unmerged"]
CACHE_CASES = ["tiny-cached", "tiny-uncached", "sd15-cached", "sd15-uncached"]


def _median_ms(fn, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _layer(case: str, width: int) -> nn.Module:
    base = nn.Linear(width, width)
    base.requires_grad_(False)
    if case == "base":
        return base
    if case in ("peft-lora", "peft-delora"):
        from peft import DeloraConfig, LoraConfig, inject_adapter_in_model

        config = (LoraConfig(r=16, lora_alpha=32, target_modules=["layer"]) if case == "peft-lora"
                  else DeloraConfig(r=16, delora_lambda=15, target_modules=["layer"]))
        holder = nn.Module()
        holder.layer = base
        inject_adapter_in_model(config, holder)
        return holder.layer
    holder = nn.Sequential(base)
    attach(holder, METHOD_CONFIGS[case], layer_names=["0"])
    return holder[0]


def layer_case(case: str, quick: bool) -> dict:
    layers = [(_layer(case, w), torch.randn(1, n, w, requires_grad=True)) for w, n in SD15_PROJECTIONS]

    def step():
        for layer, x in layers:
            layer(x).sum().backward()

    compare = ["peft-delora"] if case.startswith("delora") else []
    return {"ms": _median_ms(step, 3, 10 if quick else 40), "compare": compare}


def _unet_inputs(unet, batch: int = 1):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, 32, 32, generator=g)
    context = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    return latents, torch.tensor([500] * batch), context


def step_case(case: str, quick: bool) -> dict:
    from delora_diffusion.models.sd15 import sd15_unet

    torch.manual_seed(0)
    unet = sd15_unet()
    unet.requires_grad_(False)
    latents, t, context = _unet_inputs(unet)
    target = torch.randn_like(latents)
    if case == "none":
        latents.requires_grad_(True)  # backpropagate through the frozen network, as an adapter would need

        def step():
            nn.functional.mse_loss(unet(latents, t, context).sample, target).backward()
    else:
        attach(unet, METHOD_CONFIGS[case])
        opt = torch.optim.AdamW(param_groups(unet, lr=1e-4))

        def step():
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(unet(latents, t, context).sample, target).backward()
            opt.step()

    return {"ms": _median_ms(step, 1, 2 if quick else 5), "compare": ["none"] if case != "none" else []}


@torch.no_grad()
def infer_case(case: str, quick: bool) -> dict:
    from delora_diffusion.models.sd15 import sd15_unet

    torch.manual_seed(0)
    unet = sd15_unet()
    if case != "base":
        method, mode = case.rsplit("-", 1)
        attach(unet, METHOD_CONFIGS[method])
        if mode == "merged":
            merge(unet)
    latents, t, context = _unet_inputs(unet, batch=2)  # classifier-free guidance doubles the batch
    return {"ms": _median_ms(lambda: unet(latents, t, context), 1, 3 if quick else 10)}


def cache_case(case: str, quick: bool) -> dict:
    """One DeLoRA training step; 'uncached' also runs the frozen VAE encoder and text encoder."""
    size, mode = case.split("-")
    torch.manual_seed(0)
    if size == "tiny":
        from delora_diffusion.models.tiny import TINY_SD_RESOLUTION, ensure_tiny
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny("sd"))
        unet, vae, text_encoder, resolution = pipe.unet, pipe.vae, pipe.text_encoder, TINY_SD_RESOLUTION
    else:
        from delora_diffusion.models.sd15 import sd15_text_encoder, sd15_unet, sd15_vae

        unet, vae, text_encoder, resolution = sd15_unet(), sd15_vae(), sd15_text_encoder(), 256
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    attach(unet, METHOD_CONFIGS["delora"])
    opt = torch.optim.AdamW(param_groups(unet, lr=1e-4))
    pixels = torch.randn(1, 3, resolution, resolution)
    ids = torch.randint(0, text_encoder.config.vocab_size, (1, 77))
    with torch.no_grad():
        cached_latents = vae.encode(pixels).latent_dist.sample() * 0.18215
        cached_context = text_encoder(ids)[0]

    def step():
        if mode == "cached":
            latents, context = cached_latents, cached_context
        else:
            with torch.no_grad():
                latents = vae.encode(pixels).latent_dist.sample() * 0.18215
                context = text_encoder(ids)[0]
        noise = torch.randn_like(latents)
        opt.zero_grad(set_to_none=True)
        pred = unet(latents + noise, torch.tensor([500]), context).sample
        nn.functional.mse_loss(pred, noise).backward()
        opt.step()

    reps = (5 if quick else 20) if size == "tiny" else (2 if quick else 5)
    return {"ms": _median_ms(step, 1, reps), "compare": [f"{size}-cached"] if mode == "uncached" else []}


def run(suite: str, case: str, quick: bool) -> dict:
    fn = {"layers": layer_case, "step": step_case, "infer": infer_case, "cache": cache_case}[suite]
    result = fn(case, quick)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
