"""The frozen parts of a Stable Diffusion checkpoint the trainers use, loaded the way users name them.

``load_components`` reads tokenizer(s), text encoder(s), VAE, UNet and the training noise scheduler from a
pipeline folder or hub id (SD 1.x/2.x, or SDXL with its second text encoder); ``encode_text`` turns prompts
into the UNet's text conditioning; ``sampling_pipeline`` assembles the family's pipeline around the
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
    tokenizer_2: object = None  # SDXL's second tokenizer and text encoder (with the pooled projection)
    text_encoder_2: torch.nn.Module | None = None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def is_sdxl(self) -> bool:
        return self.text_encoder_2 is not None

    def text_encoders(self) -> list[torch.nn.Module]:
        return [m for m in (self.text_encoder, self.text_encoder_2) if m is not None]


def is_default_tiny(name_or_path: str) -> bool:
    return Path(name_or_path).resolve() == (DEFAULT_TINY_DIR / "sd").resolve()


def ensure_base_model(name_or_path: str) -> str:
    """Build the tiny offline model when ``name_or_path`` is its default folder and it is missing."""
    if is_default_tiny(name_or_path) and not (Path(name_or_path) / COMPLETE_MARKER).exists():
        print(f"building the tiny random-weight Stable Diffusion model in {name_or_path} (first use)", flush=True)
        ensure_tiny("sd", DEFAULT_TINY_DIR)
    return name_or_path


def load_components(
    name_or_path: str,
    revision: str | None = None,
    variant: str | None = None,
    zero_terminal_snr: bool = False,
    vae_path: str | None = None,
    single_file_config: str | None = None,
) -> Components:
    """Load the pipeline's components; ``OSError`` naming the checkpoint if one is missing. ``zero_terminal_snr``
    rescales the training schedule's betas so the last step has SNR 0 (Lin et al., 2024; v-prediction only:
    an ε target says nothing at SNR 0). ``vae_path``: a VAE folder or hub id replacing the checkpoint's
    (``--pretrained_vae_model_name_or_path``, e.g. an SDXL VAE fixed for fp16). A single-file checkpoint is
    converted once (``models.single_file``, with ``single_file_config``) and loaded from its folder."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from ..models.families import SDXL, looks_local, pipeline_class
    from ..models.single_file import resolve_base_model

    def load(what, fn):
        try:
            return fn()
        except (OSError, ValueError) as exc:
            raise OSError(
                f"could not load the {what} of {name_or_path!r} (expected a diffusers Stable Diffusion "
                f"pipeline folder or hub id): {exc}"
            ) from exc

    if looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise OSError(f"base model folder {name_or_path} does not exist")
    given, name_or_path = name_or_path, resolve_base_model(name_or_path, single_file_config)
    kw = dict(revision=revision)
    second = {}
    if pipeline_class(name_or_path, revision) == SDXL:
        second = dict(
            tokenizer_2=load(
                "second tokenizer", lambda: CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer_2", **kw)
            ),
            text_encoder_2=load(
                "second text encoder",
                lambda: CLIPTextModelWithProjection.from_pretrained(
                    name_or_path, subfolder="text_encoder_2", variant=variant, **kw
                ),
            ),
        )
    if vae_path:
        try:
            vae = AutoencoderKL.from_pretrained(vae_path)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"could not load --pretrained_vae_model_name_or_path {vae_path!r} (expected a diffusers "
                f"AutoencoderKL folder or hub id): {exc}"
            ) from exc
    else:
        vae = load("VAE", lambda: AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", variant=variant, **kw))
    return Components(
        base_model=given,
        tokenizer=load("tokenizer", lambda: CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", **kw)),
        text_encoder=load(
            "text encoder",
            lambda: CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder", variant=variant, **kw),
        ),
        vae=vae,
        unet=load_unet(name_or_path, revision=revision, variant=variant),
        noise_scheduler=load(
            "scheduler",
            lambda: DDPMScheduler.from_pretrained(
                name_or_path,
                subfolder="scheduler",
                **kw,
                **({"rescale_betas_zero_snr": True} if zero_terminal_snr else {}),
            ),
        ),
        **second,
    )


def sampling_pipeline(components: Components, unet: torch.nn.Module | None = None):
    """A ``StableDiffusionPipeline`` (``StableDiffusionXLPipeline`` for SDXL) over the in-memory modules (no
    reload, no copy, no recast) with the inference default solver, so its images match ``generate.py``'s for
    the same seeds."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from ..inference.schedulers import DEFAULT_SCHEDULER, set_scheduler

    shared = dict(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=unet if unet is not None else components.unet,
        scheduler=components.noise_scheduler,
    )
    if components.is_sdxl:
        pipeline = StableDiffusionXLPipeline(
            **shared, text_encoder_2=components.text_encoder_2, tokenizer_2=components.tokenizer_2
        )
    else:
        pipeline = StableDiffusionPipeline(
            **shared, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    set_scheduler(pipeline, DEFAULT_SCHEDULER)  # a new scheduler object: the training one is untouched
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def encode_text(
    components: Components, prompts: list[str], device, dtype, text_encoders: list[torch.nn.Module] | None = None
) -> dict[str, torch.Tensor]:
    """The UNet's text conditioning of ``prompts``, in ``dtype``, with gradients when an encoder has any
    (``--train_text_encoder``): ``{"encoder_hidden_states": (B, 77, D)}``; for SDXL the penultimate hidden
    states of both encoders side by side (D = D1 + D2) and ``"text_embeds"``: (B, P), the second encoder's
    pooled projection, as SDXL was trained. ``text_encoders`` replaces the components' own (e.g. wrapped ones)."""
    encoders = text_encoders or components.text_encoders()
    tokenizers = [components.tokenizer, components.tokenizer_2][: len(encoders)]
    states, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, encoders):
        ids = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        if not components.is_sdxl:
            return {"encoder_hidden_states": encoder(ids)[0].to(dtype)}
        output = encoder(ids, output_hidden_states=True)
        states.append(output.hidden_states[-2])
        pooled = output[0]
    return {"encoder_hidden_states": torch.cat(states, dim=-1).to(dtype), "text_embeds": pooled.to(dtype)}


@torch.no_grad()
def encode_prompts(components: Components, prompts: list[str], device, dtype) -> dict[str, dict[str, torch.Tensor]]:
    """``encode_text`` per distinct prompt: ``{prompt: {"encoder_hidden_states": (77, D), ...}}``."""
    unique = list(dict.fromkeys(prompts))
    text = encode_text(components, unique, device, dtype)
    return {prompt: {key: value[i] for key, value in text.items()} for i, prompt in enumerate(unique)}


def stack_text(embeds: dict[str, dict[str, torch.Tensor]], prompts: list[str]) -> dict[str, torch.Tensor]:
    """The batch of ``prompts`` from per-prompt encodings (``encode_prompts``): each entry (B, ...)."""
    return {key: torch.stack([embeds[p][key] for p in prompts]) for key in embeds[prompts[0]]}


def unet_conditioning(text: dict[str, torch.Tensor], time_ids: torch.Tensor | None = None) -> dict:
    """The UNet's keyword arguments from ``encode_text``'s output: SDXL also takes the pooled embedding and
    ``time_ids`` (B, 6): original height and width, crop top and left, target height and width, in pixels."""
    conditioning = {"encoder_hidden_states": text["encoder_hidden_states"]}
    if "text_embeds" in text:
        conditioning["added_cond_kwargs"] = {"text_embeds": text["text_embeds"], "time_ids": time_ids}
    return conditioning
