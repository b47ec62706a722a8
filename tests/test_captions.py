"""Per-image captions (.txt beside the images, or metadata.jsonl), caption dropout and tag shuffling: read,
logged, trained with, validated with, resumed exactly."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from train_helpers import reset_accelerate, tiny_trainer_flags

from delora_diffusion.adapters import read_adapter
from delora_diffusion.data.captions import CaptionError, CaptionPolicy, read_captions
from delora_diffusion.training.dreambooth import build_args, main
from delora_diffusion.training.dreambooth_task import DreamBoothTask

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = {0: "sks toy, orange body, on a table", 1: "sks toy, teal arms, studio light"}


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three subject images, the first two with .txt captions."""
    out = tmp_path / "subject"
    out.mkdir()
    for k, source in enumerate(sorted((REPO / "subjects" / "robot").iterdir())[:3]):
        shutil.copy(source, out / f"img{k}{source.suffix}")
        if k in CAPTIONS:
            (out / f"img{k}.txt").write_text(CAPTIONS[k] + "\n")
    return out


def _flags(out: Path, tiny_sd: Path, data: Path, *extra: str) -> list[str]:
    return tiny_trainer_flags(tiny_sd, out, *extra, data=data)


def test_txt_captions_and_metadata_jsonl(folder):
    images = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    found = read_captions(folder, images)
    assert found.texts == [CAPTIONS[0], CAPTIONS[1], None] and found.source == "*.txt files" and found.found == 2
    assert read_captions(folder, images, ".caption").source == "none"
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": images[2].name, "text": "a sks toy"}) + "\n")
    found = read_captions(folder, images)  # metadata.jsonl wins over the .txt files
    assert found.texts == [None, None, "a sks toy"] and found.source == "metadata.jsonl"


@pytest.mark.parametrize(
    "line,says",
    [
        ("{not json", "metadata.jsonl:2: not JSON"),
        ('{"file_name": "missing.png", "text": "x"}', "missing.png is not an image"),
        ('{"file_name": "img0.png"}', "expected string fields file_name and text"),
        ('{"file_name": "img0.png", "text": "again"}', r"metadata.jsonl:2: img0.png already has a caption at .*:1"),
        ('{"file_name": "img1.png", "text": "  "}', "metadata.jsonl:2: the caption of img1.png is empty"),
    ],
)
def test_bad_metadata_lines_name_the_file_and_line(folder, line, says):
    images = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": images[0].name, "text": "ok"}) + "\n" + line + "\n")
    with pytest.raises(CaptionError, match=says):
        read_captions(folder, images)


def test_an_empty_caption_file_stops_and_a_byte_order_mark_is_dropped(folder):
    images = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    (folder / "img0.txt").write_bytes("\ufeffsks toy, orange".encode())  # as Windows editors save UTF-8
    assert read_captions(folder, images).texts[0] == "sks toy, orange"
    (folder / "img1.txt").write_text(" \n")
    with pytest.raises(CaptionError, match=r"caption file .*img1.txt is empty"):
        read_captions(folder, images)


def test_dropout_and_shuffle_are_drawn_from_seed_epoch_and_index():
    policy = CaptionPolicy(dropout_rate=0.25, shuffle=True, keep_tokens=1)
    caption = "sks toy, a, b, c, d"
    drawn = [policy.apply(caption, 0, epoch, index) for epoch in range(20) for index in range(20)]
    assert drawn == [policy.apply(caption, 0, epoch, index) for epoch in range(20) for index in range(20)]
    assert 0.18 < drawn.count("") / len(drawn) < 0.32
    kept = [d for d in drawn if d]
    assert all(d.startswith("sks toy, ") and sorted(d.split(", ")[1:]) == ["a", "b", "c", "d"] for d in kept)
    assert len(Counter(kept)) > 10  # the order really changes
    assert CaptionPolicy().apply(caption, 0, 3, 4) == caption


def test_items_train_with_their_captions_and_the_log_says_so(folder, tiny_sd, tmp_path, caplog):
    args, _ = build_args(_flags(tmp_path / "out", tiny_sd, folder))
    task = DreamBoothTask(args)
    task.check_inputs(args)
    assert [task.instance.prompt_of(i) for i in range(3)] == [CAPTIONS[0], CAPTIONS[1], "a photo of sks toy"]
    assert task.validation_prompts(args) == [CAPTIONS[0]]  # no --validation_prompt: the data's own caption
    assert "captions from *.txt files for 2 of 3 images" in task.instance.caption_note

    with caplog.at_level("INFO", logger="delora_diffusion.training"):
        assert main(_flags(tmp_path / "out", tiny_sd, folder, "--max_train_steps", "2")) == 0
    said = [r.getMessage() for r in caplog.records if "captions from *.txt files for 2 of 3 images" in r.getMessage()]
    assert said and not any("warning" in line for line in said)  # which captions train is news, not a warning
    card = (tmp_path / "out" / "README.md").read_text()
    assert "2 of 3 images from *.txt files" in card
    assert read_adapter(tmp_path / "out" / "adapter.safetensors").metadata["extra"]["captions"] == "*.txt files"
    assert list((tmp_path / "out" / "validation").glob("step-*.png"))


def _adapter(path: Path) -> dict[str, torch.Tensor]:
    stored = read_adapter(path)
    return {f"{layer}.{k}": v for layer, tensors in stored.layers.items() for k, v in tensors.items()}


def test_shuffled_dropped_captions_resume_exactly_and_change_training(folder, tiny_sd, tmp_path):
    options = ["--shuffle_caption", "--keep_tokens", "1", "--caption_dropout_rate", "0.3"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(_flags(whole, tiny_sd, folder, *options, "--max_train_steps", "6")) == 0
    reset_accelerate()
    assert main(_flags(split, tiny_sd, folder, *options, "--max_train_steps", "3", "--checkpointing_steps", "3")) == 0
    reset_accelerate()
    assert (
        main(_flags(split, tiny_sd, folder, *options, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"))
        == 0
    )
    a, b = _adapter(whole / "adapter.safetensors"), _adapter(split / "adapter.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Without the caption files the same run trains on other prompts, so it ends elsewhere.
    reset_accelerate()
    for caption in folder.glob("*.txt"):
        caption.unlink()
    plain = tmp_path / "plain"
    assert main(_flags(plain, tiny_sd, folder, *options, "--max_train_steps", "6")) == 0
    c = _adapter(plain / "adapter.safetensors")
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 0


@pytest.mark.parametrize(
    "flags,says",
    [
        (["--keep_tokens", "1"], "--keep_tokens acts with --shuffle_caption"),
        (["--caption_dropout_rate", "1.5"], "--caption_dropout_rate must be in [0, 1]"),
        (["--caption_extension", "txt"], "must start with a dot"),
    ],
)
def test_caption_flag_errors(flags, says, folder, tiny_sd, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(_flags(tmp_path / "out", tiny_sd, folder, *flags))
    assert stop.value.code == 2 and says in capsys.readouterr().err


def test_a_broken_metadata_file_stops_the_trainer_naming_it(folder, tiny_sd, tmp_path, capsys):
    (folder / "metadata.jsonl").write_text("{oops\n")
    assert main(_flags(tmp_path / "out", tiny_sd, folder, "--max_train_steps", "1")) == 2
    assert "metadata.jsonl:1: not JSON" in capsys.readouterr().err
