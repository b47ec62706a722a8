"""Loss options practitioners expect: --noise_offset (the target noise gets a per-channel offset)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from train_helpers import reset_accelerate, tiny_trainer_flags

from delora_diffusion.training.loss import diffusion_loss


def _loss(offset: float, predict_plain_noise: bool) -> torch.Tensor:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))  # what the loss draws first

    def denoiser(noisy, t, **_):
        return (plain if predict_plain_noise else torch.zeros_like(plain),)

    return diffusion_loss(denoiser, scheduler, latents, {}, torch.Generator().manual_seed(0), noise_offset=offset)


def test_noise_offset_shifts_the_target_per_channel():
    assert float(_loss(0.0, True).max()) == 0.0  # no offset: the target is exactly the drawn noise
    with_offset = _loss(0.1, True)
    assert float(with_offset.min()) > 0  # the offset part is now in the target
    # Its size: offset² per element on average (one N(0,1) per example and channel, broadcast over pixels).
    assert float(with_offset.mean()) == pytest.approx(0.1**2, rel=0.9)
    assert torch.equal(_loss(0.0, False), _loss(0.0, False))


def _flags(out, tiny_sd, *extra):
    return tiny_trainer_flags(tiny_sd, out, *extra)


@pytest.mark.parametrize(
    "optimizer,rates", [("prodigy", {"adapter": 1.0, "lambda": 1.0}), ("lion", {"adapter": 2e-2, "lambda": 1e-3})]
)
def test_optimizers_train_with_lambda_in_its_own_group_and_resume_exactly(optimizer, rates, tiny_sd, tmp_path):
    from delora_diffusion.adapters import read_adapter
    from delora_diffusion.training.dreambooth import build_args, main
    from delora_diffusion.training.dreambooth_task import DreamBoothTask
    from delora_diffusion.training.loop import train

    args, _ = build_args(_flags(tmp_path / "whole", tiny_sd, "--optimizer", optimizer, "--max_train_steps", "4"))
    result = train(args, DreamBoothTask(args))
    last = result.history[-1]
    assert last["lr/adapter"] == pytest.approx(rates["adapter"]) and last["lr/lambda"] == pytest.approx(rates["lambda"])
    assert last["weight_distance/total"] > 0
    card = (result.output_dir / "README.md").read_text()
    assert {"prodigy": "| optimizer | Prodigy (prodigyopt)", "lion": "| optimizer | Lion (lion-pytorch)"}[
        optimizer
    ] in card
    reset_accelerate()
    split = tmp_path / "split"
    assert (
        main(_flags(split, tiny_sd, "--optimizer", optimizer, "--max_train_steps", "2", "--checkpointing_steps", "2"))
        == 0
    )
    reset_accelerate()
    assert (
        main(
            _flags(
                split, tiny_sd, "--optimizer", optimizer, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"
            )
        )
        == 0
    )
    a, b = read_adapter(result.adapter_path), read_adapter(split / "adapter.safetensors")
    assert all(torch.equal(v, b.layers[layer][k]) for layer, t in a.layers.items() for k, v in t.items())


def test_a_missing_optimizer_package_names_the_install(tiny_sd, tmp_path, monkeypatch, capsys):
    import importlib.util

    from delora_diffusion.training.dreambooth import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lion_pytorch" else real(name, *a)
    )
    with pytest.raises(SystemExit) as stop:
        main(_flags(tmp_path / "out", tiny_sd, "--optimizer", "lion"))
    assert stop.value.code == 2
    assert "--optimizer lion needs lion-pytorch: pip install lion-pytorch" in capsys.readouterr().err


def test_prodigy_refuses_two_rates(tiny_sd, tmp_path, capsys):
    from delora_diffusion.training.dreambooth import main

    with pytest.raises(SystemExit):
        main(
            _flags(
                tmp_path / "out",
                tiny_sd,
                "--optimizer",
                "prodigy",
                "--learning_rate",
                "1",
                "--lambda_learning_rate",
                "0.1",
            )
        )
    assert "must be equal" in capsys.readouterr().err


def test_adapter_ema_is_saved_beside_the_raw_adapter_and_resumes_exactly(tiny_sd, tmp_path):
    from delora_diffusion.adapters import read_adapter
    from delora_diffusion.training.dreambooth import main

    def tensors(path):
        stored = read_adapter(path)
        return {f"{layer}.{k}": v for layer, t in stored.layers.items() for k, v in t.items()}

    runs = {}
    for name, decay, steps in (("slow", "0.9", "4"), ("fast", "0.000001", "4")):
        out = tmp_path / name
        assert main(_flags(out, tiny_sd, "--adapter_ema_decay", decay, "--max_train_steps", steps)) == 0
        reset_accelerate()
        runs[name] = tensors(out / "adapter.safetensors"), tensors(out / "adapter_ema.safetensors")
    raw, ema = runs["slow"]
    assert (
        "| EMA of the adapter | decay 0.9: `adapter_ema.safetensors`" in (tmp_path / "slow" / "README.md").read_text()
    )
    assert raw.keys() == ema.keys() and max((raw[k] - ema[k]).abs().max().item() for k in raw) > 1e-4
    raw, ema = runs["fast"]  # a decay near 0 follows the latest weights: the average is updated every step
    assert max((raw[k] - ema[k]).abs().max().item() for k in raw) < 1e-5

    split = tmp_path / "split"
    assert (
        main(
            _flags(split, tiny_sd, "--adapter_ema_decay", "0.9", "--max_train_steps", "2", "--checkpointing_steps", "2")
        )
        == 0
    )
    reset_accelerate()
    assert (
        main(
            _flags(
                split,
                tiny_sd,
                "--adapter_ema_decay",
                "0.9",
                "--max_train_steps",
                "4",
                "--resume_from_checkpoint",
                "latest",
            )
        )
        == 0
    )
    resumed = tensors(split / "adapter_ema.safetensors")
    assert all(torch.equal(resumed[k], runs["slow"][1][k]) for k in resumed)
