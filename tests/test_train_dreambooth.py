"""End-to-end DreamBooth training on the tiny model (CPU): every method, resume, NaN guard, bf16, demo."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import grid_cell, reset_accelerate

from delora_diffusion.adapters import METHODS, adapter_layers, disabled, load_adapter, read_adapter
from delora_diffusion.inference.sampling import sample_images
from delora_diffusion.training.checkpoint import STATE_FILE
from delora_diffusion.training.components import load_components, sampling_pipeline
from delora_diffusion.training.dreambooth import build_args, main
from delora_diffusion.training.dreambooth_task import DreamBoothTask
from delora_diffusion.training.loop import NonFiniteLossError, train
from delora_diffusion.training.metrics import adapter_fingerprint, read_metrics
from delora_diffusion.training.run_files import ADAPTER_FILE, METRICS_FILE
from delora_diffusion.world.objects import sample_instance
from delora_diffusion.world.views import write_views

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "subjects" / "robot"
VALIDATION_PROMPT = "a sks toy on the beach"


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory) -> Path:
    """Ready class images, so that runs train with prior preservation without generating any."""
    folder = tmp_path_factory.mktemp("class_images")
    write_views(sample_instance("toy", random.Random(1)), folder, name="c")
    return folder


def flags(out: Path, tiny_sd: Path, class_dir: Path | None = None, **options) -> list[str]:
    argv = [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--instance_data_dir",
        str(DEMO),
        "--instance_prompt",
        "a photo of sks toy",
        "--resolution",
        "32",
        "--center_crop",
        "--train_batch_size",
        "1",
        "--rank",
        "2",
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        "--validation_inference_steps",
        "2",
        "--num_validation_images",
        "1",
    ]
    if class_dir is not None:
        argv += [
            "--with_prior_preservation",
            "--class_prompt",
            "a photo of a toy",
            "--class_data_dir",
            str(class_dir),
            "--num_class_images",
            "5",
        ]
    for key, value in options.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return argv


def run(argv: list[str], task_class=DreamBoothTask):
    args, _ = build_args(argv)
    return train(args, task_class(args), command=["train_dreambooth.py", *argv])


def adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    stored = read_adapter(path)
    return {f"{layer}.{k}": v for layer, tensors in stored.layers.items() for k, v in tensors.items()}


def max_difference(a: Path, b: Path) -> float:
    ta, tb = adapter_tensors(a), adapter_tensors(b)
    assert ta.keys() == tb.keys()
    return max((ta[k] - tb[k]).abs().max().item() for k in ta)


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


METHOD_OPTIONS = {
    "delora": {},  # cached latents, prior preservation
    "lora": {"gradient_checkpointing": True, "gradient_accumulation_steps": 2},
    "dora": {"snr_gamma": 5, "lr_scheduler": "cosine", "lr_warmup_steps": 1},
    "ether": {"random_flip": True},  # fresh VAE encodes every step
    "etherplus": {"ether_blocks": 2},
}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_saves_and_reloads_to_the_same_outputs(method, tmp_path, tiny_sd, class_dir):
    out = tmp_path / "out"
    result = run(
        flags(
            out,
            tiny_sd,
            None if method == "etherplus" else class_dir,
            adapter=method,
            max_train_steps=3,
            checkpointing_steps=2,
            validation_prompt=VALIDATION_PROMPT,
            validation_steps=0,
            **METHOD_OPTIONS[method],
        )
    )

    assert result.global_step == 3 and [h["step"] for h in result.history] == [1, 2, 3]
    for entry in result.history:
        assert math.isfinite(entry["loss"]) and math.isfinite(entry["grad_norm"])
        assert entry["lr/adapter"] > 0 or METHOD_OPTIONS[method].get("lr_scheduler") == "cosine"
        assert ("loss/prior" in entry) == (method != "etherplus")
        assert ("lambda/mean" in entry) == (method == "delora")
    if method == "delora":
        assert result.history[-1]["lr/lambda"] == pytest.approx(1e-3)
        assert result.history[-1]["lambda/max"] != 15.0  # λ is trained
    assert result.history[-1]["weight_distance/total"] > 0

    # Files: final adapter, checkpoint-2 with its own adapter, model card, settings; nothing half-written.
    assert result.adapter_path == out / ADAPTER_FILE
    stored = read_adapter(result.adapter_path)
    assert stored.config.method == method and stored.metadata["base_model"] == str(tiny_sd)
    assert stored.metadata["extra"]["instance_prompt"] == "a photo of sks toy"
    checkpoint = out / "checkpoint-2"
    assert json.loads((checkpoint / STATE_FILE).read_text())["global_step"] == 2
    assert max_difference(checkpoint / ADAPTER_FILE, result.adapter_path) > 0  # step 3 changed the weights
    card = (out / "README.md").read_text()
    assert method in card.lower().replace("+", "plus") and "validation/step-000003.png" in card
    assert json.loads((out / "training_args.json").read_text())["args"]["adapter"] == method
    assert no_temporary_files(out)

    # Reload into a fresh model: identical tensors, and the validation image is reproduced exactly.
    components = load_components(str(tiny_sd))
    load_adapter(components.unet, result.adapter_path)
    assert adapter_fingerprint(components.unet) == result.adapter_fingerprint
    image = sample_images(
        sampling_pipeline(components), [VALIDATION_PROMPT], [0], num_inference_steps=2, height=32, width=32
    ).images[0]
    cell, captioned = grid_cell(result.validation_grids[-1], 0, 0, 32)
    assert np.array_equal(np.asarray(image), np.asarray(cell)) and captioned  # the prompt is written above
    x, t, h = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 77, 32)
    with torch.no_grad():
        adapted = components.unet(x, t, encoder_hidden_states=h).sample
        with disabled(components.unet):
            base = components.unet(x, t, encoder_hidden_states=h).sample
    assert (adapted - base).abs().max() > 1e-6

    # The plain-LoRA file written beside the adapter (and in the checkpoint): stock diffusers loads the
    # output folder and its UNet computes what ours does.
    from diffusers import StableDiffusionPipeline

    assert (checkpoint / "pytorch_lora_weights.safetensors").is_file() and "load_lora_weights" in card
    from huggingface_hub import ModelCard

    hub = ModelCard.load(out / "README.md").data  # the hub's own parser reads the front matter
    assert hub.instance_prompt == "a photo of sks toy" and method in hub.tags and "dreambooth" in hub.tags
    assert hub.widget == [{"text": VALIDATION_PROMPT, "output": {"url": "validation/step-000003.png"}}]
    assert hub.base_model is None  # a local folder is no hub id
    assert result.exports == {"diffusers LoRA": out / "pytorch_lora_weights.safetensors"}
    stock = StableDiffusionPipeline.from_pretrained(str(tiny_sd))
    stock.load_lora_weights(str(out))
    with torch.no_grad():
        theirs = stock.unet(x, t, encoder_hidden_states=h).sample
    assert (theirs - adapted).abs().max() < 1e-5, method


def test_export_kohya_writes_the_comfyui_file_and_dora_is_refused_before_training(tmp_path, tiny_sd, capsys):
    from safetensors import safe_open

    out = tmp_path / "out"
    result = run(flags(out, tiny_sd, adapter="lora", max_train_steps=1, export_kohya=True, validation_steps=0))
    assert set(result.exports) == {"diffusers LoRA", "kohya LoRA"}
    with safe_open(str(out / "lora_kohya.safetensors"), "pt") as handle:
        assert all(k.startswith("lora_unet_") for k in handle.keys())
    with pytest.raises(SystemExit) as stop:
        main(flags(tmp_path / "dora", tiny_sd, adapter="dora", max_train_steps=1, export_kohya=True))
    assert stop.value.code == 2
    assert "--export_kohya: DoRA has no kohya form" in capsys.readouterr().err
    assert not (tmp_path / "dora").exists()  # refused before any work


@pytest.mark.parametrize("accelerate_launched", [False, True])
def test_the_model_card_gives_the_command_as_it_was_launched(tmp_path, tiny_sd, monkeypatch, accelerate_launched):
    if accelerate_launched:
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch` leaves for its processes
    else:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    argv = flags(tmp_path / "out", tiny_sd, max_train_steps=1, validation_steps=0)
    assert main(argv) == 0
    command = ["accelerate", "launch"] if accelerate_launched else ["python"]
    command += ["train_dreambooth.py", *argv]
    assert f"\n{shlex.join(command)}\n" in (tmp_path / "out" / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "training_args.json").read_text())["command"] == command


def test_resume_mid_epoch_ends_identical_to_an_uninterrupted_run(tmp_path, tiny_sd, class_dir):
    # 5 items, 1 per batch, 2 batches per step: 3 steps per epoch (the last one a partial accumulation).
    # Stopping after step 2 leaves the run mid-epoch; random flips, Min-SNR and warm-up all have to replay.
    options = dict(
        adapter="delora",
        gradient_accumulation_steps=2,
        random_flip=True,
        snr_gamma=5,
        lr_scheduler="constant_with_warmup",
        lr_warmup_steps=3,
        checkpointing_steps=2,
    )
    whole = run(flags(tmp_path / "whole", tiny_sd, class_dir, max_train_steps=5, **options))

    first = run(flags(tmp_path / "split", tiny_sd, class_dir, max_train_steps=2, **options))
    assert [p.name for p in first.checkpoints] == ["checkpoint-2"]
    reset_accelerate()
    resumed = run(
        flags(tmp_path / "split", tiny_sd, class_dir, max_train_steps=5, resume_from_checkpoint="latest", **options)
    )

    assert resumed.global_step == 5 and [h["step"] for h in resumed.history] == [3, 4, 5]
    for a, b in zip(whole.history[2:], resumed.history):
        assert a["loss"] == b["loss"] and a["lr/adapter"] == b["lr/adapter"], (a, b)
    assert max_difference(whole.adapter_path, resumed.adapter_path) <= 1e-6
    assert max_difference(tmp_path / "split" / "checkpoint-2" / ADAPTER_FILE, resumed.adapter_path) > 1e-4

    # metrics.jsonl of the interrupted-and-resumed folder reads like the uninterrupted run's.
    split_log, whole_log = (read_metrics(tmp_path / name / METRICS_FILE) for name in ("split", "whole"))
    assert [r["step"] for r in split_log] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in split_log] == [r["loss"] for r in whole_log]
    final = split_log[-1]  # the last step logs the distance of every layer and every λ
    layers = [k.removeprefix("weight_distance/") for k in final if k.startswith("weight_distance/")]
    assert len(layers) > 1 and all(f"lambda/{layer}" in final for layer in layers if layer != "total")
    assert final["weight_distance/total"] == pytest.approx(whole_log[-1]["weight_distance/total"], rel=1e-5)


def test_resume_with_new_learning_rates_applies_and_says_so(tmp_path, tiny_sd, caplog):
    """The trainer's advice after a NaN stop is "lower --learning_rate and resume": the new rates must apply."""
    options = dict(adapter="delora", lr_scheduler="constant", checkpointing_steps=2, validation_steps=0)
    run(flags(tmp_path / "out", tiny_sd, max_train_steps=2, learning_rate=2e-2, lambda_learning_rate=1e-3, **options))
    reset_accelerate()
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        resumed = run(
            flags(
                tmp_path / "out",
                tiny_sd,
                max_train_steps=4,
                learning_rate=1e-3,
                lambda_learning_rate=1e-4,
                resume_from_checkpoint="latest",
                **options,
            )
        )
    assert [h["step"] for h in resumed.history] == [3, 4]
    assert all(
        h["lr/adapter"] == pytest.approx(1e-3) and h["lr/lambda"] == pytest.approx(1e-4) for h in resumed.history
    )
    assert "other learning rates than the checkpoint's (0.02, 0.001 -> 0.001, 0.0001" in caplog.text


def test_resume_from_a_missing_checkpoint_is_a_usage_error(tmp_path, tiny_sd, capsys):
    code = main(flags(tmp_path / "out", tiny_sd, resume_from_checkpoint=str(tmp_path / "checkpoint-9")))
    assert code == 2 and "no such folder" in capsys.readouterr().err


def test_resume_latest_without_a_checkpoint_warns_naming_the_folder(tmp_path, tiny_sd, caplog):
    with caplog.at_level("WARNING", logger="delora_diffusion.training"):
        run(flags(tmp_path / "typo", tiny_sd, max_train_steps=1, resume_from_checkpoint="latest"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no checkpoint-N folder in" in w and str((tmp_path / "typo").resolve()) in w for w in warnings)


def test_the_trainer_removes_debris_of_dead_runs_at_start(tmp_path, tiny_sd):
    import subprocess
    import sys

    from delora_diffusion.fileio import temporary_dir_name

    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = [
        out / temporary_dir_name("checkpoint-2", pid),
        out / f".adapter.safetensors.{pid}.abcd1234.tmp.safetensors",
    ]
    stale[0].mkdir(parents=True)
    stale[1].write_bytes(b"half")
    result = run(flags(out, tiny_sd, max_train_steps=1, checkpointing_steps=0))
    assert not any(p.exists() for p in stale)
    assert any("removed 2 temporary file(s) left by interrupted runs" in note for note in result.notes)


def test_an_output_dir_of_another_adapter_is_refused_unless_overwritten(tmp_path, tiny_sd, capsys):
    out = tmp_path / "out"
    run(flags(out, tiny_sd, adapter="delora", max_train_steps=2, checkpointing_steps=1))
    assert (out / "checkpoint-2").is_dir()
    reset_accelerate()
    assert main(flags(out, tiny_sd, adapter="lora", max_train_steps=1)) == 2
    assert "holds a run with other adapter flags (--adapter 'delora' -> 'lora'" in capsys.readouterr().err
    reset_accelerate()
    result = run(
        flags(out, tiny_sd, adapter="lora", max_train_steps=1, checkpointing_steps=0, overwrite_output_dir=True)
    )
    assert not list(out.glob("checkpoint-*")) and read_adapter(result.adapter_path).config.method == "lora"


def test_a_finished_run_of_the_same_method_is_refused_unless_resumed_or_overwritten(tmp_path, tiny_sd, capsys):
    out = tmp_path / "out"
    run(flags(out, tiny_sd, max_train_steps=2, checkpointing_steps=1))
    reset_accelerate()
    assert main(flags(out, tiny_sd, max_train_steps=2, checkpointing_steps=1)) == 2
    assert "holds a run with the same settings, finished or checkpointed: continue it with" in capsys.readouterr().err
    reset_accelerate()
    resumed = run(flags(out, tiny_sd, max_train_steps=3, checkpointing_steps=1, resume_from_checkpoint="latest"))
    assert resumed.global_step == 3
    reset_accelerate()
    again = run(flags(out, tiny_sd, max_train_steps=1, checkpointing_steps=0, overwrite_output_dir=True))
    assert again.global_step == 1 and not list(out.glob("checkpoint-*"))


def test_one_thread_policy_recorded_and_checked_on_resume(tmp_path, tiny_sd, caplog, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    out = tmp_path / "out"
    try:
        with caplog.at_level("INFO", logger="delora_diffusion.training"):
            run(flags(out, tiny_sd, max_train_steps=1, checkpointing_steps=1))
            assert torch.get_num_threads() == 1  # not torch's every-core default
            assert json.loads((out / "training_args.json").read_text())["args"]["num_threads"] == 1
            reset_accelerate()
            run(
                flags(
                    out,
                    tiny_sd,
                    max_train_steps=2,
                    checkpointing_steps=1,
                    resume_from_checkpoint="latest",
                    num_threads=2,
                )
            )
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    messages = [r.getMessage() for r in caplog.records]
    assert "CPU threads per process: 1 (--num_threads)" in messages
    assert any("resuming with 2 CPU threads per process where the run had 1" in m for m in messages)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_sd, monkeypatch):
    calls = {"n": 0}
    real = DreamBoothTask.model_inputs

    def poisoned(self, batch, run_context, generator):
        calls["n"] += 1
        latents, conditioning = real(self, batch, run_context, generator)
        return (latents * float("nan") if calls["n"] >= 3 else latents), conditioning

    monkeypatch.setattr(DreamBoothTask, "model_inputs", poisoned)
    out = tmp_path / "out"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss nan at step 3 .*checkpoint-2"):
        run(flags(out, tiny_sd, max_train_steps=5, checkpointing_steps=2))
    assert not (out / ADAPTER_FILE).exists()
    kept = adapter_tensors(out / "checkpoint-2" / ADAPTER_FILE)
    assert all(torch.isfinite(v).all() for v in kept.values())
    assert not (out / "checkpoint-4").exists() and no_temporary_files(out)


class DtypeProbe(DreamBoothTask):
    """Records parameter dtypes whenever validation runs (between training steps)."""

    seen: list[tuple[set, set]] = []

    def validation_images(self, run_context, unet, step):
        adapter = {p.dtype for layer in adapter_layers(unet).values() for p in layer.parameters() if p.requires_grad}
        base = {layer.base_layer.weight.dtype for layer in adapter_layers(unet).values()}
        DtypeProbe.seen.append((adapter, base))
        return super().validation_images(run_context, unet, step)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_keeps_adapter_weights_fp32_through_validation(precision, dtype, tmp_path, tiny_sd):
    # On a CPU accelerate autocasts bf16 but not fp16 (and has no grad scaler): fp16 checks that the UNet
    # inputs are cast to the frozen weights' dtype.
    DtypeProbe.seen = []
    result = run(
        flags(
            tmp_path / "out",
            tiny_sd,
            tmp_path / "classes",
            mixed_precision=precision,
            max_train_steps=2,
            num_class_images=2,
            class_inference_steps=2,
            validation_prompt=VALIDATION_PROMPT,
            validation_steps=1,
            checkpointing_steps=0,
        ),
        task_class=DtypeProbe,
    )
    assert len(list((tmp_path / "classes").glob("class-*.png"))) == 2  # generated in this precision too
    assert result.mixed_precision == precision and result.global_step == 2
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert DtypeProbe.seen == [({torch.float32}, {dtype})] * 2  # after step 1 and at the end
    assert len(result.validation_grids) == 2
    assert any(f"--mixed_precision {precision} on a CPU is usually slower" in note for note in result.notes)


def test_demo_config_runs_end_to_end(tmp_path, monkeypatch, capsys, caplog):
    """The README's main job, shortened by flags, from the repository root: the shipped toy model, class
    images, training, validation, checkpoints, the adapter and where everything is."""
    monkeypatch.chdir(tmp_path)
    for name in ("subjects", "delora_diffusion"):
        os.symlink(REPO / name, tmp_path / name)
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        code = main(
            [
                "--config",
                str(REPO / "configs" / "demo.yaml"),
                "--max_train_steps",
                "4",
                "--checkpointing_steps",
                "1",
                "--validation_steps",
                "2",
                "--num_class_images",
                "2",
                "--class_inference_steps",
                "2",
                "--validation_inference_steps",
                "2",
            ]
        )
    assert code == 0
    log = [r.getMessage() for r in caplog.records]
    made = next(i for i, m in enumerate(log) if m.startswith("generated 2 class images"))
    assert made < next(i for i, m in enumerate(log) if m.startswith("training delora"))  # said in the order it ran
    out = tmp_path / "outputs" / "demo"
    assert sorted(p.name for p in (out / "class_images").iterdir()) == ["class-00000.png", "class-00001.png"]
    assert read_adapter(out / ADAPTER_FILE).config.method == "delora"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]  # limit 2
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-000002.png", "step-000004.png"]
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    printed = capsys.readouterr().out
    for where in ("adapter.safetensors", "checkpoint-4", "step-000004.png", "README.md", "tensorboard --logdir"):
        assert where in printed
    assert no_temporary_files(out)


def test_card_metadata_names_a_hub_base_model_and_its_licence(tmp_path):
    from types import SimpleNamespace

    from delora_diffusion.training.model_card import card_metadata

    args, _ = build_args(
        [
            "--pretrained_model_name_or_path",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "--instance_data_dir",
            str(DEMO),
            "--instance_prompt",
            "a photo of sks toy",
        ]
    )
    yaml = card_metadata(args, DreamBoothTask(args), SimpleNamespace(validation_grids=[]), tmp_path)
    assert "base_model: stable-diffusion-v1-5/stable-diffusion-v1-5" in yaml
    assert "license: creativeml-openrail-m" in yaml and yaml.startswith("---\n")


def test_log_lines_stand_apart_from_the_progress_bar_in_a_log_file(tmp_path, tiny_sd):
    """stderr to a file: every log line on its own line (not glued to the bar's), and not a bar line per step."""
    argv = [
        sys.executable,
        str(REPO / "train_dreambooth.py"),
        *flags(tmp_path / "out", tiny_sd, max_train_steps=12, checkpointing_steps=4),
    ]
    with open(tmp_path / "stderr.log", "w") as stderr:
        done = subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=stderr, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    assert done.returncode == 0
    segments = [s.strip() for s in re.split(r"[\r\n]", (tmp_path / "stderr.log").read_text()) if s.strip()]
    saved = [s for s in segments if "saved" in s and "checkpoint-" in s]
    assert len(saved) == 3 and all(re.match(r"\d\d:\d\d:\d\d ", s) for s in saved), saved
    bar_lines = [s for s in segments if s.startswith("steps:")]
    assert len(bar_lines) <= 2 + 2 * len(saved) < 12, bar_lines  # start, end, and around each log line
