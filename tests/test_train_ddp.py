"""Two real DDP processes (gloo, CPU) through `accelerate launch`: ranks stay in sync, rank 0 alone writes."""

from __future__ import annotations

import re
from pathlib import Path

from train_helpers import launch_two_processes

from delora_diffusion.adapters import load_adapter
from delora_diffusion.models.loading import load_unet
from delora_diffusion.training.metrics import adapter_fingerprint

REPO = Path(__file__).resolve().parents[1]


def test_two_processes_end_with_identical_adapters_and_only_rank_0_writes(tmp_path, tiny_sd):
    out, classes = tmp_path / "out", tmp_path / "class_images"
    code, log, found = launch_two_processes(
        "train_dreambooth.py",
        [
            "--pretrained_model_name_or_path",
            str(tiny_sd),
            "--instance_data_dir",
            str(REPO / "subjects" / "robot"),
            "--instance_prompt",
            "a photo of sks toy",
            "--with_prior_preservation",
            "--class_prompt",
            "a photo of a toy",
            "--class_data_dir",
            str(classes),
            "--num_class_images",
            "3",
            "--class_inference_steps",
            "2",
            "--resolution",
            "32",
            "--center_crop",
            "--rank",
            "2",
            "--train_batch_size",
            "1",
            "--max_train_steps",
            "3",
            "--checkpointing_steps",
            "2",
            "--validation_prompt",
            "a sks toy",
            "--num_validation_images",
            "1",
            "--validation_inference_steps",
            "2",
            "--output_dir",
            str(out),
        ],
        tmp_path,
    )
    assert code == 0, log[-4000:]

    # Both ranks trained: two fingerprints, equal, and equal to the file rank 0 wrote.
    assert set(found) == {"0", "1"} and found["0"] == found["1"], found
    unet = load_unet(str(tiny_sd))
    load_adapter(unet, out / "adapter.safetensors")
    assert adapter_fingerprint(unet) == found["0"]

    # Rank 0 alone wrote: one summary, TensorBoard events from one process, rank 0's state files only,
    # exactly the class images asked for, no temporary leftovers.
    assert log.count("Done: 3 steps of delora") == 1
    # The summary's time is the command's (imports included), at least the time after imports.
    times = re.search(r"Done: 3 steps of delora in (\d+)m(\d+)s \((\d+)m(\d+)s after imports\)", log).groups()
    wall, after_imports = int(times[0]) * 60 + int(times[1]), int(times[2]) * 60 + int(times[3])
    assert wall >= after_imports and wall > 0
    writers = {p.name.split(".")[-2] for p in (out / "logs").rglob("events.out.tfevents.*")}  # ...<pid>.<n>
    assert len(writers) == 1
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "adapter.safetensors").is_file() and (checkpoint / "random_states_0.pkl").is_file()
    assert not list(checkpoint.glob("random_states_1*"))
    assert sorted(p.name for p in classes.iterdir()) == ["class-00000.png", "class-00001.png", "class-00002.png"]
    assert [p.name for p in (out / "validation").iterdir()] == ["step-000003.png"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def test_two_processes_with_buckets_and_text_encoder_adapters_stay_in_sync(tmp_path, tiny_sd):
    """Batches of uneven size (aspect-ratio buckets) sharded over two ranks, text-encoder adapters wrapped by
    DDP and LoRA dropout: both ranks end with the same adapter, text encoder included."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "subject"
    data.mkdir()
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate([(96, 48), (48, 96), (64, 64), (100, 40), (90, 45)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(data / f"{k}.png")
    out = tmp_path / "out"
    code, log, found = launch_two_processes(
        "train_dreambooth.py",
        [
            "--pretrained_model_name_or_path",
            str(tiny_sd),
            "--instance_data_dir",
            str(data),
            "--instance_prompt",
            "a photo of sks toy",
            "--resolution",
            "32",
            "--enable_bucket",
            "--min_bucket_reso",
            "16",
            "--max_bucket_reso",
            "64",
            "--bucket_reso_steps",
            "8",
            "--random_flip",
            "--train_text_encoder",
            "--adapter",
            "lora",
            "--lora_dropout",
            "0.1",
            "--rank",
            "2",
            "--train_batch_size",
            "2",
            "--max_train_steps",
            "4",
            "--report_to",
            "none",
            "--validation_steps",
            "0",
            "--output_dir",
            str(out),
        ],
        tmp_path,
    )
    assert code == 0, log[-4000:]
    assert set(found) == {"0", "1"} and found["0"] == found["1"], found


def test_a_failure_of_the_main_process_in_work_the_others_wait_for_stops_every_process(tmp_path):
    """The main process converts a single file while the other waits; the conversion fails: both processes stop
    with an error saying why (with accelerate's own main_process_first the other waited at a barrier until the
    launcher killed it, without a word)."""
    import torch
    from safetensors.torch import save_file

    broken = tmp_path / "broken.safetensors"  # an SD 1.x file by its tensor names, but nothing converts from it
    save_file(
        {"model.diffusion_model.x": torch.zeros(1), "cond_stage_model.transformer.y": torch.zeros(1)}, str(broken)
    )
    code, log, _ = launch_two_processes(
        "train_dreambooth.py",
        [
            "--pretrained_model_name_or_path",
            str(broken),
            "--instance_data_dir",
            str(REPO / "subjects" / "robot"),
            "--instance_prompt",
            "a photo of sks toy",
            "--resolution",
            "32",
            "--max_train_steps",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        tmp_path,
        timeout=240,
    )
    assert code != 0
    assert f"{broken} could not be converted" in log  # the main process's own error
    assert "error: the main process stopped (ModelFamilyError:" in log, log[-3000:]  # the other's
