"""DreamBooth data: image reading, errors naming files, deterministic views, class-image generation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from delora_diffusion.data.dreambooth import (
    CLASS,
    INSTANCE,
    DreamBoothDataset,
    ImageDataError,
    ImageSet,
    collate_dreambooth,
    list_images,
    load_image,
)
from delora_diffusion.training.dreambooth import main
from delora_diffusion.world.subjects import DEMO_SUBJECT
from delora_diffusion.world.views import write_views

REPO = Path(__file__).resolve().parents[1]


def save(image: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None].repeat(width, 1)
    return Image.fromarray(np.concatenate([x, y, 255 - x], axis=2))


def test_reads_jpg_png_webp_and_skips_other_files(tmp_path):
    for ext in ("jpg", "png", "webp"):
        save(gradient(40, 40), tmp_path / f"a.{ext}")
    (tmp_path / "notes.txt").write_text("not an image")
    save(gradient(8, 8), tmp_path / ".hidden.png")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "a.png", "a.webp"]
    assert all(load_image(p).mode == "RGB" for p in list_images(tmp_path))


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(gradient(60, 30), tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert Image.open(path).size == (60, 30)
    assert load_image(path).size == (30, 60)


@pytest.mark.parametrize("content", [b"this is not a png", None])
def test_corrupt_image_error_names_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    if content is None:  # a real PNG cut in half
        save(gradient(64, 64), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageDataError, match="broken.png"):
        load_image(path)


def test_empty_and_missing_folders_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match="contains no images"):
        ImageSet.load(tmp_path / "empty", "p", 32, "instance_data_dir")
    with pytest.raises(ImageDataError, match="does not exist"):
        ImageSet.load(tmp_path / "missing", "p", 32, "instance_data_dir")


def _cli(tmp_path, tiny_sd, instance_dir):
    return [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--instance_data_dir",
        str(instance_dir),
        "--instance_prompt",
        "a photo of sks toy",
        "--output_dir",
        str(tmp_path / "out"),
        "--resolution",
        "32",
        "--report_to",
        "none",
    ]


def test_cli_stops_on_corrupt_image_and_empty_folder(tmp_path, tiny_sd, capsys):
    data = tmp_path / "data"
    save(gradient(32, 32), data / "good.png")
    (data / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert main(_cli(tmp_path, tiny_sd, data)) == 2
    err = capsys.readouterr().err
    assert err.startswith("train_dreambooth.py: error:") and str(data / "bad.jpg") in err
    (tmp_path / "empty").mkdir()
    assert main(_cli(tmp_path, tiny_sd, tmp_path / "empty")) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(_cli(tmp_path, tmp_path / "no_model", REPO / "subjects" / "robot")) == 2
    assert f"base model folder {tmp_path / 'no_model'} does not exist" in capsys.readouterr().err


def _dataset(tmp_path, *, center_crop=False, random_flip=False, sizes=((48, 32), (32, 32), (32, 40))):
    for k, (w, h) in enumerate(sizes):
        save(gradient(w, h), tmp_path / "inst" / f"{k}.png")
    for k in range(5):
        save(gradient(32, 32).rotate(90 * k), tmp_path / "cls" / f"{k}.png")
    instance = ImageSet.load(tmp_path / "inst", "a sks toy", 32, "instance_data_dir")
    classes = ImageSet.load(tmp_path / "cls", "a toy", 32, "class_data_dir")
    return DreamBoothDataset(instance, classes, 32, center_crop, random_flip, seed=7)


def test_pairs_instance_and_class_images_and_collates_instance_first(tmp_path):
    dataset = _dataset(tmp_path, center_crop=True)
    assert len(dataset) == 5  # max(3 instance, 5 class)
    batch = collate_dreambooth([dataset[0], dataset[4]])
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["prompts"] == ["a sks toy", "a sks toy", "a toy", "a toy"]
    assert batch["is_prior"].tolist() == [False, False, True, True]
    assert torch.equal(batch["pixel_values"][1], dataset[1][INSTANCE]["pixel_values"])  # item 4 → instance 4 % 3
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1


def test_random_views_depend_only_on_seed_epoch_and_index(tmp_path):
    dataset = _dataset(tmp_path, random_flip=True)
    first = [dataset.view(INSTANCE, i) for i in range(5)]
    assert [dataset.view(INSTANCE, i) for i in range(5)] == first  # no hidden RNG state
    dataset.set_epoch(1)
    assert [dataset.view(INSTANCE, i) for i in range(5)] != first
    dataset.set_epoch(0)
    assert torch.equal(dataset[2][INSTANCE]["pixel_values"], dataset[2][INSTANCE]["pixel_values"])
    flips = {dataset.view(CLASS, i).flip for e in range(6) for i in range(5) if not dataset.set_epoch(e)}
    assert flips == {True, False}


def test_when_latents_can_be_cached(tmp_path):
    assert "random_flip" in _dataset(tmp_path / "a", random_flip=True, center_crop=True).fresh_encode_reason()
    reason = _dataset(tmp_path / "b").fresh_encode_reason()
    assert "non-square" in reason and "0.png" in reason and "1.png" not in reason
    assert _dataset(tmp_path / "c", center_crop=True).fresh_encode_reason() is None
    assert _dataset(tmp_path / "d", sizes=((32, 32), (64, 64))).fresh_encode_reason() is None  # square: crop is fixed


def test_committed_demo_images_are_the_ones_the_code_draws(tmp_path):
    committed = sorted((REPO / "subjects" / "robot").glob("*.png"))
    drawn = write_views(DEMO_SUBJECT, tmp_path)
    assert len(committed) == len(drawn) == 5
    for path, fresh in zip(committed, drawn):
        diff = np.abs(np.asarray(Image.open(path).convert("RGB"), dtype=int) - np.asarray(Image.open(fresh), dtype=int))
        assert diff.mean() < 1.0, path  # equal up to resampling differences between Pillow versions


def test_class_images_are_generated_seeded_and_resumable(tmp_path, tiny_sd):
    from delora_diffusion.training.class_images import generate_class_images
    from delora_diffusion.training.components import load_components, sampling_pipeline

    pipeline = sampling_pipeline(load_components(str(tiny_sd)))
    folder = tmp_path / "class"
    kw = dict(
        prompt="a photo of a toy", seed=0, batch_size=2, num_inference_steps=2, resolution=32, show_progress=False
    )
    written = generate_class_images(pipeline, folder, wanted=3, **kw)
    assert [p.name for p in written] == ["class-00000.png", "class-00001.png", "class-00002.png"]
    first = {p.name: np.asarray(Image.open(p)) for p in written}
    assert first["class-00000.png"].shape == (32, 32, 3)
    assert not np.array_equal(first["class-00000.png"], first["class-00001.png"])  # one seed per image

    # An interrupted run: image 1 missing, plus a user's own image. Existing files are kept untouched.
    (folder / "class-00001.png").unlink()
    shutil.copy(REPO / "subjects" / "robot" / "view-0.png", folder / "mine.png")
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    written = generate_class_images(pipeline, folder, wanted=5, **kw)
    assert sorted(p.name for p in written) == ["class-00001.png", "class-00003.png"]
    for name, mtime in before.items():
        assert (folder / name).stat().st_mtime_ns == mtime
    regenerated = np.asarray(Image.open(folder / "class-00001.png")).astype(int)
    assert np.array_equal(regenerated, first["class-00001.png"])  # its own seed: batch-independent
    assert generate_class_images(pipeline, folder, wanted=5, **kw) == []
    assert len(list_images(folder)) == 5 and not list(folder.glob(".*"))


def test_real_dreambooth_subject_loads_and_caches(dreambooth_dataset):
    """The dataset's photos (large JPEGs, some with EXIF orientation) load, and being square they can be
    cached even with random crops."""
    images = ImageSet.load(dreambooth_dataset / "dog", "a photo of sks dog", 64, "instance_data_dir")
    assert len(images) >= 4 and all(size == (64, 64) for size in images.sizes)
    dataset = DreamBoothDataset(images, None, 64, center_crop=False, random_flip=False, seed=0)
    assert dataset.fresh_encode_reason() is None
    assert dataset[0][INSTANCE]["pixel_values"].shape == (3, 64, 64)
