"""The benchmark cases; each runs in its own process (see run.py) and returns median ms + max RSS."""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

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
INFER_CASES = [
    "base",
    "delora-merged",
    "etherplus-merged",
    "lora-unmerged",
    "dora-unmerged",
    "delora-unmerged",
    "ether-unmerged",
    "etherplus-unmerged",
]
CACHE_CASES = [
    "tiny-cached",
    "tiny-fresh_latents",
    "tiny-uncached",
    "tinyxl-cached",
    "tinyxl-fresh_latents",
    "tinyxl-uncached",
    "sd15-cached",
    "sd15-fresh_latents",
    "sd15-uncached",
]


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

        config = (
            LoraConfig(r=16, lora_alpha=32, target_modules=["layer"])
            if case == "peft-lora"
            else DeloraConfig(r=16, delora_lambda=15, target_modules=["layer"])
        )
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


def _cache_components(size: str):
    """Frozen components as the trainer holds them: the tiny SD or SDXL pipeline (``tinyxl``) loaded from disk
    through the trainer's loader, or SD 1.5-shaped modules with random weights (built in memory: 4 GB are not
    worth writing)."""
    from delora_diffusion.models.tiny import ensure_tiny
    from delora_diffusion.training.components import Components, load_components

    tiny = str(ensure_tiny("sd"))
    if size in ("tiny", "tinyxl"):
        return load_components(tiny if size == "tiny" else str(ensure_tiny("sdxl"))), 64
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    from delora_diffusion.models.sd15 import sd15_text_encoder, sd15_unet, sd15_vae

    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )  # SD 1.5's training schedule
    # The tiny tokenizer's ids fit the SD 1.5 vocabulary; only the encoder's cost matters here.
    tokenizer = CLIPTokenizer.from_pretrained(tiny, subfolder="tokenizer")
    return Components(
        base_model="sd15-random",
        tokenizer=tokenizer,
        text_encoder=sd15_text_encoder(),
        vae=sd15_vae(),
        unet=sd15_unet(),
        noise_scheduler=scheduler,
    ), 256


def cache_case(case: str, quick: bool) -> dict:
    """One DreamBooth training step through the trainer's own functions (dataset, ``DreamBoothTask``,
    ``diffusion_loss``, ``build_optimizer``), DeLoRA rank 16, batch 1:

    cached        the trainer's default: VAE posteriors and prompt embeddings computed once
    fresh_latents ``--no_cache_latents`` (what random flips/crops force): a VAE encode every step
    uncached      also the text encoder every step (a trainer that caches nothing)
    """
    from accelerate import Accelerator

    from delora_diffusion.adapters import attach
    from delora_diffusion.training.components import encode_prompts
    from delora_diffusion.training.dreambooth import build_args
    from delora_diffusion.training.dreambooth_task import DreamBoothTask
    from delora_diffusion.training.loop import adapter_config_from_args
    from delora_diffusion.training.loss import diffusion_loss
    from delora_diffusion.training.optimization import build_optimizer
    from delora_diffusion.training.task import RunContext

    size, mode = case.split("-", 1)
    torch.manual_seed(0)
    components, resolution = _cache_components(size)
    for module in (components.vae, *components.text_encoders(), components.unet):
        module.requires_grad_(False)
    root = Path(__file__).resolve().parents[1]
    args, _ = build_args(
        [
            "--pretrained_model_name_or_path",
            components.base_model,
            "--instance_data_dir",
            str(root / "subjects" / "robot"),
            "--instance_prompt",
            "a photo of sks toy",
            "--resolution",
            str(resolution),
            "--center_crop",
            "--adapter",
            "delora",
            "--rank",
            "16",
            "--cache_latents" if mode == "cached" else "--no_cache_latents",
        ]
    )
    accelerator = Accelerator(cpu=True)
    context = RunContext(
        args=args,
        accelerator=accelerator,
        components=components,
        weight_dtype=torch.float32,
        output_dir=root / "outputs" / "bench",
    )
    task = DreamBoothTask(args)
    dataset = task.build_dataset(context)
    attach(components.unet, adapter_config_from_args(args))
    components.unet.train()
    optimizer = build_optimizer(args, components.unet, {}, 1)
    counter = iter(range(10**6))

    def step():
        index = next(counter)
        generator = torch.Generator().manual_seed(index)
        batch = task.collate([dataset[index % len(dataset)]])
        if mode == "uncached":
            task.prompt_embeds = encode_prompts(components, batch["prompts"], context.device, torch.float32)
        latents, conditioning = task.model_inputs(batch, context, generator)
        per_example = diffusion_loss(components.unet, components.noise_scheduler, latents, conditioning, generator)
        loss, _ = task.reduce_loss(per_example, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reps = (5 if quick else 20) if size.startswith("tiny") else (2 if quick else 5)
    # the SDXL-shaped tiny model against the SD one, same mode (issue 11's step-time question)
    return {"ms": _median_ms(step, 1, reps), "compare": [f"tiny-{mode}"] if size == "tinyxl" else []}


def run(suite: str, case: str, quick: bool) -> dict:
    fn = {"layers": layer_case, "step": step_case, "infer": infer_case, "cache": cache_case}[suite]
    result = fn(case, quick)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
