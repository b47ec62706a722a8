"""Aspect-ratio buckets (--enable_bucket): the bucket set, batches of one bucket, crops of the bucket's shape,
latents cached per bucket, and a resumed bucketed run equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import reset_accelerate

from delora_diffusion.adapters import read_adapter
from delora_diffusion.data.buckets import BucketSpec, covering_size, nearest_bucket
from delora_diffusion.data.dreambooth import DreamBoothDataset, ImageDataError, ImageSet, collate_dreambooth
from delora_diffusion.training.determinism import BucketBatchSampler
from delora_diffusion.training.dreambooth import main
from delora_diffusion.training.dreambooth_task import DreamBoothTask

SHAPES = [(96, 48), (48, 96), (64, 64), (100, 40), (90, 45)]  # landscape, portrait, square, wide, landscape
SPEC = BucketSpec(32, 16, 64, 8)
BUCKET_FLAGS = ["--enable_bucket", "--min_bucket_reso", "16", "--max_bucket_reso", "64", "--bucket_reso_steps", "8"]


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "subject"
    out.mkdir()
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate(SHAPES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(out / f"{k}.png")
    return out


def test_sd15_buckets_are_kohyas_shapes():
    spec = BucketSpec(512, 256, 1024, 64)
    sizes = spec.sizes()
    assert (512, 512) in sizes and (640, 384) in sizes and (384, 640) in sizes and (1024, 256) in sizes
    assert all(w * h <= 512**2 and w % 64 == 0 and h % 64 == 0 and min(w, h) >= 256 for w, h in sizes)
    assert sizes == sorted(set(sizes)) and all((h, w) in sizes for w, h in sizes)
    assert nearest_bucket(3000, 2000, sizes) == (640, 384)
    assert nearest_bucket(2000, 3000, sizes) == (384, 640)
    assert nearest_bucket(1000, 1000, sizes) == (512, 512)
    assert covering_size(768, 512, (576, 384)) == (576, 384)
    assert covering_size(512, 512, (640, 384)) == (640, 640)


@pytest.mark.parametrize(
    "spec,says",
    [
        (BucketSpec(512, 256, 1024, 60), "multiple of 8"),
        (BucketSpec(512, 250, 1024, 64), "--min_bucket_reso 250 must be a multiple"),
        (BucketSpec(512, 576, 1024, 64), "--resolution 512 must lie between"),
    ],
)
def test_bucket_flag_problems(spec, says):
    assert says in spec.problem()


def test_batches_hold_one_bucket_and_every_item_once_per_epoch():
    buckets = [(8, 8), (16, 8), (8, 8), (8, 16), (16, 8), (8, 8), (8, 8)]
    sampler = BucketBatchSampler(buckets, 2, seed=5)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 2 + 1 + 1
        assert all(len({buckets[i] for i in batch}) == 1 for batch in batches)
        assert sorted(i for batch in batches for i in batch) == list(range(len(buckets)))
        assert batches == list(sampler)  # a pure function of (seed, epoch)
        epochs.append(batches)
    assert len({str(b) for b in epochs}) > 1


def _dataset(folder, tmp_path, class_count: int = 0) -> DreamBoothDataset:
    instance = ImageSet.load(folder, "a photo of sks toy", 32, "instance_data_dir")
    class_images = None
    if class_count:
        class_dir = tmp_path / "class"
        class_dir.mkdir()
        for k in range(class_count):
            Image.new("RGB", (32, 32), (k * 40, 0, 0)).save(class_dir / f"{k}.png")
        class_images = ImageSet.load(class_dir, "a photo of toy", 32, "class_data_dir")
    return DreamBoothDataset(instance, class_images, 32, center_crop=False, random_flip=False, seed=0, buckets=SPEC)


def test_items_are_cropped_to_their_instance_bucket_class_images_too(folder, tmp_path):
    dataset = _dataset(folder, tmp_path, class_count=2)
    assert dataset.item_sizes == [(40, 24), (24, 40), (32, 32), (48, 16), (40, 24)]
    for index, (w, h) in enumerate(dataset.item_sizes):
        item = dataset[index]
        assert item["instance"]["pixel_values"].shape == item["class"]["pixel_values"].shape == (3, h, w)
    batch = collate_dreambooth([dataset[0], dataset[4]])
    assert batch["pixel_values"].shape == (4, 3, 24, 40)
    # Random crops of images whose shape is not their bucket's need a fresh encode; the square class
    # images seen in a 40x24 bucket are among them.
    assert "not of their bucket's shape" in dataset.fresh_encode_reason()
    dataset.views.center_crop = True
    assert dataset.fresh_encode_reason() is None


def test_bucket_sides_must_suit_the_model():
    args = SimpleNamespace(
        enable_bucket=True, resolution=512, min_bucket_reso=256, max_bucket_reso=1024, bucket_reso_steps=8
    )
    sd15 = SimpleNamespace(
        vae=SimpleNamespace(config=SimpleNamespace(block_out_channels=(1, 2, 3, 4))),
        unet=SimpleNamespace(config=SimpleNamespace(down_block_types=("a", "b", "c", "d"))),
    )
    with pytest.raises(
        ImageDataError, match="--bucket_reso_steps 8: bucket sides of this model must be multiples of 64"
    ):
        DreamBoothTask(args)._buckets(SimpleNamespace(components=sd15))
    args.bucket_reso_steps = 64
    assert DreamBoothTask(args)._buckets(SimpleNamespace(components=sd15)).step == 64


def _flags(out: Path, tiny_sd: Path, data: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--instance_data_dir",
        str(data),
        "--instance_prompt",
        "a photo of sks toy",
        "--resolution",
        "32",
        "--rank",
        "2",
        "--train_batch_size",
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
        *BUCKET_FLAGS,
        *extra,
    ]


def _adapter(path: Path) -> dict[str, torch.Tensor]:
    stored = read_adapter(path)
    return {f"{layer}.{k}": v for layer, tensors in stored.layers.items() for k, v in tensors.items()}


@pytest.mark.parametrize("crop", [["--center_crop"], ["--random_flip"]], ids=["cached", "fresh-encode"])
def test_bucketed_runs_resume_exactly(crop, folder, tiny_sd, tmp_path, caplog):
    steps = 6  # four batches per epoch (buckets of 2, 1, 1 and 1 examples): the resume crosses an epoch
    whole, split = tmp_path / "whole", tmp_path / "split"
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        assert main(_flags(whole, tiny_sd, folder, *crop, "--max_train_steps", str(steps))) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "24x40 (1 example), 32x32 (1 example), 40x24 (2 examples), 48x16 (1 example)" in said
    assert ("latents: 5 crops encoded once" in said) == (crop == ["--center_crop"])
    reset_accelerate()
    assert main(_flags(split, tiny_sd, folder, *crop, "--max_train_steps", "3", "--checkpointing_steps", "3")) == 0
    reset_accelerate()
    assert (
        main(
            _flags(split, tiny_sd, folder, *crop, "--max_train_steps", str(steps), "--resume_from_checkpoint", "latest")
        )
        == 0
    )
    a, b = _adapter(whole / "adapter.safetensors"), _adapter(split / "adapter.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "aspect-ratio buckets 16-64 px" in (whole / "README.md").read_text()
    # Square crops of the same images train on other pixels, so the run ends elsewhere.
    reset_accelerate()
    square = tmp_path / "square"
    unbucketed = [
        f for f in _flags(square, tiny_sd, folder, *crop, "--max_train_steps", str(steps)) if f not in BUCKET_FLAGS
    ]
    caplog.clear()
    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        assert main(unbucketed) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "1 image(s) of" in said and "lose more than half to the square crop: 3.png" in said  # the 100x40 one
    c = _adapter(square / "adapter.safetensors")
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 0


def test_bucket_flag_errors_stop_before_work(folder, tiny_sd, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(_flags(tmp_path / "out", tiny_sd, folder, "--max_bucket_reso", "24"))
    assert stop.value.code == 2 and "--resolution 32 must lie between" in capsys.readouterr().err


def test_bucket_flags_without_enable_bucket_stop_instead_of_being_ignored(folder, tiny_sd, tmp_path, capsys):
    flags = [f for f in _flags(tmp_path / "out", tiny_sd, folder) if f != "--enable_bucket"]  # sizes stay
    with pytest.raises(SystemExit) as stop:
        main(flags)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--min_bucket_reso, --max_bucket_reso, --bucket_reso_steps act with --enable_bucket" in err
