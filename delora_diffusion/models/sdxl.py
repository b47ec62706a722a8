"""The SDXL 1.0 base UNet architecture (its published config), for parameter counts: built on the meta
device, no checkpoint downloaded."""

from __future__ import annotations

from .sd15 import SD15_UNET_CONFIG, build_unet

# What SDXL's UNet changes from SD 1.5's: three levels (no attention at the top one), 1/2/10 transformer
# layers, per-level head widths, linear projections, two text encoders' width, the text_time conditioning.
SDXL_UNET_CONFIG = {
    **SD15_UNET_CONFIG,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}


def sdxl_unet():
    """An SDXL-shaped ``UNet2DConditionModel`` with its weights on the meta device."""
    return build_unet(SDXL_UNET_CONFIG, empty=True)
