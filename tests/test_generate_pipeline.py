"""Inference library on the tiny model: seeded sampling, adapter loading, scale, merge, prompt sets."""

from __future__ import annotations

import numpy as np
import pytest
from adapter_files import make_adapter_file

from delora_diffusion.adapters import AdapterFileError, adapter_layers
from delora_diffusion.data.prompts import LIVE_PROMPTS, OBJECT_PROMPTS
from delora_diffusion.inference import PipelineLoadError, apply_adapter, load_pipeline, remove_adapter, sample_images
from delora_diffusion.inference.prompt_sets import PromptFileError, read_prompt_file, subject_prompts, templates_for
from delora_diffusion.models.loading import load_unet

FAST = dict(num_inference_steps=2, height=32, width=32)
PROMPTS = ["a sks dog in the jungle", "a red sks dog", "a sks dog on the beach"]


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.fixture(scope="module")
def pipe(tiny_sd):
    return load_pipeline(tiny_sd, device="cpu")


@pytest.fixture(scope="module")
def adapter_file(tiny_sd, tmp_path_factory):
    return make_adapter_file(
        load_unet(str(tiny_sd)), tmp_path_factory.mktemp("adapter") / "adapter.safetensors", base_model=str(tiny_sd)
    )


def test_same_seed_same_image_at_any_batch_size(pipe):
    batched = pixels(sample_images(pipe, PROMPTS, [5, 6, 7], **FAST).images)
    single = pixels([sample_images(pipe, [p], [s], **FAST).images[0] for p, s in zip(PROMPTS, [5, 6, 7])])
    again = pixels(sample_images(pipe, PROMPTS[:1], [5], **FAST).images)
    assert batched.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(single[:1], again)  # same seed, same call: bit-identical
    # Another batch size changes float rounding only: at most one 8-bit level.
    assert np.abs(batched - single).max() <= 1
    other_seed = pixels(sample_images(pipe, PROMPTS[:1], [8], **FAST).images)
    assert np.abs(other_seed - single[:1]).mean() > 5


def test_scale_zero_is_the_base_model_and_merge_matches(pipe, adapter_file):
    base = pixels(sample_images(pipe, PROMPTS[:2], [0, 1], **FAST).images)
    try:
        info = apply_adapter(pipe, adapter_file)
        assert info.method == "delora" and len(info.sha256) == 64
        adapted = pixels(sample_images(pipe, PROMPTS[:2], [0, 1], **FAST).images)
        assert np.abs(adapted - base).mean() > 2, "the perturbed adapter should change the images"

        apply_adapter(pipe, adapter_file, scale=0.0)
        np.testing.assert_array_equal(pixels(sample_images(pipe, PROMPTS[:2], [0, 1], **FAST).images), base)

        apply_adapter(pipe, adapter_file, merge=True)
        assert all(layer.merged for layer in adapter_layers(pipe.unet).values())
        merged = pixels(sample_images(pipe, PROMPTS[:2], [0, 1], **FAST).images)
        assert np.abs(merged - adapted).max() <= 2
    finally:
        remove_adapter(pipe)
    assert not adapter_layers(pipe.unet)
    np.testing.assert_array_equal(pixels(sample_images(pipe, PROMPTS[:2], [0, 1], **FAST).images), base)


def test_load_pipeline_puts_the_adapter_on_the_unet(tiny_sd, adapter_file):
    pipe = load_pipeline(tiny_sd, device="cpu", dtype="float32", adapter=adapter_file, scale=0.5, scheduler="ddim")
    layers = adapter_layers(pipe.unet)
    assert layers and all(layer.scale == 0.5 and not layer.merged for layer in layers.values())
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.unet.dtype.is_floating_point


def test_default_scheduler_is_dpm_solver_pp(pipe):
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++"


def test_adapter_for_another_base_model_is_rejected(pipe, tmp_path):
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=8,
    )
    path = make_adapter_file(other, tmp_path / "other.safetensors", base_model="some/other-model")
    with pytest.raises(AdapterFileError, match="other.safetensors.*wrong base model"):
        apply_adapter(pipe, path)
    assert not adapter_layers(pipe.unet)


def test_missing_adapter_and_missing_base_model(pipe, tiny_sd, tmp_path):
    with pytest.raises(AdapterFileError, match="nope.safetensors does not exist"):
        apply_adapter(pipe, tmp_path / "nope.safetensors")
    with pytest.raises(PipelineLoadError, match="does not exist"):
        load_pipeline(tmp_path / "no_such_model", device="cpu")


def test_live_prompts_for_pets_object_prompts_otherwise():
    assert templates_for("dog") == LIVE_PROMPTS and templates_for("Cat") == LIVE_PROMPTS
    assert templates_for("backpack") == OBJECT_PROMPTS
    assert templates_for("dog", "object") == OBJECT_PROMPTS and templates_for("teapot", "live") == LIVE_PROMPTS
    prompts = subject_prompts(templates_for("dog"), "sks", "dog")
    assert len(prompts) == 25 and [p.index for p in prompts] == list(range(25))
    assert prompts[0].prompt == "a sks dog in the jungle" and prompts[0].class_prompt == "a dog in the jungle"
    assert subject_prompts(templates_for("dog"), "", "dog")[0].prompt == "a dog in the jungle"


def test_prompt_file(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# my prompts\na {token} {class_noun} at night\n\na painting of a {class_noun} {{framed}}\n")
    assert read_prompt_file(good) == ["a {token} {class_noun} at night", "a painting of a {class_noun} {{framed}}"]
    assert subject_prompts(read_prompt_file(good), "sks", "vase")[1].prompt == "a painting of a vase {framed}"

    cases = {
        "unknown.txt": ("a {tokn} dog\n", r"unknown.txt:1: unknown placeholder \{tokn\}"),
        "brace.txt": ("ok\na {token dog\n", r"brace.txt:2: .*literal braces"),
        "empty.txt": ("# nothing\n\n", "empty.txt holds no prompts"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(PromptFileError, match=message):
            read_prompt_file(tmp_path / name)
    with pytest.raises(PromptFileError, match="missing.txt does not exist"):
        read_prompt_file(tmp_path / "missing.txt")
