"""SDXL end to end on a tiny SDXL-shaped pipeline: both text encoders and the pooled embedding, size and crop
conditioning, prior preservation, validation, exact resume, generate.py, exports that stock
StableDiffusionXLPipeline loads with equal outputs, the VAE kept fp32, and what SDXL does not run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from train_helpers import reset_accelerate, tiny_trainer_flags

from delora_diffusion.adapters import load_adapter, read_adapter
from delora_diffusion.data.dreambooth import DreamBoothDataset, ImageSet
from delora_diffusion.inference.generate import main as generate_main
from delora_diffusion.training.components import encode_prompts, load_components, stack_text, unet_conditioning
from delora_diffusion.training.dreambooth import main as train_main
from delora_diffusion.training.semantic import main as semantic_main

REPO = Path(__file__).resolve().parents[1]


def _flags(out: Path, base: Path, *extra: str) -> list[str]:
    return tiny_trainer_flags(base, out, *extra)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    stored = read_adapter(path)
    return {f"{layer}.{k}": v for layer, tensors in stored.layers.items() for k, v in tensors.items()}


def test_conditioning_joins_both_encoders_and_the_pooled_embedding(tiny_sdxl):
    components = load_components(str(tiny_sdxl))
    assert components.is_sdxl
    embeds = encode_prompts(components, ["a photo of sks toy", "a toy"], "cpu", torch.float32)
    text = stack_text(embeds, ["a toy", "a photo of sks toy", "a toy"])
    width = components.text_encoder.config.hidden_size + components.text_encoder_2.config.hidden_size
    assert text["encoder_hidden_states"].shape == (3, 77, width)
    assert text["text_embeds"].shape == (3, components.text_encoder_2.config.projection_dim)
    latent = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        out = components.unet(
            latent, 10, **unet_conditioning(text, torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 3))
        ).sample
        other = components.unet(latent, 10, **unet_conditioning(text, torch.tensor([[64.0, 96, 16, 0, 32, 32]] * 3)))
    assert out.shape == (3, 4, 8, 8)
    assert (out - other.sample).abs().max() > 1e-4  # the size and crop numbers reach the UNet


def test_time_ids_hold_original_size_and_crop(tmp_path):
    folder = tmp_path / "subject"
    folder.mkdir()
    Image.new("RGB", (120, 60), "red").save(folder / "wide.png")
    instance = ImageSet.load(folder, "a photo of sks toy", 32, "instance_data_dir")
    dataset = DreamBoothDataset(instance, None, 32, center_crop=True, random_flip=False, seed=0)
    # 120x60 resized to 64x32, the centre 32x32 crop starts 16 px from the left
    assert dataset[0]["instance"]["time_ids"].tolist() == [60, 120, 0, 16, 32, 32]
    flipped = DreamBoothDataset(instance, None, 32, center_crop=False, random_flip=True, seed=0)
    for index in range(8):
        flipped.set_epoch(index)
        view = flipped.view("instance", 0)
        left = 64 - view.left - 32 if view.flip else view.left  # the crop seen in the flipped image
        assert flipped[0]["instance"]["time_ids"].tolist() == [60, 120, view.top, left, 32, 32]


@pytest.fixture(scope="module")
def trained(tiny_sdxl, tmp_path_factory) -> Path:
    """DeLoRA on the tiny SDXL: prior preservation with generated class images, validation, both exports."""
    reset_accelerate()
    out = tmp_path_factory.mktemp("sdxl") / "run"
    assert (
        train_main(
            _flags(
                out,
                tiny_sdxl,
                "--max_train_steps",
                "4",
                "--with_prior_preservation",
                "--class_prompt",
                "a photo of toy",
                "--num_class_images",
                "2",
                "--class_inference_steps",
                "2",
                "--validation_prompt",
                "a sks toy in the snow",
                "--export_kohya",
            )
        )
        == 0
    )
    reset_accelerate()
    return out


def test_sdxl_dreambooth_trains_with_prior_preservation_and_validates(trained, tiny_sdxl):
    assert len(list((trained / "class_images").glob("class-*.png"))) == 2
    assert (trained / "validation" / "step-000004.png").is_file()
    stored = read_adapter(trained / "adapter.safetensors")
    assert stored.config.method == "delora" and any(".attn2.to_k" in name for name in stored.layers)
    unet = load_components(str(tiny_sdxl)).unet
    before = {n: p.clone() for n, p in unet.named_parameters()}
    load_adapter(unet, trained / "adapter.safetensors")
    assert all(torch.equal(before[n], p) for n, p in unet.named_parameters() if n in before)  # base kept frozen


@pytest.mark.parametrize("weight_name", ["pytorch_lora_weights.safetensors", "lora_kohya.safetensors"])
def test_sdxl_exports_load_in_stock_diffusers_with_equal_outputs(trained, tiny_sdxl, weight_name):
    from diffusers import StableDiffusionXLPipeline

    def unet_output(unet):
        generator = torch.Generator().manual_seed(0)
        config = unet.config
        latent = torch.randn(1, 4, 8, 8, generator=generator)
        states = torch.randn(1, 77, config.cross_attention_dim, generator=generator)
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        added = {
            "text_embeds": torch.randn(1, pooled, generator=generator),
            "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]]),
        }
        with torch.no_grad():
            return unet(latent, 500, states, added_cond_kwargs=added).sample

    ours = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl).unet
    base = unet_output(ours)
    load_adapter(ours, trained / "adapter.safetensors")
    stock = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    stock.load_lora_weights(trained, weight_name=weight_name)
    assert (unet_output(ours) - base).abs().max() > 1e-3
    assert torch.allclose(unet_output(stock.unet), unet_output(ours), atol=2e-5)


def test_delora_export_writes_what_the_trainer_wrote(trained, tmp_path):
    from safetensors.torch import load_file

    from delora_diffusion.cli import export_main

    out = tmp_path / "kohya.safetensors"
    assert export_main(["--adapter", str(trained / "adapter.safetensors"), "--format", "kohya", "--out", str(out)]) == 0
    exported, written = load_file(out), load_file(trained / "lora_kohya.safetensors")
    assert exported.keys() == written.keys() and all(torch.equal(exported[k], written[k]) for k in exported)
    # diffusers' module paths with underscores: a name ComfyUI maps for SDXL (unet_to_diffusers)
    assert any(k.startswith("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.") for k in exported)


def test_the_model_cards_stock_diffusers_snippet_runs(trained, monkeypatch):
    card = (trained / "README.md").read_text()
    snippet = card.split("stock diffusers:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(trained)  # the snippet loads "." (this folder)
    scope: dict = {}
    exec(snippet, scope)
    assert type(scope["pipe"]).__name__ == "StableDiffusionXLPipeline"
    assert scope["pipe"].get_list_adapters()["unet"]  # the LoRA is on its UNet
    use = card.split("## Use", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    scope = {}
    exec("\n".join(line for line in use.splitlines() if not line.startswith("image =")), scope)
    assert type(scope["pipe"]).__name__ == "StableDiffusionXLPipeline"
    assert any(type(m).__name__ == "DeLoRALinear" for m in scope["pipe"].unet.modules())


def test_generate_renders_the_prompt_set_with_an_sdxl_adapter(trained, tiny_sdxl, tmp_path):
    out = tmp_path / "samples"
    assert (
        generate_main(
            [
                "--pretrained_model_name_or_path",
                str(tiny_sdxl),
                "--adapter",
                str(trained / "adapter.safetensors"),
                "--subject",
                "robot",
                "--class_noun",
                "toy",
                "--height",
                "32",
                "--width",
                "32",
                "--num_images_per_prompt",
                "1",
                "--num_inference_steps",
                "2",
                "--output_dir",
                str(out),
                "--no_progress",
            ]
        )
        == 0
    )
    assert len(list((out / "robot").rglob("*.png"))) == 25 + 1  # the 25 prompts and the contact sheet


def test_sdxl_runs_resume_exactly(tiny_sdxl, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    options = ["--adapter", "lora", "--random_flip"]  # fresh encodes: the flipped crops' time ids change too
    assert train_main(_flags(whole, tiny_sdxl, *options, "--max_train_steps", "6")) == 0
    reset_accelerate()
    assert train_main(_flags(split, tiny_sdxl, *options, "--max_train_steps", "3", "--checkpointing_steps", "3")) == 0
    reset_accelerate()
    assert (
        train_main(_flags(split, tiny_sdxl, *options, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"))
        == 0
    )
    a, b = _tensors(whole / "adapter.safetensors"), _tensors(split / "adapter.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sdxl_vae_stays_fp32_under_mixed_precision_unless_replaced(tiny_sdxl, tmp_path, caplog):
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        assert (
            train_main(_flags(tmp_path / "bf16", tiny_sdxl, "--max_train_steps", "1", "--mixed_precision", "bf16")) == 0
        )
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "SDXL's VAE stays fp32 under mixed precision" in said
    caplog.clear()
    reset_accelerate()
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        assert (
            train_main(
                _flags(
                    tmp_path / "own_vae",
                    tiny_sdxl,
                    "--max_train_steps",
                    "1",
                    "--mixed_precision",
                    "bf16",
                    "--pretrained_vae_model_name_or_path",
                    str(tiny_sdxl / "vae"),
                )
            )
            == 0
        )
    assert "SDXL's VAE stays fp32" not in " ".join(r.getMessage() for r in caplog.records)


def test_the_semantic_trainer_stops_on_sdxl_with_one_line(tiny_sdxl, tmp_path, capsys):
    code = semantic_main(
        [
            "--pretrained_model_name_or_path",
            str(tiny_sdxl),
            "--data_dir",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "semantic"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is a StableDiffusionXLPipeline; this command runs StableDiffusionPipeline" in err


def _encoder_outputs(pipe) -> list[torch.Tensor]:
    """Both text encoders' outputs the UNet is conditioned on: penultimate hidden states, pooled projection."""
    outputs = []
    for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        ids = tokenizer(["a photo of sks toy"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            output = encoder(ids, output_hidden_states=True)
        outputs += [output.hidden_states[-2], output[0]]
    return outputs


def test_sdxl_text_encoder_adapters_train_and_export(tiny_sdxl, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    from delora_diffusion.inference import apply_adapter

    out = tmp_path / "run"
    assert (
        train_main(
            _flags(
                out,
                tiny_sdxl,
                "--adapter",
                "lora",
                "--train_text_encoder",
                "--text_encoder_lr",
                "1e-2",
                "--learning_rate",
                "1e-2",
                "--max_train_steps",
                "3",
                "--export_kohya",
            )
        )
        == 0
    )
    stored = read_adapter(out / "adapter.safetensors")
    assert len(stored.targets_of("text_encoder")) == len(stored.targets_of("text_encoder_2")) == 12
    kohya = set(load_file(out / "lora_kohya.safetensors"))
    assert any(k.startswith("lora_te1_text_model_encoder_layers_0_") for k in kohya)
    assert any(k.startswith("lora_te2_text_model_encoder_layers_1_mlp_fc2") for k in kohya)
    base = _encoder_outputs(StableDiffusionXLPipeline.from_pretrained(tiny_sdxl))
    ours = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    apply_adapter(ours, out / "adapter.safetensors")
    trained = _encoder_outputs(ours)
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(trained, base))  # both encoders learned
    for weight_name in ("pytorch_lora_weights.safetensors", "lora_kohya.safetensors"):
        stock = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
        stock.load_lora_weights(out, weight_name=weight_name)
        assert all(torch.allclose(a, b, atol=2e-5) for a, b in zip(_encoder_outputs(stock), trained)), weight_name


@pytest.mark.parametrize("method", ["delora", "lora"])
def test_sdxl_recipes_parse(method):
    from delora_diffusion.training.dreambooth import build_args

    args, _ = build_args(
        [
            "--config",
            str(REPO / "configs" / f"dreambooth_sdxl_{method}.yaml"),
            "--instance_data_dir",
            "d",
            "--instance_prompt",
            "a photo of sks dog",
            "--class_prompt",
            "a photo of dog",
        ]
    )
    assert (args.adapter, args.resolution, args.max_train_steps) == (method, 1024, 500)
    assert args.pretrained_model_name_or_path == "stabilityai/stable-diffusion-xl-base-1.0"
    assert args.pretrained_vae_model_name_or_path == "madebyollin/sdxl-vae-fp16-fix"


@pytest.mark.parametrize("method", ["dora", "ether", "etherplus"])
def test_every_method_trains_on_sdxl(method, tiny_sdxl, tmp_path):
    out = tmp_path / method
    assert train_main(_flags(out, tiny_sdxl, "--adapter", method, "--max_train_steps", "2")) == 0
    assert read_adapter(out / "adapter.safetensors").config.method == method
