"""--train_text_encoder: the run's method on the text encoder too, trained, resumed exactly, saved in the same
adapter file, loaded by generate's pipeline, and exported with the keys stock diffusers and ComfyUI read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_diffusers_flags import readme_flags
from train_helpers import reset_accelerate

from delora_diffusion.adapters import AdapterFileError, load_adapter, read_adapter
from delora_diffusion.cli import export_main
from delora_diffusion.training.dreambooth import main

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a photo of sks toy"


def _flags(out: Path, tiny_sd: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--instance_data_dir",
        str(REPO / "subjects" / "robot"),
        "--instance_prompt",
        PROMPT,
        "--resolution",
        "32",
        "--center_crop",
        "--rank",
        "2",
        "--report_to",
        "none",
        "--validation_steps",
        "0",
        "--num_validation_images",
        "1",
        "--validation_inference_steps",
        "2",
        "--output_dir",
        str(out),
        *extra,
    ]


def _outputs(pipe) -> tuple[torch.Tensor, torch.Tensor]:
    """(text-encoder hidden states of PROMPT, the UNet's output on them for a fixed latent)."""
    ids = pipe.tokenizer(
        [PROMPT], padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        states = pipe.text_encoder(ids)[0]
        latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        return states, pipe.unet(latent, 10, encoder_hidden_states=states).sample


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    stored = read_adapter(path)
    return {f"{layer}.{k}": v for layer, tensors in stored.layers.items() for k, v in tensors.items()}


@pytest.fixture(scope="module")
def trained(tiny_sd, tmp_path_factory) -> Path:
    """A DeLoRA run with a text-encoder adapter and both exports."""
    reset_accelerate()
    out = tmp_path_factory.mktemp("te") / "run"
    assert (
        main(
            _flags(
                out,
                tiny_sd,
                "--max_train_steps",
                "4",
                "--train_text_encoder",
                "--text_encoder_lr",
                "3e-3",
                "--export_kohya",
            )
        )
        == 0
    )
    reset_accelerate()
    return out


def test_the_text_encoder_trains_with_its_own_rate(trained, tiny_sd):
    from diffusers import StableDiffusionPipeline

    from delora_diffusion.inference import apply_adapter, remove_adapter

    stored = read_adapter(trained / "adapter.safetensors")
    te_layers = stored.targets_of("text_encoder")
    assert len(te_layers) == 2 * 6  # two CLIP layers: q, k, v, out projections, fc1, fc2
    assert "text_model.encoder.layers.1.mlp.fc2" in te_layers and stored.targets_of("unet")  # checkpoint names
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["lr/text_encoder"] == 3e-3 and rows[0]["lr/adapter"] == 0.02
    assert rows[0]["lr/text_encoder_lambda"] == rows[0]["lr/lambda"] == 1e-3  # λ keeps its own rate
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    base_states, _ = _outputs(pipe)
    apply_adapter(pipe, trained / "adapter.safetensors")
    states, _ = _outputs(pipe)
    assert (states - base_states).abs().max() > 1e-3  # the gradient reached the text encoder
    remove_adapter(pipe)
    assert torch.equal(_outputs(pipe)[0], base_states)
    with pytest.raises(AdapterFileError, match="also adapts the pipeline.s text_encoder .* pass text_encoder=pipe"):
        load_adapter(pipe.unet, trained / "adapter.safetensors")


@pytest.mark.parametrize("weight_name", ["pytorch_lora_weights.safetensors", "lora_kohya.safetensors"])
def test_exports_load_in_stock_diffusers_with_equal_outputs(trained, tiny_sd, weight_name):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from delora_diffusion.inference import apply_adapter

    keys = set(load_file(trained / weight_name))
    assert (
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in keys
        or "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight" in keys
    )
    ours = StableDiffusionPipeline.from_pretrained(tiny_sd)
    apply_adapter(ours, trained / "adapter.safetensors")
    stock = StableDiffusionPipeline.from_pretrained(tiny_sd)
    stock.load_lora_weights(trained, weight_name=weight_name)
    (te_ours, unet_ours), (te_stock, unet_stock) = _outputs(ours), _outputs(stock)
    assert torch.allclose(te_ours, te_stock, atol=2e-5) and torch.allclose(unet_ours, unet_stock, atol=2e-5)


def test_delora_export_writes_the_text_encoder_too(trained, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "te_kohya.safetensors"
    assert export_main(["--adapter", str(trained / "adapter.safetensors"), "--format", "kohya", "--out", str(out)]) == 0
    assert load_file(out).keys() == load_file(trained / "lora_kohya.safetensors").keys()


def test_text_encoder_runs_resume_exactly(tiny_sd, tmp_path):
    options = ["--train_text_encoder", "--adapter", "lora", "--lora_dropout", "0.1"]  # dropout masks replay too
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(_flags(whole, tiny_sd, *options, "--max_train_steps", "6")) == 0
    reset_accelerate()
    assert main(_flags(split, tiny_sd, *options, "--max_train_steps", "3", "--checkpointing_steps", "3")) == 0
    reset_accelerate()
    assert main(_flags(split, tiny_sd, *options, "--max_train_steps", "6", "--resume_from_checkpoint", "latest")) == 0
    a, b = _tensors(whole / "adapter.safetensors"), _tensors(split / "adapter.safetensors")
    assert any(k.startswith("text_encoder.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)
    # The same folder without the flag would mix two runs: refused.
    reset_accelerate()
    assert main(_flags(split, tiny_sd, "--adapter", "lora", "--max_train_steps", "6")) == 2


def test_diffusers_text_encoder_flags_work(tiny_sd, tmp_path):
    out = tmp_path / "out"
    argv = readme_flags(tiny_sd, out)[:-1] + [
        "--report_to=none",
        "--resolution=32",
        "--max_train_steps=2",
        "--checkpointing_steps=0",
        "--validation_epochs=1",
        "--validation_inference_steps=2",
        "--num_validation_images=1",
        "--center_crop",
        "--train_text_encoder",
        "--text_encoder_lr=5e-6",
    ]
    assert main(argv) == 0
    assert read_adapter(out / "adapter.safetensors").targets_of("text_encoder")


@pytest.mark.parametrize(
    "flags,says",
    [
        (["--text_encoder_lr", "1e-4"], "--text_encoder_lr acts with --train_text_encoder"),
        (["--train_text_encoder", "--text_encoder_lr", "0"], "must be > 0"),
    ],
)
def test_text_encoder_flag_errors(flags, says, tiny_sd, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(_flags(tmp_path / "out", tiny_sd, *flags))
    assert stop.value.code == 2 and says in capsys.readouterr().err
