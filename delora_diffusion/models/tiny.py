"""Tiny random-weight models, built offline and saved like real checkpoints.

Tests and the demo load them through the same ``from_pretrained(path)`` code that loads
``stable-diffusion-v1-5/stable-diffusion-v1-5`` on a user's machine, so the offline path is the real path.
Each component is built into ``<out>/<component>`` (``sd`` for the Stable Diffusion pipeline);
``tiny_backbones.py`` and ``tiny_semantic.py`` build the evaluation models listed in ``TINY_BUILDERS``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from .tiny_vocab import write_clip_vocab

DEFAULT_TINY_DIR = Path("outputs") / "tiny"
COMPLETE_MARKER = ".complete"
TINY_SEED = 0

# Tiny SD geometry: 2 UNet blocks (32, 64 channels) with cross-attention, 2-block VAE (×2 downsampling),
# 2-layer CLIP text encoder of width 32; a 64×64 image is a 4×32×32 latent.
TINY_SD_RESOLUTION = 64
TEXT_WIDTH = 32


def build_tiny_sd(out: Path) -> None:
    """A StableDiffusionPipeline (UNet with cross-attention, VAE, CLIP text encoder + tokenizer, scheduler)."""
    _build_tiny_pipeline(out, sd2=False)


def build_tiny_sd2(out: Path) -> None:
    """The same in SD 2.x's shape: v-prediction, linear projections around the transformer blocks, a head
    width per block and a GELU text encoder (SD 2.x's OpenCLIP-H; here still a CLIPTextModel, as in diffusers)."""
    _build_tiny_pipeline(out, sd2=True)


def build_tiny_sdxl(out: Path) -> None:
    """A StableDiffusionXLPipeline in SDXL's shape: two CLIP text encoders (the second with a projection
    giving the pooled embedding), a UNet with ``text_time`` added conditioning (pooled embedding + six size
    and crop numbers), linear projections, an Euler scheduler."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(TINY_SEED)
    time_width = 8  # per size/crop number; SDXL uses 256
    # The second encoder is wider than the first, as in SDXL (768 and 1280): single-file loading tells
    # the two apart by their widths.
    width_2 = TEXT_WIDTH + 16
    unet = UNet2DConditionModel(
        sample_size=TINY_SD_RESOLUTION // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH + width_2,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=8,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_width,
        projection_class_embeddings_input_dim=width_2 + 6 * time_width,
    )
    with tempfile.TemporaryDirectory() as vocab_dir:
        vocab_file, merges_file = write_clip_vocab(Path(vocab_dir))
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
        tokenizer_2 = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    text_encoder = CLIPTextModel(_text_config(len(tokenizer.get_vocab()), "quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer.get_vocab()), "gelu", width_2))
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    # force_upcast: SDXL's VAE overflows in fp16, and its config says so (the trainer keeps it fp32)
    StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    ).save_pretrained(out)


def _text_config(vocab_size: int, activation: str, width: int = TEXT_WIDTH):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=width,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act=activation,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_SD_RESOLUTION,
    )


def _build_tiny_pipeline(out: Path, sd2: bool) -> None:
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(TINY_SEED)
    unet = UNet2DConditionModel(
        sample_size=TINY_SD_RESOLUTION // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2,
        norm_num_groups=8,
    )
    vae = _tiny_vae()
    with tempfile.TemporaryDirectory() as vocab_dir:
        vocab_file, merges_file = write_clip_vocab(Path(vocab_dir))
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    text_encoder = CLIPTextModel(_text_config(len(tokenizer.get_vocab()), "gelu" if sd2 else "quick_gelu"))
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
        prediction_type="v_prediction" if sd2 else "epsilon",
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)


# component name -> builder writing a saved model into the folder it is given
# The SD pipeline, the evaluation backbones (DINO ViT and CLIP in transformers, timm and open_clip formats)
# and the semantic-map evaluation models (an ADE20K SegFormer, an exported FID feature extractor).
# Named as "module:function" and imported when built, so listing them (delora-make-tiny --help) loads no torch.
TINY_BUILDERS: dict[str, str] = {
    "sd": "tiny:build_tiny_sd",
    "sd2": "tiny:build_tiny_sd2",
    "sdxl": "tiny:build_tiny_sdxl",
    "dino": "tiny_backbones:build_tiny_dino",
    "clip": "tiny_backbones:build_tiny_clip",
    "dino_timm": "tiny_backbones:build_tiny_dino_timm",
    "clip_openclip": "tiny_backbones:build_tiny_clip_openclip",
    "segformer": "tiny_semantic:build_tiny_segformer",
    "fid_features": "tiny_semantic:build_tiny_fid_features",
}


def _builder(component: str):
    module, function = TINY_BUILDERS[component].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def ensure_tiny(component: str = "sd", root: str | os.PathLike[str] = DEFAULT_TINY_DIR, force: bool = False) -> Path:
    """Path of the tiny ``component`` under ``root``, building it first if absent (or ``force``).

    Built into a temporary folder and renamed when complete, so an interrupted build is never used.
    """
    if component not in TINY_BUILDERS:
        raise ValueError(f"unknown tiny component {component!r}; known: {', '.join(TINY_BUILDERS)}")
    root = Path(root)
    target = root / component
    if (target / COMPLETE_MARKER).exists() and not force:
        return target
    tmp = root / f".{component}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _builder(component)(tmp)
        (tmp / COMPLETE_MARKER).write_text("built by delora-make-tiny\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def make_tiny(
    root: str | os.PathLike[str] = DEFAULT_TINY_DIR, components: list[str] | None = None, force: bool = False
) -> dict[str, Path]:
    """Build every (or the listed) tiny component under ``root``; returns component -> folder."""
    return {name: ensure_tiny(name, root, force) for name in (components or list(TINY_BUILDERS))}
