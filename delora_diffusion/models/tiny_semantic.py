"""Tiny random-weight models for semantic-map evaluation, saved the way the real ones are distributed.

- ``segformer``: a 2-stage transformers ``SegformerForSemanticSegmentation`` with the 150 ADE20K labels
  (ids and names as ``nvidia/segformer-b0-finetuned-ade-512-512``) and its ``SegformerImageProcessor``,
  loaded by ``delora-eval semantic --seg_model PATH`` through ``AutoModelForSemanticSegmentation`` like
  the real checkpoints;
- ``fid_features``: a two-conv image feature extractor exported with ``torch.export`` (``extractor.pt2``:
  uint8 images (B, 3, H, W) of any size → (B, 16)), which ``--fid_extractor`` loads in place of Inception,
  so the FID code path runs offline.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TINY_SEED = 0
SEGFORMER_SIZE = 64
FID_FEATURES_FILE = "extractor.pt2"


def build_tiny_segformer(out: Path) -> None:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from ..data.ade20k import CLASS_NAMES

    torch.manual_seed(TINY_SEED)
    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[16, 32],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=32,
        num_labels=len(CLASS_NAMES),
        id2label=dict(enumerate(CLASS_NAMES)),
        label2id={name: i for i, name in enumerate(CLASS_NAMES)},
    )
    SegformerForSemanticSegmentation(config).save_pretrained(out)
    SegformerImageProcessor(
        size={"height": SEGFORMER_SIZE, "width": SEGFORMER_SIZE}, do_reduce_labels=True
    ).save_pretrained(out)


class TinyImageFeatures(nn.Module):
    """uint8 (B, 3, H, W) → (B, 16): resize to 64², two stride-2 convs, global average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float() / 255.0, size=(64, 64), mode="bilinear", align_corners=False)
        return self.conv2(F.silu(self.conv1(x))).mean(dim=(2, 3))


def build_tiny_fid_features(out: Path) -> None:
    torch.manual_seed(TINY_SEED)
    model = TinyImageFeatures().eval()
    example = torch.zeros(2, 3, 48, 40, dtype=torch.uint8)
    dims = {
        0: torch.export.Dim("batch", min=1),
        2: torch.export.Dim("height", min=8),
        3: torch.export.Dim("width", min=8),
    }
    program = torch.export.export(model, (example,), dynamic_shapes=(dims,))
    out.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out / FID_FEATURES_FILE))
