"""Tiny random-weight evaluation backbones (DINO ViT, CLIP), saved the way the real ones are distributed.

Evaluation loads them through the same code as ``facebook/dino-vits16``, ``openai/clip-vit-large-patch14``,
``timm:vit_small_patch16_224.dino`` or ``open_clip:ViT-B-32/openai``, so every metric code path runs offline:

- ``dino``: transformers ``ViTModel`` + the ``ViTImageProcessor`` settings of ``facebook/dino-vits16``;
- ``clip``: transformers ``CLIPModel`` + ``CLIPProcessor`` (character-level CLIP tokenizer, as the tiny SD's);
- ``dino_timm``: a timm ViT saved with ``timm.models.save_for_hf`` (load with ``timm:local-dir:PATH``);
- ``clip_openclip``: an open_clip ``CLIP`` with ``open_clip_config.json`` (load with ``open_clip:local-dir:PATH``).

Every image tower takes 224×224 inputs, the size both evaluation protocols feed, so the preprocessing under
test is the real one; widths are 32 so a forward pass costs almost nothing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .tiny_vocab import write_clip_vocab

BACKBONE_SEED = 0
IMAGE_SIZE = 224
WIDTH = 32
EMBED_DIM = 16  # CLIP joint image-text space


def build_tiny_dino(out: Path) -> None:
    """A 2-layer ViT with 16×16 patches; its CLS token is the DINO embedding."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel
    from transformers.image_utils import PILImageResampling

    torch.manual_seed(BACKBONE_SEED)
    config = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=16,
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * WIDTH,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(out)
    ViTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=PILImageResampling.BILINEAR,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(out)


def build_tiny_clip(out: Path) -> None:
    """A CLIP with a 2-layer ViT-B/32-shaped image tower and a 2-layer text tower, plus its processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    with tempfile.TemporaryDirectory() as vocab_dir:
        vocab_file, merges_file = write_clip_vocab(Path(vocab_dir))
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    torch.manual_seed(BACKBONE_SEED)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer.get_vocab()),
            hidden_size=WIDTH,
            intermediate_size=2 * WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=IMAGE_SIZE,
            patch_size=32,
            hidden_size=WIDTH,
            intermediate_size=2 * WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
        ),
        projection_dim=EMBED_DIM,
    )
    CLIPModel(config).save_pretrained(out)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(out)


def build_tiny_dino_timm(out: Path) -> None:
    """A 2-layer timm ``vit_small_patch16_224`` (the DINO ViT-S/16 architecture), token pooling, no head."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(BACKBONE_SEED)
    shape = dict(embed_dim=WIDTH, depth=2, num_heads=4)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **shape)
    save_for_hf(model, str(out), model_args=shape, safe_serialization=True)


OPEN_CLIP_TINY_CONFIG = {
    "embed_dim": EMBED_DIM,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": WIDTH, "patch_size": 32, "head_width": 16},
    # open_clip's default tokenizer is its bundled 49408-token BPE, so the text tower keeps that vocabulary
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": WIDTH, "heads": 2, "layers": 2},
}


def build_tiny_clip_openclip(out: Path) -> None:
    """An open_clip ``CLIP`` saved as a ``local-dir:`` model (``open_clip_config.json`` + safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(BACKBONE_SEED)
    model = open_clip.CLIP(**OPEN_CLIP_TINY_CONFIG)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    config = {
        "model_cfg": OPEN_CLIP_TINY_CONFIG,
        "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)},
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
