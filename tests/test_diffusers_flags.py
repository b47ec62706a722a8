"""diffusers' train_dreambooth_lora.py commands run here: its README example's exact flags (paths replaced),
and every flag of that script either works with diffusers' meaning or stops with one line saying why."""

from __future__ import annotations

import importlib.util
import random
import shlex
from pathlib import Path

import pytest

from delora_diffusion.adapters import read_adapter
from delora_diffusion.training.compat import REFUSED
from delora_diffusion.training.dreambooth import build_args, main
from delora_diffusion.world.objects import sample_instance
from delora_diffusion.world.views import write_views

REPO = Path(__file__).resolve().parents[1]
# diffusers' examples/dreambooth/README.md, "Training with Low-Rank Adaptation of Large Language Models (LoRA)".
README_COMMAND = """accelerate launch train_dreambooth_lora.py \
  --pretrained_model_name_or_path=$MODEL_NAME  \
  --instance_data_dir=$INSTANCE_DIR \
  --output_dir=$OUTPUT_DIR \
  --instance_prompt="a photo of sks dog" \
  --resolution=512 \
  --train_batch_size=1 \
  --gradient_accumulation_steps=1 \
  --checkpointing_steps=100 \
  --learning_rate=1e-4 \
  --report_to="wandb" \
  --lr_scheduler="constant" \
  --lr_warmup_steps=0 \
  --max_train_steps=500 \
  --validation_prompt="A photo of sks dog in a bucket" \
  --validation_epochs=50 \
  --seed="0" \
  --push_to_hub"""
# The tiny model at 500 steps of 512 px would take minutes: the same command, smaller (later flags win).
SMALLER = [
    "--resolution=32",
    "--max_train_steps=6",
    "--checkpointing_steps=3",
    "--validation_epochs=2",
    "--validation_inference_steps=2",
    "--num_validation_images=1",
]


def readme_flags(tiny_sd: Path, out: Path) -> list[str]:
    text = (
        README_COMMAND.replace("$MODEL_NAME", str(tiny_sd))
        .replace("$INSTANCE_DIR", str(REPO / "subjects" / "robot"))
        .replace("$OUTPUT_DIR", str(out))
    )
    return shlex.split(text.replace("\\\n", " "))[3:]  # after "accelerate launch train_dreambooth_lora.py"


def test_readme_flags_keep_diffusers_meaning(tiny_sd, tmp_path):
    args, _ = build_args(readme_flags(tiny_sd, tmp_path / "out") + ["--report_to=tensorboard"])
    assert (args.learning_rate, args.validation_epochs, args.max_train_steps, args.seed) == (1e-4, 50, 500, 0)
    assert (args.push_to_hub, args.validation_prompt) == (True, ["A photo of sks dog in a bucket"])
    assert (args.checkpointing_steps, args.lr_scheduler, args.resolution) == (100, "constant", 512)
    assert args.adapter == "delora"  # the method is ours to choose (--adapter lora for diffusers' own)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_readme_command_without_wandb_stops_at_once_saying_so(tiny_sd, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(readme_flags(tiny_sd, tmp_path / "out"))
    assert stop.value.code == 2 and "--report_to wandb needs the wandb package" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_readme_command_trains_validates_by_epoch_and_pushes(tiny_sd, tmp_path, online_hub, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_stored_by_login")  # `hf auth login` was run
    out = tmp_path / "out"
    argv = readme_flags(tiny_sd, out) + SMALLER + ["--report_to=tensorboard", "--center_crop"]
    assert main(argv) == 0
    # 5 images, batch 1: an epoch is 5 steps; validation at the end of epoch 2 is after the run's end (6 steps)
    # so only the final grid exists, and the checkpoint every 3 steps.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-000006.png"]
    assert read_adapter(out / "adapter.safetensors").config.method == "delora"
    assert [name for name, _ in online_hub.calls] == ["whoami", "create_repo", "upload_folder"]


def test_validation_epochs_validate_at_epoch_ends(tiny_sd, tmp_path):
    out = tmp_path / "out"
    argv = (
        readme_flags(tiny_sd, out)[:-1]
        + SMALLER
        + [
            "--report_to=none",
            "--center_crop",
            "--max_train_steps=12",
            "--validation_epochs=1",
            "--checkpointing_steps=0",
        ]
    )
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "validation").iterdir()) == [
        "step-000005.png",
        "step-000010.png",
        "step-000012.png",
    ]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_flags_stop_with_their_reason(name, tiny_sd, tmp_path, capsys):
    value = {
        "tokenizer_max_length": ["--tokenizer_max_length", "77"],
        "text_encoder_lr": ["--text_encoder_lr", "5e-6"],
        "tokenizer_name": ["--tokenizer_name", "x"],
        "validation_images": ["--validation_images", "a.png"],
        "class_labels_conditioning": ["--class_labels_conditioning", "timesteps"],
    }.get(name, [f"--{name}"])
    with pytest.raises(SystemExit) as stop:
        main(readme_flags(tiny_sd, tmp_path / "out")[:-1] + ["--report_to=none", *value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--{name} {REFUSED[name]}" in err


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_8bit_adam_without_bitsandbytes_names_the_package(tiny_sd, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(readme_flags(tiny_sd, tmp_path / "out")[:-1] + ["--report_to=none", "--use_8bit_adam"])
    assert "--optimizer adamw8bit needs bitsandbytes: pip install bitsandbytes" in capsys.readouterr().err


def test_xformers_precision_dropout_and_interpolation_work(tiny_sd, tmp_path, caplog):
    class_dir = tmp_path / "class"
    out = tmp_path / "out"
    argv = (
        readme_flags(tiny_sd, out)[:-1]
        + SMALLER
        + [
            "--report_to=none",
            "--adapter=lora",
            "--enable_xformers_memory_efficient_attention",
            "--lora_dropout=0.1",
            "--image_interpolation_mode=lanczos",
            "--with_prior_preservation",
            "--class_prompt=a photo of a toy",
            f"--class_data_dir={class_dir}",
            "--num_class_images=2",
            "--class_inference_steps=2",
            "--prior_generation_precision=fp32",
            "--pre_compute_text_embeddings",
            "--local_rank=0",
            "--noise_offset=0.05",
        ]
    )
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        assert main(argv) == 0
    log = [r.getMessage() for r in caplog.records]
    if importlib.util.find_spec("xformers") is None:
        assert any("xformers is not installed; PyTorch's scaled-dot-product attention is used" in m for m in log)
    assert len(list(class_dir.glob("class-*.png"))) == 2
    assert read_adapter(out / "adapter.safetensors").config.lora_dropout == 0.1


def test_lora_dropout_is_for_lora_and_dora(tiny_sd, tmp_path, capsys):
    argv = (
        readme_flags(tiny_sd, tmp_path / "out")[:-1]
        + SMALLER
        + ["--report_to=none", "--adapter=delora", "--lora_dropout=0.1"]
    )
    assert main(argv) == 2
    assert "lora_dropout applies to lora and dora" in capsys.readouterr().err


def test_interpolation_changes_the_pixels(tmp_path):
    from delora_diffusion.data.dreambooth import ImageSet

    folder = tmp_path / "big"
    write_views(sample_instance("toy", random.Random(3)), folder, name="v")
    a = ImageSet.load(folder, "p", 24, "x", interpolation="bilinear").images[0]
    b = ImageSet.load(folder, "p", 24, "x", interpolation="lanczos").images[0]
    assert a.size == b.size and a.tobytes() != b.tobytes()
