"""The protocols' preprocessing, pinned: exact resize / crop / normalisation, checked against the libraries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from delora_diffusion.evaluation.preprocessing import ImagePreprocess
from delora_diffusion.evaluation.protocols import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PROTOCOLS,
)

# odd shapes: portrait, landscape, a 339x224 image whose crop offset differs between floor and round (115 / 2)
SIZES = [(301, 457), (300, 199), (339, 224), (64, 64)]


def _image(size, seed=0):
    width, height = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_protocols_pin_the_published_choices():
    oft, db = PROTOCOLS["oft"], PROTOCOLS["dreambooth"]
    assert (oft.dino_model, oft.clip_model) == ("facebook/dino-vits16", "openai/clip-vit-large-patch14")
    assert (db.dino_model, db.clip_model) == ("timm:vit_small_patch16_224.dino", "openai/clip-vit-base-patch32")
    assert oft.dino_preprocess == ImagePreprocess(
        resize=(224, 224),
        interpolation="bilinear",
        crop=None,
        crop_offset="floor",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    assert oft.clip_preprocess == ImagePreprocess(
        resize=224,
        interpolation="bicubic",
        crop=224,
        crop_offset="floor",
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
    )
    assert db.dino_preprocess == ImagePreprocess(
        resize=256,
        interpolation="bicubic",
        crop=224,
        crop_offset="round",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    assert db.clip_preprocess == ImagePreprocess(
        resize=224,
        interpolation="bicubic",
        crop=224,
        crop_offset="round",
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
    )


@pytest.mark.parametrize("size", SIZES)
def test_oft_dino_is_a_straight_bilinear_resize_with_half_mean_std(size):
    image = _image(size)
    expected = np.asarray(image.resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255
    expected = torch.from_numpy((expected - 0.5) / 0.5).permute(2, 0, 1)
    out = PROTOCOLS["oft"].dino_preprocess(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_oft_clip_is_shorter_side_bicubic_then_floor_centre_crop(size):
    image = _image(size)
    width, height = size
    new = (224, int(224 * height / width)) if width <= height else (int(224 * width / height), 224)
    resized = np.asarray(image.resize(new, Image.BICUBIC), dtype=np.float32) / 255
    top, left = (new[1] - 224) // 2, (new[0] - 224) // 2  # transformers' centre crop floors the offset
    crop = resized[top : top + 224, left : left + 224]
    expected = (crop - np.array(OPENAI_CLIP_MEAN, np.float32)) / np.array(OPENAI_CLIP_STD, np.float32)
    torch.testing.assert_close(
        PROTOCOLS["oft"].clip_preprocess(image), torch.from_numpy(expected).permute(2, 0, 1), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("size", SIZES)
def test_oft_equals_transformers_pil_processors(size):
    """transformers 5 keeps the PIL processors OFT's script ran (transformers 4's default) as *Pil classes."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "CLIPImageProcessorPil"):
        pytest.skip("this transformers has no PIL-backend image processors")
    image = _image(size)
    vit = transformers.ViTImageProcessorPil(
        size={"height": 224, "width": 224}, resample=Image.BILINEAR, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    clip = transformers.CLIPImageProcessorPil()  # its defaults are openai/clip-vit-large-patch14's processor
    torch.testing.assert_close(
        PROTOCOLS["oft"].dino_preprocess(image),
        vit(images=image, return_tensors="pt")["pixel_values"][0],
        atol=1e-6,
        rtol=0,
    )
    torch.testing.assert_close(
        PROTOCOLS["oft"].clip_preprocess(image),
        clip(images=image, return_tensors="pt")["pixel_values"][0],
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("size", SIZES)
def test_dreambooth_equals_torchvision_transforms(size):
    image = _image(size)
    bicubic = T.InterpolationMode.BICUBIC
    dino = T.Compose(
        [
            T.Resize(256, interpolation=bicubic),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    clip = T.Compose(
        [
            T.Resize(224, interpolation=bicubic),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
        ]
    )
    torch.testing.assert_close(PROTOCOLS["dreambooth"].dino_preprocess(image), dino(image), atol=1e-6, rtol=0)
    torch.testing.assert_close(PROTOCOLS["dreambooth"].clip_preprocess(image), clip(image), atol=1e-6, rtol=0)


def test_crop_offset_rules_differ_on_odd_margins():
    oft, db = PROTOCOLS["oft"].clip_preprocess, PROTOCOLS["dreambooth"].clip_preprocess
    assert oft.crop_box(339, 224) == (57, 0, 281, 224)  # (339 - 224) // 2
    assert db.crop_box(339, 224) == (58, 0, 282, 224)  # round(57.5) = 58
    image = _image((339, 224))
    assert not torch.equal(oft(image), db(image))


def test_non_rgb_inputs_are_converted_and_bad_specs_rejected():
    gray = _image((80, 80)).convert("L")
    assert PROTOCOLS["oft"].dino_preprocess(gray).shape == (3, 224, 224)
    with pytest.raises(ValueError, match="interpolation"):
        ImagePreprocess(resize=224, interpolation="nearest", crop=224, crop_offset="floor", mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match="crop"):
        ImagePreprocess(
            resize=224, interpolation="bicubic", crop=None, crop_offset="floor", mean=(0,) * 3, std=(1,) * 3
        )
