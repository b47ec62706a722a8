"""The offline tiny models load through the ordinary from_pretrained path."""

from __future__ import annotations

import torch

from delora_diffusion.cli import make_tiny_main
from delora_diffusion.models.tiny import COMPLETE_MARKER, TINY_SD_RESOLUTION, ensure_tiny


def test_tiny_sd_loads_and_generates(tiny_sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    ids = pipe.tokenizer("a sks dog, 2 photos!").input_ids
    assert 1 not in ids[1:-1] and len(ids) == len("a sks dog, 2 photos!".replace(" ", "")) + 2  # no unknowns
    image = pipe("a sks dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (TINY_SD_RESOLUTION, TINY_SD_RESOLUTION)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size


def test_make_tiny_cli_reuses_complete_builds_only(tiny_root, tiny_sd, capsys):
    stamp = (tiny_sd / COMPLETE_MARKER).stat().st_mtime_ns
    assert make_tiny_main(["--out", str(tiny_root), "--only", "sd"]) == 0
    assert f"sd: {tiny_sd}" in capsys.readouterr().out
    assert (tiny_sd / COMPLETE_MARKER).stat().st_mtime_ns == stamp  # not rebuilt
    half = tiny_root / "half"
    (half / "sd").mkdir(parents=True)  # an interrupted build: no completion marker
    path = ensure_tiny("sd", half)
    assert (path / COMPLETE_MARKER).is_file() and (path / "unet" / "config.json").is_file()
