"""Exact export to plain LoRA: diffusers' own loader must reproduce our pipeline's images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from adapter_helpers import ALL_METHODS, perturb
from safetensors import safe_open

from delora_diffusion.adapters import AdapterConfig, attach, lora_state_dict, save_adapter, set_scale
from delora_diffusion.cli import export_main

PROMPT = "a sks dog in the jungle"


def _pipeline(tiny_sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe) -> np.ndarray:
    out = pipe(PROMPT, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    return out.images


@pytest.fixture(scope="module")
def base_images(tiny_sd):
    return _images(_pipeline(tiny_sd))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_exported_lora_reproduces_our_pipeline(method, tiny_sd, tmp_path, base_images):
    pipe = _pipeline(tiny_sd)
    torch.manual_seed(0)
    attach(pipe.unet, AdapterConfig(method=method, rank=4, lambda_init=2.0))
    perturb(pipe.unet, std=0.3)
    scale = "1.0" if method == "dora" else "0.8"  # a scaled DoRA update is no longer DoRA-shaped
    set_scale(pipe.unet, float(scale))
    ours = _images(pipe)
    assert np.abs(ours - base_images).max() > 1e-2  # the adapter changes the images
    adapter_file = save_adapter(pipe.unet, tmp_path / "adapter.safetensors", base_model=str(tiny_sd))

    formats = ["diffusers"] if method == "dora" else ["diffusers", "kohya"]
    for fmt in formats:
        out = tmp_path / f"{fmt}.safetensors"
        assert export_main(["--adapter", str(adapter_file), "--format", fmt, "--out", str(out), "--scale", scale]) == 0
        fresh = _pipeline(tiny_sd)
        fresh.load_lora_weights(str(out))
        theirs = _images(fresh)
        assert np.abs(theirs - ours).max() * 255 <= 1e-3, fmt  # max abs pixel difference in 0..255 units


def test_kohya_keys_and_ranks(tiny_sd):
    from delora_diffusion.models.loading import load_unet

    unet = load_unet(str(tiny_sd))
    attach(unet, AdapterConfig(method="delora", rank=4, init="residual"))
    sd = lora_state_dict(unet, "kohya")
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
    assert sd[f"{key}.lora_down.weight"].shape == (8, 32)  # residual DeLoRA: rank 2r
    assert sd[f"{key}.lora_up.weight"].shape == (32, 8)
    assert sd[f"{key}.alpha"].item() == 8.0


def test_dora_refuses_kohya_and_export_errors_are_clear(tiny_sd, tmp_path, capsys):
    from delora_diffusion.models.loading import load_unet

    unet = load_unet(str(tiny_sd))
    attach(unet, AdapterConfig(method="dora", rank=2))
    path = save_adapter(unet, tmp_path / "dora.safetensors", base_model=str(tiny_sd))
    assert export_main(["--adapter", str(path), "--format", "kohya", "--out", str(tmp_path / "k.safetensors")]) == 2
    assert "diffusers only" in capsys.readouterr().err
    assert (
        export_main(
            [
                "--adapter",
                str(tmp_path / "nope.safetensors"),
                "--format",
                "kohya",
                "--out",
                str(tmp_path / "k.safetensors"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a folder as --out: named as the user gave it, before any work
        export_main(["--adapter", str(path), "--format", "diffusers", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert f"--out {tmp_path} is a folder" in err and ".tmp" not in err
    out = tmp_path / "d.safetensors"
    assert export_main(["--adapter", str(path), "--format", "diffusers", "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert any(k.endswith("lora_magnitude_vector") for k in f.keys())


def test_export_finds_a_relatively_given_base_model_from_another_folder(tiny_sd, tmp_path, monkeypatch):
    import os

    pipe = _pipeline(tiny_sd)
    attach(pipe.unet, AdapterConfig(method="lora", rank=2))
    relative = os.path.relpath(tiny_sd, tmp_path)  # as a user types it from tmp_path
    monkeypatch.chdir(tmp_path)
    adapter_file = save_adapter(pipe.unet, tmp_path / "adapter.safetensors", base_model=relative)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative path no longer resolves; the recorded absolute one does
    assert export_main(["--adapter", str(adapter_file), "--format", "diffusers", "--out", "lora.safetensors"]) == 0
    assert (elsewhere / "lora.safetensors").is_file()
