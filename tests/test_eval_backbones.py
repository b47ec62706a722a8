"""Backbone specs: transformers folders, timm:NAME and open_clip:... models (tiny, random, offline)."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import make_generated, make_real

from delora_diffusion.evaluation import DreamBoothEvalSettings, EvaluationInputError, evaluate_dreambooth, load_backbone
from delora_diffusion.evaluation.backbones import weights_fingerprint
from delora_diffusion.models.tiny import ensure_tiny


@pytest.fixture(scope="module")
def tiny_timm(tiny_root):
    return ensure_tiny("dino_timm", tiny_root)


@pytest.fixture(scope="module")
def tiny_openclip(tiny_root):
    return ensure_tiny("clip_openclip", tiny_root)


def test_timm_backbone_is_the_pooled_cls_embedding(tiny_timm):
    import timm

    backbone = load_backbone(f"timm:local-dir:{tiny_timm}", "dino")
    assert backbone.library == "timm" and backbone.image_size == 224 and not backbone.has_text
    reference = timm.create_model(f"local-dir:{tiny_timm}", pretrained=True, num_classes=0).eval()
    pixels = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        tokens = reference.forward_features(pixels)
        expected = reference.forward_head(tokens, pre_logits=True)
    torch.testing.assert_close(backbone.embed_images(pixels), expected)
    torch.testing.assert_close(expected, tokens[:, 0])  # token pooling: the final-normed CLS token, as DINO's


def test_open_clip_backbone_embeds_images_and_prompts(tiny_openclip):
    import open_clip

    backbone = load_backbone(f"open_clip:local-dir:{tiny_openclip}", "clip")
    assert backbone.library == "open_clip" and backbone.has_text and backbone.image_size == 224
    reference = open_clip.create_model(f"local-dir:{tiny_openclip}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_openclip}")
    pixels = torch.randn(2, 3, 224, 224)
    prompts = ["a dog in the jungle", "a red teapot"]
    with torch.no_grad():
        torch.testing.assert_close(backbone.embed_images(pixels), reference.encode_image(pixels))
        torch.testing.assert_close(backbone.embed_texts(prompts), reference.encode_text(tokenizer(prompts)))


def test_transformers_clip_and_dino_backbones(tiny_dino, tiny_clip):
    dino = load_backbone(str(tiny_dino), "dino")
    clip = load_backbone(str(tiny_clip), "clip")
    assert (dino.image_size, clip.image_size) == (224, 224)
    assert dino.embed_images(torch.zeros(2, 3, 224, 224)).shape == (2, 32)
    assert clip.embed_images(torch.zeros(2, 3, 224, 224)).shape == (2, 16)
    assert clip.embed_texts(["a dog", "a dog on the beach"]).shape == (2, 16)
    # a CLIP checkpoint may serve as the DINO-role image encoder too (its projected image embedding)
    assert load_backbone(str(tiny_clip), "dino").embed_images(torch.zeros(1, 3, 224, 224)).shape == (1, 16)


def test_evaluation_runs_with_timm_and_open_clip_backbones(tmp_path, tiny_timm, tiny_openclip):
    make_real(tmp_path / "real", {"dog": 2})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2, 1: 1})
    results = evaluate_dreambooth(
        DreamBoothEvalSettings(
            real_dir=tmp_path / "real",
            generated_dir=tmp_path / "gen",
            protocol="dreambooth",
            dino_model=f"timm:local-dir:{tiny_timm}",
            clip_model=f"open_clip:local-dir:{tiny_openclip}",
            progress=False,
        )
    )
    assert results["backbones"]["dino"]["library"] == "timm"
    assert results["backbones"]["clip"]["library"] == "open_clip"
    assert results["backbones"]["dino"]["preprocess"]["resize"] == 256
    for metric in ("dino", "clip_i", "clip_t"):
        assert -1.0 <= results["mean_over_subjects"][metric] <= 1.0


def test_spec_errors_name_the_flag_and_what_is_expected(tmp_path, tiny_dino, tiny_timm):
    with pytest.raises(EvaluationInputError, match=r"--clip_model: .*timm models have no text tower"):
        load_backbone(f"timm:local-dir:{tiny_timm}", "clip", flag="--clip_model")
    with pytest.raises(EvaluationInputError, match=r"'vit' model; CLIP-I and CLIP-T need a CLIP model"):
        load_backbone(str(tiny_dino), "clip")
    with pytest.raises(EvaluationInputError, match=r"expected open_clip:ARCH/PRETRAINED"):
        load_backbone("open_clip:ViT-B-32", "clip")
    missing = tmp_path / "no_such_model"
    with pytest.raises(EvaluationInputError, match=r"--dino_model .*no_such_model.*cannot load the backbone"):
        load_backbone(str(missing), "dino", flag="--dino_model")
    with pytest.raises(EvaluationInputError, match=r"cannot load the backbone"):
        load_backbone("timm:no_such_architecture_xyz", "dino")


def test_a_backbone_of_another_input_size_is_refused(tmp_path, tiny_clip):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            image_size=64,
            patch_size=16,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=32,
        ),
        add_pooling_layer=False,
    ).save_pretrained(tmp_path / "vit64")
    make_real(tmp_path / "real", {"dog": 1})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 1})
    with pytest.raises(
        EvaluationInputError, match=r"--dino_model .*vit64.* takes 64x64 images, but protocol 'oft' feeds 224x224"
    ):
        evaluate_dreambooth(
            DreamBoothEvalSettings(
                real_dir=tmp_path / "real",
                generated_dir=tmp_path / "gen",
                dino_model=str(tmp_path / "vit64"),
                clip_model=str(tiny_clip),
                progress=False,
            )
        )


def test_dinov2_backbones_take_any_input_size(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(
        Dinov2Config(
            image_size=518,
            patch_size=14,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=32,
        )
    ).save_pretrained(tmp_path / "dinov2")
    backbone = load_backbone(str(tmp_path / "dinov2"), "dino")
    assert backbone.image_size is None
    assert backbone.embed_images(torch.zeros(2, 3, 224, 224)).shape == (2, 32)


def test_weights_fingerprint_follows_the_weights():
    model = torch.nn.Linear(300, 200)
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.weight.mul_(1.01)
    assert weights_fingerprint(model) != before
