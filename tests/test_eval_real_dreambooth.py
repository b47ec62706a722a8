"""The CLI on real DreamBooth photos (tiny backbones): two subjects' photos posing as one subject's generations.

Needs the team's copy of the dataset (skipped when absent). The photos are linked, never copied into the repo.
"""

from __future__ import annotations

import json

from delora_diffusion.evaluation.cli import main

REAL_SUBJECT = "dog"  # scored against its 5 photos
POSING = {0: "red_cartoon", 1: "vase"}  # prompt index -> subject whose first photos pose as generations
PER_PROMPT = 2


def test_cli_on_real_dreambooth_photos(dreambooth_dataset, tiny_dino, tiny_clip, tmp_path, capsys):
    gen = tmp_path / "gen"
    for prompt_index, source in POSING.items():
        folder = gen / REAL_SUBJECT / f"{prompt_index:02d}"
        folder.mkdir(parents=True)
        for seed, photo in enumerate(sorted((dreambooth_dataset / source).glob("*.jpg"))[:PER_PROMPT]):
            (folder / f"{seed}.jpg").symlink_to(photo)
    # no metadata.jsonl: the prompts come from the DreamBooth templates and the dataset's class table

    def run(name, *extra):
        out = tmp_path / f"{name}.json"
        flags = [
            "dreambooth",
            "--real_dir",
            str(dreambooth_dataset),
            "--generated_dir",
            str(gen),
            "--dino_model",
            str(tiny_dino),
            "--clip_model",
            str(tiny_clip),
            "--out",
            str(out),
            "--no_progress",
            "--batch_size",
            "3",
            *extra,
        ]
        assert main(flags) == 0
        return json.loads(out.read_text())

    first = run("first", "--cache_dir", str(tmp_path / "cache"))
    cached = run("cached", "--cache_dir", str(tmp_path / "cache"))
    fresh = run("fresh", "--no_cache")

    n_real = len(list((dreambooth_dataset / REAL_SUBJECT).glob("*.jpg")))
    assert first["counts"] == {
        "generated_images": 4,
        "scored_images": 4,
        "black_skipped": 0,
        "real_images": n_real,
        "pairs": 4 * n_real,
        "subjects": 1,
        "scored_subjects": 1,
    }
    subject = first["per_subject"][0]
    assert subject["class_noun"] == "dog" and subject["n_real"] == n_real
    assert [row["clip_t_prompt"] for row in first["per_prompt"]] == ["a dog in the jungle", "a dog in the snow"]
    assert cached["cache"]["dino_hits"] == n_real and fresh["cache"]["dino_hits"] == 0
    for other in (cached, fresh):  # deterministic, with or without the cache
        assert other["per_image"] == first["per_image"]
        assert other["pooled"] == first["pooled"]
        assert other["mean_over_subjects"] == first["mean_over_subjects"]
    for metric in ("dino", "clip_i", "clip_t"):
        assert -1.0 <= first["pooled"][metric] <= 1.0
    assert "| dog | dog | 4 | 0 |" in capsys.readouterr().out
