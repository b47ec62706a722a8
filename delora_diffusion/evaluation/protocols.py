"""The two published DreamBooth evaluation protocols: default backbones and the exact preprocessing of each.

``oft`` is what OFT's ``oft-db/eval.py`` ran (and what the OFT, ETHER and DeLoRA tables report):
transformers ``facebook/dino-vits16`` with its ``ViTFeatureExtractor`` and ``openai/clip-vit-large-patch14``
with its ``CLIPProcessor``, both transformers 4 processors resizing with PIL.
``dreambooth`` follows the DreamBooth paper (Ruiz et al., 2023, §4.1): the original DINO ViT-S/16 release
with DINO's evaluation transform, and CLIP ViT-B/32 with CLIP's own transform (both torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass

from .preprocessing import ImagePreprocess

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EvalProtocol:
    """Default backbones (hub id, ``timm:NAME`` or ``open_clip:ARCH/PRETRAINED``) and preprocessing per role."""

    name: str
    dino_model: str
    clip_model: str
    dino_preprocess: ImagePreprocess
    clip_preprocess: ImagePreprocess
    summary: str


PROTOCOLS: dict[str, EvalProtocol] = {
    "oft": EvalProtocol(
        name="oft",
        dino_model="facebook/dino-vits16",
        clip_model="openai/clip-vit-large-patch14",
        # ViTFeatureExtractor of facebook/dino-vits16: straight 224×224 bilinear resize (aspect not kept), mean = std = 0.5
        dino_preprocess=ImagePreprocess(
            resize=(224, 224),
            interpolation="bilinear",
            crop=None,
            crop_offset="floor",
            mean=HALF,
            std=HALF,
        ),
        # CLIPProcessor of openai/clip-vit-large-patch14: shorter side 224 bicubic, centre crop 224, CLIP mean/std
        clip_preprocess=ImagePreprocess(
            resize=224,
            interpolation="bicubic",
            crop=224,
            crop_offset="floor",
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
        ),
        summary="OFT's eval.py (used by the OFT, ETHER and DeLoRA papers)",
    ),
    "dreambooth": EvalProtocol(
        name="dreambooth",
        dino_model="timm:vit_small_patch16_224.dino",
        clip_model="openai/clip-vit-base-patch32",
        # DINO's evaluation transform: shorter side 256 bicubic, centre crop 224, ImageNet mean/std
        dino_preprocess=ImagePreprocess(
            resize=256,
            interpolation="bicubic",
            crop=224,
            crop_offset="round",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        ),
        # CLIP's own transform: shorter side 224 bicubic, centre crop 224, CLIP mean/std
        clip_preprocess=ImagePreprocess(
            resize=224,
            interpolation="bicubic",
            crop=224,
            crop_offset="round",
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
        ),
        summary="DreamBooth paper, Sec. 4.1 (original DINO ViT-S/16 release, CLIP ViT-B/32)",
    ),
}
DEFAULT_PROTOCOL = "oft"


def get_protocol(name: str) -> EvalProtocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


# The semantic-map protocol (the S2I tables of OFT, ETHER and DeLoRA): UperNet-ConvNeXt segments the images
# against the maps, and FID uses the Inception features of torch-fidelity.
DEFAULT_SEG_MODEL = "openmmlab/upernet-convnext-small"
INCEPTION = "inception"

# What each evaluation measures and the format id its results file carries (reports read them without models).
DREAMBOOTH_METRICS = ("dino", "clip_i", "clip_t")
DREAMBOOTH_RESULTS_FORMAT = "delora-eval/dreambooth/1"
SEMANTIC_RESULTS_FORMAT = "delora-eval/semantic/1"
