"""A killed pretraining loop resumes from its last checkpoint to the weights of an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from delora_diffusion.world import denoiser, judges
from delora_diffusion.world.resume import LoopCheckpoints


def _quiet(message: str) -> None:
    pass


def _kill_at(monkeypatch, owner, name: str, call: int) -> None:
    """Make ``owner.name`` raise KeyboardInterrupt (as a kill would stop the loop) on its ``call``-th call."""
    original, calls = getattr(owner, name), []

    def dying(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, dying)


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_a_killed_judge_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    views = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32, 3), dtype=np.uint8)
    reference, _ = judges.train_dino(views, 6, 0, _quiet, batch_instances=4)
    _kill_at(monkeypatch, judges._Progress, "step", 5)
    with pytest.raises(KeyboardInterrupt):
        judges.train_dino(views, 6, 0, _quiet, batch_instances=4, checkpoints=LoopCheckpoints(tmp_path, "dino", 2))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dino-4-rank0.pt"]  # older ones dropped
    resumed, history = judges.train_dino(
        views, 6, 0, _quiet, batch_instances=4, checkpoints=LoopCheckpoints(tmp_path, "dino", 2)
    )
    _assert_same(reference, resumed)


def test_a_killed_unet_phase_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from delora_diffusion.world.vocabulary import build_tokenizer

    rng = np.random.default_rng(0)
    mean = rng.normal(size=(6, 4, 8, 8)).astype(np.float16)
    std = np.full_like(mean, 0.1)
    captions = [
        ["a photo of a toy", "a photo of a striped orange toy with teal parts"],
        ["a teapot in the snow", "a white teapot with red parts in the snow"],
    ] * 3
    tokenizer = build_tokenizer(tmp_path / "tokenizer", denoiser.MAX_TOKENS)
    run = dict(
        latent_mean=mean,
        latent_std=std,
        scaling=1.0,
        captions=captions,
        tokenizer=tokenizer,
        steps=6,
        seed=0,
        log=_quiet,
        batch_size=4,
    )
    reference = denoiser.train_denoiser(**run)
    _kill_at(monkeypatch, denoiser._Ema, "update", 5)
    with pytest.raises(KeyboardInterrupt):
        denoiser.train_denoiser(**run, checkpoints=LoopCheckpoints(tmp_path / "ckpt", "unet", 2))
    monkeypatch.undo()
    resumed = denoiser.train_denoiser(**run, checkpoints=LoopCheckpoints(tmp_path / "ckpt", "unet", 2))
    _assert_same(reference[0], resumed[0])
    _assert_same(reference[1], resumed[1])


def test_the_pretraining_command_runs_every_stage_and_cleans_up(tmp_path):
    from delora_diffusion.world.pretrain import main

    out = tmp_path / "world"
    assert main(["--recipe", "smoke", "--out", str(out)]) == 0
    for name in ("sd/model_index.json", "sd/README.md", "dino/config.json", "clip/config.json", "quality.json"):
        assert (out / name).is_file(), name
    assert "delora-world-pretrain --recipe smoke" in (out / "dino" / "README.md").read_text()
    quality = json.loads((out / "quality.json").read_text())
    for role in ("dino", "clip"):  # the figures the cards must carry, whatever a smoke model scores
        assert set(quality["judges"]["instance_over_backdrop"][role]) == {
            "same_instance_elsewhere",
            "other_instance_same_backdrop",
            "share_ranked_right",
        }
    assert {"dino_retrieval_accuracy_decoded_plain", "dino_retrieval_accuracy_decoded_patterned"} <= set(
        quality["judges"]
    )
    assert quality["text_encoder"]["token"] == "sks" and quality["text_encoder"]["identifier_vs_article"] > 0
    assert "CLIP-I, instance over backdrop" in (out / "clip" / "README.md").read_text()
    assert not (out / ".work").exists()  # the renders and checkpoints of the run are gone
