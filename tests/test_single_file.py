"""Single-file checkpoints: the family read from the file, converted once offline with diffusers'
from_single_file, then trained on, generated from and exported like a pipeline folder; the built-in SD 1.x,
2.x and SDXL configs that make real files load with no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from single_file_helpers import write_single_file
from train_helpers import tiny_trainer_flags

from delora_diffusion.adapters import read_adapter
from delora_diffusion.inference.generate import main as generate_main
from delora_diffusion.models.families import ModelFamilyError, check_base_model, single_file_kind
from delora_diffusion.models.single_file import cache_root, resolve_base_model
from delora_diffusion.models.single_file_configs import builtin_config
from delora_diffusion.training.dreambooth import main as train_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sd_file(tiny_sd, tmp_path_factory) -> Path:
    return write_single_file(tiny_sd, tmp_path_factory.mktemp("files") / "tiny-sd.safetensors")


@pytest.fixture(scope="module")
def sdxl_file(tiny_sdxl, tmp_path_factory) -> Path:
    return write_single_file(tiny_sdxl, tmp_path_factory.mktemp("files") / "tiny-sdxl.safetensors")


def _weights(folder: Path, component: str) -> dict[str, torch.Tensor]:
    name = "model.safetensors" if component.startswith("text_encoder") else "diffusion_pytorch_model.safetensors"
    return load_file(folder / component / name)


@pytest.fixture(scope="module")
def sd2_file(tiny_sd2, tmp_path_factory) -> Path:
    return write_single_file(tiny_sd2, tmp_path_factory.mktemp("files") / "tiny-sd2.safetensors")


@pytest.mark.parametrize("which", ["sd", "sd2", "sdxl"])
def test_single_files_convert_once_to_the_same_weights(
    which, tiny_sd, tiny_sd2, tiny_sdxl, sd_file, sd2_file, sdxl_file, capsys
):
    folder, file = {"sd": (tiny_sd, sd_file), "sd2": (tiny_sd2, sd2_file), "sdxl": (tiny_sdxl, sdxl_file)}[which]
    # (the tiny SD 2.x has a CLIP text encoder, so its file reads as SD 1.x: the configs decide the rest)
    assert single_file_kind(file) == (
        ("StableDiffusionXLPipeline", "sdxl") if which == "sdxl" else ("StableDiffusionPipeline", "sd1")
    )
    converted = Path(resolve_base_model(str(file), str(folder)))
    assert "converting the single-file checkpoint" in capsys.readouterr().out
    components = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if which == "sdxl" else [])
    for component in components:
        ours, original = _weights(converted, component), _weights(folder, component)
        assert ours.keys() == original.keys() and all(torch.equal(ours[k], original[k]) for k in ours)
    assert resolve_base_model(str(file), str(folder)) == str(converted)  # the second time: no conversion
    assert "converting" not in capsys.readouterr().out
    scheduler = json.loads((converted / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler.get("prediction_type", "epsilon") == ("v_prediction" if which == "sd2" else "epsilon")


def test_train_generate_and_export_from_a_single_file(sd_file, tiny_sd, tmp_path):
    out = tmp_path / "run"
    flags = tiny_trainer_flags(sd_file, out, "--single_file_config", str(tiny_sd), "--max_train_steps", "2")
    assert train_main(flags) == 0
    adapter = read_adapter(out / "adapter.safetensors")
    assert adapter.metadata["base_model"] == str(sd_file)  # the file as given, not the cache folder
    assert "from_single_file" in (out / "README.md").read_text()
    images = tmp_path / "images"
    assert (
        generate_main(
            [
                "--pretrained_model_name_or_path",
                str(sd_file),
                "--single_file_config",
                str(tiny_sd),
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
                str(images),
                "--no_progress",
            ]
        )
        == 0
    )
    assert len(list(images.rglob("*.png"))) >= 1


def test_an_sdxl_single_file_trains(sdxl_file, tiny_sdxl, tmp_path):
    out = tmp_path / "run"
    assert (
        train_main(tiny_trainer_flags(sdxl_file, out, "--single_file_config", str(tiny_sdxl), "--max_train_steps", "1"))
        == 0
    )
    assert any(".attn2." in name for name in read_adapter(out / "adapter.safetensors").layers)


def test_a_file_the_builtin_configs_do_not_describe_stops_naming_the_flag(sd_file, tmp_path, capsys):
    code = train_main(
        [
            "--pretrained_model_name_or_path",
            str(sd_file),
            "--instance_data_dir",
            str(REPO / "subjects" / "robot"),
            "--instance_prompt",
            "a photo of sks toy",
            "--resolution",
            "32",
            "--report_to",
            "none",
            "--max_train_steps",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(sd_file) in err and "--single_file_config" in err


def test_files_of_no_known_family_are_refused(tmp_path):
    unet_only = tmp_path / "unet_only.safetensors"
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(1)}, str(unet_only))
    with pytest.raises(ModelFamilyError, match="no SD 1.x, SD 2.x or SDXL text encoder"):
        check_base_model(str(unet_only))
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1)}, str(lora))
    with pytest.raises(ModelFamilyError, match="holds no Stable Diffusion UNet"):
        check_base_model(str(lora))


@pytest.mark.parametrize(
    "version,unet,vae,text",
    [
        ("sd1", 859_520_964, 83_653_863, [123_060_480]),
        ("sd2", 865_910_724, 83_653_863, [340_387_840]),
        ("sdxl", 2_567_463_684, 83_653_863, [123_060_480, 694_659_840]),
    ],
)
def test_builtin_configs_are_the_published_architectures(version, unet, vae, text):
    """Parameter counts of the published SD 1.5, SD 2.1 and SDXL components, and CLIP's token ids."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = builtin_config(version, cache_root())
    index = json.loads((folder / "model_index.json").read_text())

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    with init_empty_weights():
        assert (
            count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))) == unet
        )
        assert count(AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae"))) == vae
        encoders = [name for name in ("text_encoder", "text_encoder_2") if name in index]
        for name, expected in zip(encoders, text):
            model_class = CLIPTextModelWithProjection if name.endswith("_2") else CLIPTextModel
            assert count(model_class(CLIPTextConfig.from_pretrained(folder, subfolder=name))) == expected
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    assert len(tokenizer) == 49408
