"""Semantic map → image end to end on the tiny model (CPU): train (DeLoRA + hint encoder, or ControlNet) through
the shared loop, resume, save/load the one adapter file, generate with ``generate.py semantic``, and bad input."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import grid_cell, launch_two_processes, reset_accelerate

from delora_diffusion.adapters import AdapterConfig, attach, read_adapter, save_adapter
from delora_diffusion.data.demo_scenes import write_scenes
from delora_diffusion.inference.generate import main as generate_main
from delora_diffusion.models.control import build_control, load_control
from delora_diffusion.models.loading import load_unet
from delora_diffusion.training.determinism import derive_seed
from delora_diffusion.training.loop import train
from delora_diffusion.training.semantic import build_args
from delora_diffusion.training.semantic import main as train_main
from delora_diffusion.training.semantic_task import SemanticTask

RESOLUTION = 32


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, count=4, size=48, seed=1)
    return root


def flags(out: Path, tiny_sd: Path, data: Path, **options) -> list[str]:
    argv = [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--data_dir",
        str(data),
        "--resolution",
        str(RESOLUTION),
        "--train_batch_size",
        "2",
        "--rank",
        "2",
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        "--max_train_steps",
        "4",
        "--checkpointing_steps",
        "2",
        "--random_flip",
        "--proportion_empty_prompts",
        "0.5",
        "--log_weight_distance_steps",
        "1",
    ]
    for key, value in options.items():
        argv += (
            [f"--{key}"]
            if value is True
            else [f"--{key}", *([str(v) for v in value] if isinstance(value, list) else [str(value)])]
        )
    return argv


def run(argv: list[str]):
    reset_accelerate()
    args, _ = build_args(argv)
    task = SemanticTask(args)
    try:
        return train(args, task, command=["train_semantic.py", *argv]), task
    finally:
        reset_accelerate()


TRAINING_LOG: list[str] = []  # what the `trained` run logged


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sd, scenes):
    out = tmp_path_factory.mktemp("semantic-run")
    validation_map = scenes / "maps" / "scene_0000.png"
    logger = logging.getLogger("delora_diffusion.training")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: TRAINING_LOG.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level =: it also clears the logger's cached enabled levels
    try:
        result, task = run(
            flags(
                out,
                tiny_sd,
                scenes,
                validation_maps=[validation_map],
                num_validation_images=2,
                validation_inference_steps=2,
                validation_steps=0,
            )
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return result, task, out, validation_map


def test_training_updates_the_adapter_and_the_hint_encoder(trained, tiny_sd):
    result, task, out, _ = trained
    assert result.global_step == 4 and result.adapter_path.is_file()
    stored = read_adapter(result.adapter_path)
    assert stored.metadata["extra"]["trainer"] == "semantic"
    assert stored.metadata["extra"]["control"]["type"] == "hint"
    # The hint encoder trained from its zero-initialised last conv...
    saved = {k.removeprefix("hint_encoder."): v for k, v in stored.extra_tensors.items()}
    assert torch.count_nonzero(saved["conv_out.weight"]) > 0
    # The log counts what trains: the adapter and the hint encoder (not the adapter alone).
    hint = sum(v.numel() for v in saved.values())
    line = next(m for m in TRAINING_LOG if m.startswith("training "))
    total, adapter = (
        int(n.replace(",", "")) for n in re.search(r"([\d,]+) trainable parameters: adapter ([\d,]+) in", line).groups()
    )
    assert adapter > 0 and total == adapter + hint and f"hint_encoder {hint:,}" in line, line
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(0, 3))
        initial = build_control("hint", load_unet(str(tiny_sd)), 2).state_dict()
    assert not torch.allclose(saved["conv_in.weight"], initial["conv_in.weight"])
    # ... and the DeLoRA adapter moved the UNet, each at its own learning rate.
    last = result.history[-1]
    assert last["weight_distance/total"] > 0
    assert last["lr/adapter"] == pytest.approx(2e-2) and last["lr/hint_encoder"] == pytest.approx(1e-4)
    assert any(key.startswith("lambda/") for key in last)
    assert (out / "checkpoint-2" / "adapter.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert "hint encoder" in card and "load_semantic_pipeline" in card and "semantic map → image" in card


def test_resume_replays_the_run(trained, tiny_sd, scenes, tmp_path):
    result, _, out, _ = trained
    resumed, _ = run(flags(tmp_path / "resumed", tiny_sd, scenes, resume_from_checkpoint=out / "checkpoint-2"))
    first, again = read_adapter(result.adapter_path), read_adapter(resumed.adapter_path)
    for key, value in first.extra_tensors.items():
        assert torch.allclose(again.extra_tensors[key], value, atol=1e-6), key
    for layer, tensors in first.layers.items():
        for key, value in tensors.items():
            assert torch.allclose(again.layers[layer][key], value, atol=1e-6), f"{layer}.{key}"


def test_generation_layout_and_round_trip_of_the_adapter_file(trained, tiny_sd, scenes, tmp_path, capsys):
    result, task, out, validation_map = trained
    gen = tmp_path / "gen"
    argv = [
        "semantic",
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--adapter",
        str(result.adapter_path),
        "--maps",
        str(scenes / "maps"),
        "--captions",
        str(scenes / "captions.jsonl"),
        "--num_images_per_map",
        "2",
        "--num_inference_steps",
        "2",
        "--height",
        str(RESOLUTION),
        "--width",
        str(RESOLUTION),
        "--output_dir",
        str(gen),
        "--no_progress",
        "--limit",
        "2",
    ]
    assert generate_main(argv) == 0
    assert "2 maps, 4 images" in capsys.readouterr().out
    folder = gen / "scene_0000"
    assert sorted(p.name for p in (folder / "00").iterdir()) == ["0.png", "1.png"]
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in records] == [0, 1]
    captions = {
        json.loads(line)["file_name"].split(".")[0]: json.loads(line)["text"]
        for line in (scenes / "captions.jsonl").read_text().splitlines()
    }
    first = records[0]
    assert first["prompt"] == captions["scene_0000"] and first["caption_found"]
    assert first["map_crop"] == [0, 0, 48, 48] and first["map_size"] == [48, 48]
    assert (first["control"], first["scheduler"], first["guidance_scale"]) == ("hint", "ddim", 9.0)
    assert first["file"] == "00/0.png" and Image.open(folder / "map.png").size == (RESOLUTION, RESOLUTION)

    # The images from the saved file are the ones the trainer drew in memory at the end (same seeds,
    # DDIM, 2 steps, guidance 9): the adapter and the hint encoder came back intact.
    for seed in (0, 1):
        column = np.asarray(grid_cell(result.validation_grids[-1], 0, seed + 1, RESOLUTION)[0]).astype(int)
        generated = np.asarray(Image.open(folder / "00" / f"{seed}.png").convert("RGB")).astype(int)
        assert np.abs(column - generated).max() <= 1

    # Resuming keeps what exists; other settings in the same folder are refused.
    assert generate_main(argv) == 0
    assert "0 generated, 4 kept" in capsys.readouterr().out
    assert generate_main([*argv, "--control_scale", "0.5"]) == 2
    assert "other settings (control_scale: 1.0 -> 0.5)" in capsys.readouterr().err


def test_controlnet_option_trains_and_generates(tiny_sd, scenes, tmp_path, capsys):
    result, task = run(
        flags(tmp_path / "cn", tiny_sd, scenes, control="controlnet", max_train_steps=2, checkpointing_steps=0)
    )
    kind, controlnet = load_control(read_adapter(result.adapter_path))
    assert kind == "controlnet" and result.history[-1]["lr/controlnet"] == pytest.approx(1e-5)
    # Its zero convolutions left zero: the control now reaches the UNet.
    assert any(torch.count_nonzero(block.weight) for block in controlnet.controlnet_down_blocks)
    assert (
        generate_main(
            [
                "semantic",
                "--pretrained_model_name_or_path",
                str(tiny_sd),
                "--adapter",
                str(result.adapter_path),
                "--maps",
                str(scenes / "maps"),
                "--prompt",
                "a room",
                "--num_images_per_map",
                "1",
                "--num_inference_steps",
                "2",
                "--limit",
                "1",
                "--output_dir",
                str(tmp_path / "gen"),
                "--no_progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "gen" / "scene_0000" / "00" / "0.png").is_file()


@pytest.mark.parametrize("control", ["hint", "controlnet"])
def test_bf16_mixed_precision_trains_and_validates(control, tiny_sd, scenes, tmp_path):
    """The frozen UNet in bf16, the control module fp32: its features / residuals must meet the UNet in its dtype."""
    result, _ = run(
        flags(
            tmp_path / control,
            tiny_sd,
            scenes,
            control=control,
            mixed_precision="bf16",
            max_train_steps=2,
            checkpointing_steps=0,
            validation_maps=[scenes / "maps" / "scene_0001.png"],
            num_validation_images=1,
            validation_inference_steps=2,
        )
    )
    assert result.mixed_precision == "bf16" and result.validation_grids
    stored = read_adapter(result.adapter_path)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in stored.extra_tensors.values())


@pytest.mark.parametrize(
    "case", ["missing_map", "size_mismatch", "cache_without_center_crop", "validation_prompts", "missing_data_dir"]
)
def test_trainer_user_errors_exit_2_with_a_clear_message(case, tiny_sd, tmp_path, capsys):
    data = tmp_path / "data"
    write_scenes(data, count=2, size=32)
    options = {}
    if case == "missing_map":
        (data / "maps" / "scene_0001.png").unlink()
        expected = "has no map: expected"
    elif case == "size_mismatch":
        Image.new("RGB", (32, 40)).save(data / "maps" / "scene_0001.png")
        expected = "is 32×40 but its image"
    elif case == "cache_without_center_crop":
        options["cache_latents"] = True
        expected = "--cache_latents needs fixed views"
    elif case == "validation_prompts":
        options.update(validation_maps=[data / "maps" / "scene_0000.png"], validation_prompt=["a", "b"])
        expected = "gives 2 prompts for 1 --validation_maps"
    else:
        data = tmp_path / "nowhere"
        expected = f"--data_dir {data} does not exist"
    argv = flags(tmp_path / "out", tiny_sd, data, **options)
    reset_accelerate()
    try:
        code = train_main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    finally:
        reset_accelerate()
    assert code == 2
    err = capsys.readouterr().err
    assert "train_semantic.py: error:" in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "out" / "adapter.safetensors").exists()


def test_generate_semantic_user_errors(tiny_sd, scenes, tmp_path, capsys):
    unet = load_unet(str(tiny_sd))
    attach(unet, AdapterConfig(method="delora", rank=2))
    plain = save_adapter(unet, tmp_path / "dreambooth.safetensors", base_model=str(tiny_sd))
    common = ["semantic", "--pretrained_model_name_or_path", str(tiny_sd), "--output_dir", str(tmp_path / "g")]
    assert generate_main([*common, "--adapter", str(plain), "--maps", str(scenes / "maps")]) == 2
    assert "holds no semantic-map control module" in capsys.readouterr().err
    assert generate_main([*common, "--adapter", str(plain), "--maps", str(tmp_path / "none")]) == 2
    assert f"--maps {tmp_path / 'none'} does not exist" in capsys.readouterr().err


def test_two_processes_keep_adapter_and_hint_encoder_in_sync(tiny_sd, scenes, tmp_path):
    """Real 2-process DDP (gloo, CPU): the fingerprint covers the adapter and the hint encoder, so equal
    fingerprints mean the hint encoder's gradients were averaged too; rank 0 alone writes the file."""
    from delora_diffusion.adapters import load_adapter
    from delora_diffusion.training.metrics import adapter_fingerprint

    out = tmp_path / "ddp"
    code, log, found = launch_two_processes(
        "train_semantic.py",
        [
            "--pretrained_model_name_or_path",
            str(tiny_sd),
            "--data_dir",
            str(scenes),
            "--resolution",
            str(RESOLUTION),
            "--rank",
            "2",
            "--train_batch_size",
            "1",
            "--max_train_steps",
            "3",
            "--checkpointing_steps",
            "0",
            "--report_to",
            "none",
            "--random_flip",
            "--output_dir",
            str(out),
        ],
        tmp_path,
    )
    assert code == 0, log[-4000:]
    assert set(found) == {"0", "1"} and found["0"] == found["1"], found
    assert log.count("Done: 3 steps of delora + hint") == 1
    unet = load_unet(str(tiny_sd))
    stored = load_adapter(unet, out / "adapter.safetensors")
    _, hint_encoder = load_control(stored)
    assert adapter_fingerprint(unet, {"hint_encoder": hint_encoder}) == found["0"]
