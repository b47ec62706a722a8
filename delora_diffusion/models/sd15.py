"""The Stable Diffusion 1.5 UNet architecture (its published config), for parameter counts and benchmarks.

Built with random weights or on the meta device: no checkpoint is downloaded.
"""

from __future__ import annotations

SD15_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}


def build_unet(config: dict, empty: bool = False):
    """A ``UNet2DConditionModel`` of ``config`` with random weights; ``empty=True`` puts them on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    if empty:
        with init_empty_weights():
            return UNet2DConditionModel(**config)
    return UNet2DConditionModel(**config)


def sd15_unet(empty: bool = False):
    """An SD 1.5-shaped ``UNet2DConditionModel``; ``empty=True`` puts its weights on the meta device."""
    return build_unet(SD15_UNET_CONFIG, empty)


SD15_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}

SD15_TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}


def sd15_vae():
    """An SD 1.5-shaped ``AutoencoderKL`` with random weights."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**SD15_VAE_CONFIG)


def sd15_text_encoder():
    """An SD 1.5-shaped CLIP text encoder (ViT-L/14 text tower) with random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**SD15_TEXT_CONFIG))
