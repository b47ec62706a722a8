"""generate.py with plain LoRA files (diffusers or kohya keys, as other trainers write them), several at once,
each at its own scale, alone or under a delora-diffusion adapter.

The plain files are exact exports of a DeLoRA adapter, so the images they give must be the adapter's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_files import make_adapter_file
from PIL import Image
from safetensors.torch import save_file

from delora_diffusion.adapters import export_lora, load_adapter
from delora_diffusion.inference.generate import main
from delora_diffusion.models.loading import load_unet

FAST = [
    "--num_inference_steps",
    "2",
    "--height",
    "32",
    "--width",
    "32",
    "--no_progress",
    "--subject",
    "toy",
    "--class_noun",
    "toy",
    "--prompt",
    "a {token} {class_noun}",
    "--prompt",
    "a red {token} {class_noun}",
    "--num_images_per_prompt",
    "2",
]


@pytest.fixture(scope="module")
def files(tiny_sd, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plain_lora")
    ours = make_adapter_file(load_unet(str(tiny_sd)), folder / "adapter.safetensors", base_model=str(tiny_sd))
    unet = load_unet(str(tiny_sd))
    load_adapter(unet, ours)
    found = {"ours": Path(ours)}
    for fmt in ("diffusers", "kohya"):
        found[fmt] = Path(export_lora(unet, folder / f"{fmt}.safetensors", fmt))
    from safetensors.torch import load_file

    diverged = load_file(str(found["diffusers"]))
    first = sorted(diverged)[0]
    diverged[first] = torch.full_like(diverged[first], float("nan"))
    found["nan"] = folder / "diverged.safetensors"
    save_file(diverged, str(found["nan"]))
    found["not_a_lora"] = folder / "weights.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(found["not_a_lora"]))
    return found


def render(tiny_sd, out: Path, *adapter_flags) -> np.ndarray:
    code = main(
        ["--pretrained_model_name_or_path", str(tiny_sd), "--output_dir", str(out), *FAST, *map(str, adapter_flags)]
    )
    assert code == 0
    return np.stack([np.asarray(Image.open(p), dtype=np.int16) for p in sorted((out / "toy").glob("*/*.png"))])


@pytest.fixture(scope="module")
def references(tiny_sd, files, tmp_path_factory) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("references")
    return {"base": render(tiny_sd, root / "base"), "ours": render(tiny_sd, root / "ours", "--adapter", files["ours"])}


def test_references_differ(references):
    assert np.abs(references["ours"] - references["base"]).mean() > 1  # else the comparisons below prove nothing


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_a_plain_lora_gives_the_adapters_images(tiny_sd, files, references, tmp_path, fmt):
    images = render(tiny_sd, tmp_path / "out", "--adapter", files[fmt])
    assert np.abs(images - references["ours"]).max() <= 1


def test_two_plain_loras_at_half_scale_add_up(tiny_sd, files, references, tmp_path):
    images = render(
        tiny_sd, tmp_path / "out", "--adapter", files["diffusers"], "--adapter", files["kohya"], "--scale", 0.5
    )
    assert np.abs(images - references["ours"]).max() <= 1
    records = [json.loads(line) for line in (tmp_path / "out" / "toy" / "metadata.jsonl").read_text().splitlines()]
    assert [lora["scale"] for lora in records[0]["loras"]] == [0.5, 0.5]
    assert records[0]["loras"][0]["file"] == str(files["diffusers"]) and len(records[0]["loras"][1]["sha256"]) == 64
    parameters = Image.open(tmp_path / "out" / "toy" / records[0]["file"]).text["parameters"]
    assert "Loras: diffusers:0.5, kohya:0.5" in parameters


def test_scales_are_per_adapter_and_ours_goes_on_top(tiny_sd, files, references, tmp_path):
    # A plain LoRA at scale 0 is the identity: what remains is our adapter alone, attached after the fusion.
    images = render(
        tiny_sd, tmp_path / "a", "--adapter", files["kohya"], "--adapter", files["ours"], "--scale", 0, "--scale", 1
    )
    assert np.abs(images - references["ours"]).max() <= 1
    # Both at full strength: the update twice, which is neither the base nor the adapter.
    doubled = render(tiny_sd, tmp_path / "b", "--adapter", files["kohya"], "--adapter", files["ours"])
    assert np.abs(doubled - references["ours"]).mean() > 0.5


def test_changed_lora_scale_is_a_settings_clash(tiny_sd, files, tmp_path, capsys):
    out = tmp_path / "out"
    render(tiny_sd, out, "--adapter", files["diffusers"], "--scale", 0.5)
    render(tiny_sd, out, "--adapter", files["diffusers"], "--scale", 0.5)  # kept
    assert "0 generated" in capsys.readouterr().out
    assert (
        main(
            [
                "--pretrained_model_name_or_path",
                str(tiny_sd),
                "--output_dir",
                str(out),
                *FAST,
                "--adapter",
                str(files["diffusers"]),
                "--scale",
                "0.7",
            ]
        )
        == 2
    )
    assert "other settings (loras:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case,says",
    [
        ("two_ours", "one delora-diffusion adapter at a time"),
        ("not_a_lora", "cannot load it as a LoRA"),
        ("nan", "holds NaN or inf values"),
        ("scale_count", "one per --adapter"),
        ("merge_plain", "--merge folds a delora-diffusion adapter"),
    ],
)
def test_errors(tiny_sd, files, tmp_path, capsys, case, says):
    flags = {
        "two_ours": ["--adapter", files["ours"], "--adapter", files["ours"]],
        "not_a_lora": ["--adapter", files["not_a_lora"]],
        "nan": ["--adapter_file", files["nan"]],
        "scale_count": [
            "--adapter",
            files["ours"],
            "--adapter",
            files["kohya"],
            "--scale",
            1,
            "--scale",
            1,
            "--scale",
            1,
        ],
        "merge_plain": ["--adapter", files["kohya"], "--merge"],
    }[case]
    try:
        code = main(
            [
                "--pretrained_model_name_or_path",
                str(tiny_sd),
                "--output_dir",
                str(tmp_path / "o"),
                *FAST,
                *map(str, flags),
            ]
        )
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert says in capsys.readouterr().err
