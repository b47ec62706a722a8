"""``delora-world-pretrain``: train the toy world's Stable Diffusion and judges from nothing.

- **sd** (about 100 min on 2 cores): render the pretraining scenes, then, data-parallel over two
  single-threaded processes, the VAE, the latents of every scene, and the UNet with its text encoder;
- **judges** (about 60-70 min on 2 cores): CLIP on the same renders and the DINO-style ViT on views of
  many instances, each view also as decoded by the sd stage's VAE, one judge per core;
- **cards**: the quality figures measured on fresh renders, written with the command and the logs
  into each folder's ``README.md``.

Everything is step-based and seeded: the same command gives the same weights on the same machine,
whatever else the machine is doing (only the wall time changes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .recipes import RECIPES, Recipe

VOCAB_TOKENS = 24
STAGES = ("sd", "judges", "cards")
JUDGES = ("clip", "dino")


class _Log:
    """Timestamped lines to a file and to stdout."""

    def __init__(self, path: Path, prefix: str):
        self.path, self.prefix, self.start = path, prefix, time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        line = f"[{self.prefix} {time.perf_counter() - self.start:6.0f} s] {message}"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print(line, flush=True)


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _save_transformers_fp16(model, out: Path) -> None:
    """Weights stored in float16 (half the bytes); the config keeps float32, the dtype they load in."""
    import torch

    model.to(torch.float16).save_pretrained(out)
    _load_as_float32(out / "config.json")
    model.to(torch.float32)


def _load_as_float32(config_file: Path) -> None:
    # transformers 5 loads in the dtype the config names (default: the stored one); float32 is what runs on a CPU
    config = json.loads(config_file.read_text())
    config["dtype"] = "float32"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _sd_rank(rank: int, world: int, work: str, recipe: dict, seed: int) -> None:
    """One data-parallel process of the sd stage: VAE, latents, UNet + text encoder; rank 0 writes ``work/sd``."""
    import torch

    from .autoencoder import latent_statistics, train_vae
    from .denoiser import MAX_TOKENS, assemble_pipeline, calibrate_identifiers, train_denoiser
    from .parallel import barrier
    from .resume import LoopCheckpoints
    from .vocabulary import IDENTIFIERS, build_tokenizer

    work, recipe = Path(work), Recipe(**recipe)
    log = _Log(work / "sd.log", "sd") if rank == 0 else (lambda message: None)
    images = np.load(work / "images.npy", mmap_mode="r")
    captions = [c[:2] for c in json.loads((work / "captions.json").read_text())]  # (template, detailed)
    # each finished phase is kept in the work folder, so a killed run restarts from the last one
    if (work / "vae" / "config.json").exists():
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(work / "vae")
        vae_history = json.loads((work / "vae_history.json").read_text())
        log("VAE loaded from the work folder of an earlier run")
    else:
        log(f"VAE: {recipe.vae_steps} steps of {recipe.vae_batch} crops on {world} processes")
        vae, vae_history = train_vae(
            np.asarray(images),
            np.load(work / "masks.npy"),
            recipe.vae_steps,
            seed,
            log,
            batch_size=recipe.vae_batch,
            lr=recipe.vae_lr,
        )
        if rank == 0:
            vae.save_pretrained(work / ".vae.tmp")
            (work / "vae_history.json").write_text(json.dumps(vae_history))
            os.replace(work / ".vae.tmp", work / "vae")
        barrier()
    if not all((work / f"latents-{r}.npy").exists() for r in range(world)):
        log("encoding every pretraining image")
        part = np.arange(rank, len(images), world)
        mean, std, _ = latent_statistics(vae, np.asarray(images[part]))
        np.save(work / f".latents-{rank}.tmp.npy", np.stack([mean, std]))
        os.replace(work / f".latents-{rank}.tmp.npy", work / f"latents-{rank}.npy")
        barrier()
    parts = [np.load(work / f"latents-{r}.npy") for r in range(world)]
    order = np.argsort(np.concatenate([np.arange(r, len(images), world) for r in range(world)]))
    mean = np.concatenate([p[0] for p in parts])[order]
    std = np.concatenate([p[1] for p in parts])[order]
    scaling = 1.0 / float(np.sqrt((mean.astype(np.float32) ** 2).mean() + (std.astype(np.float32) ** 2).mean()))
    log(f"latent scaling factor {scaling:.4f}")
    tokenizer = build_tokenizer(work / f"tokenizer-files-{rank}", MAX_TOKENS)
    log(f"UNet + text encoder: {recipe.unet_steps} steps of {recipe.unet_batch} on {world} processes")
    unet, text_encoder, unet_history = train_denoiser(
        mean,
        std,
        scaling,
        captions,
        tokenizer,
        recipe.unet_steps,
        seed,
        log,
        batch_size=recipe.unet_batch,
        lr=recipe.unet_lr,
        checkpoints=LoopCheckpoints(work / "checkpoints", "unet", recipe.checkpoint_every),
    )
    if rank == 0:
        calibrate_identifiers(text_encoder, tokenizer, IDENTIFIERS, seed)
        pipeline = assemble_pipeline(unet, vae, text_encoder, tokenizer, scaling)
        out = work / "sd"
        pipeline.to(torch.float16).save_pretrained(out)
        _load_as_float32(out / "text_encoder" / "config.json")
        (work / "sd_history.json").write_text(json.dumps({"vae": vae_history, "unet": unet_history}))
        log("pipeline written")


def _clip_worker(work: Path, recipe: Recipe, seed: int) -> None:
    from .judges import save_clip_processor, train_clip
    from .resume import LoopCheckpoints
    from .vocabulary import build_tokenizer

    log = _Log(work / "clip.log", "clip")
    images = np.load(work / "images.npy")
    captions = json.loads((work / "captions.json").read_text())
    settings = json.loads((work / "settings.json").read_text())
    tokenizer = build_tokenizer(work / "clip-tokenizer-files", VOCAB_TOKENS)
    log(f"CLIP: {recipe.clip_steps} steps of {recipe.clip_batch}")
    clip, history = train_clip(
        images,
        captions,
        settings,
        tokenizer,
        VOCAB_TOKENS,
        recipe.clip_steps,
        seed,
        log,
        batch_size=recipe.clip_batch,
        checkpoints=LoopCheckpoints(work / "checkpoints", "clip", recipe.checkpoint_every),
    )
    _save_transformers_fp16(clip, work / "clip")
    save_clip_processor(tokenizer, work / "clip")
    (work / "clip_history.json").write_text(json.dumps(history))
    log("CLIP written")


def _dino_worker(work: Path, recipe: Recipe, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL

    from .autoencoder import round_trip
    from .judges import save_dino_processor, train_dino
    from .resume import LoopCheckpoints
    from .views import instance_views

    log = _Log(work / "dino.log", "dino")
    log(f"rendering {recipe.dino_views} views of {recipe.dino_instances} instances")
    views = instance_views(recipe.dino_instances, recipe.dino_views, seed)
    # Every generated picture comes out of the toy VAE, whose blur and colour shifts alone move a judge
    # trained on crisp renders further than a change of instance (subject retrieval of decoded renders
    # fell from 100 % to 25 %): each view also enters as its VAE round trip, a positive of the original.
    # The sd stage's float32 VAE when its work folder is still there (so the judges can train beside the UNet,
    # as the shipped ones did), else the shipped float16 one.
    vae_dir = work / "vae" if (work / "vae" / "config.json").exists() else work.parent / "sd" / "vae"
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32)
    log("decoding every view through the toy VAE")
    decoded = round_trip(vae, views.reshape(-1, *views.shape[2:])).reshape(views.shape)
    views = np.concatenate([views, decoded], axis=1)
    log(f"DINO: {recipe.dino_steps} steps")
    dino, history = train_dino(
        views,
        recipe.dino_steps,
        seed,
        log,
        checkpoints=LoopCheckpoints(work / "checkpoints", "dino", recipe.checkpoint_every),
    )
    _save_transformers_fp16(dino, work / "dino")
    save_dino_processor(work / "dino")
    (work / "dino_history.json").write_text(json.dumps(history))
    log("DINO written")


def _run_judge(name: str, work: str, recipe: dict, seed: int) -> None:
    _single_thread()
    try:
        {"clip": _clip_worker, "dino": _dino_worker}[name](Path(work), Recipe(**recipe), seed)
    except BaseException:
        (Path(work) / f"{name}.failed").write_text(traceback.format_exc())
        raise


def _prepare_data(work: Path, recipe: Recipe, seed: int, log) -> None:
    if (work / "settings.json").exists():
        return
    from .dataset import pretraining_set

    log(f"rendering {recipe.images} pretraining scenes (seed {seed})")
    data = pretraining_set(recipe.images, seed, workers=recipe.processes)
    np.save(work / "images.npy", data.images)
    np.save(work / "masks.npy", data.masks)
    # per scene: the template caption, the alt-text one, and the alt-text description without the context
    (work / "captions.json").write_text(
        json.dumps([[s.caption(), s.detailed_caption(), s.detailed_caption(with_context=False)] for s in data.scenes])
    )
    (work / "settings.json").write_text(json.dumps([f"prop:{s.prop}" if s.prop else s.context for s in data.scenes]))


def _install(work: Path, name: str, out: Path, logs: list[str]) -> None:
    """Move a finished component from the work folder into ``out`` (replacing the old one) with its logs."""
    target = out / name
    staging = out / f".{name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(work / name, staging)
    with open(staging / "pretrain_log.txt", "w", encoding="utf-8") as handle:
        for log in logs:
            handle.write((work / log).read_text(encoding="utf-8"))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def pretrain(
    out: Path, recipe: Recipe, seed: int, stages: tuple[str, ...], command: str, judges: tuple[str, ...] = JUDGES
) -> dict | None:
    """Run ``stages`` into ``out/{sd,dino,clip}`` (the judges stage trains ``judges``); returns the quality
    figures when the cards stage ran."""
    from multiprocessing import get_context

    from .parallel import run_ranks

    out = Path(out)
    if "judges" in stages and "dino" in judges and "sd" not in stages and not (out / "sd" / "vae").is_dir():
        raise SystemExit(
            f"delora-world-pretrain: the DINO judge learns from pictures decoded by the toy VAE, and "
            f"{out / 'sd' / 'vae'} does not exist: run the sd stage first (--stages sd judges)"
        )
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    log = _Log(work / "main.log", "main")
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
    if "sd" in stages or "judges" in stages:
        started = time.perf_counter()
        _prepare_data(work, recipe, seed, log)
        timings["render_minutes"] = round((time.perf_counter() - started) / 60, 1)
    if "sd" in stages:
        started = time.perf_counter()
        run_ranks(_sd_rank, recipe.processes, str(work), asdict(recipe), seed)
        timings["sd_minutes"] = round((time.perf_counter() - started) / 60 + timings["render_minutes"], 1)
        _install(work, "sd", out, ["main.log", "sd.log"])
        log(f"sd stage done in {timings['sd_minutes']} min (rendering included)")
    if "judges" in stages:
        started = time.perf_counter()
        context = get_context("spawn")
        workers = [
            context.Process(target=_run_judge, args=(name, str(work), asdict(recipe), seed), name=name)
            for name in judges
        ]
        for process in workers:
            process.start()
        for process in workers:
            process.join()
        failed = [p.name for p in workers if p.exitcode != 0]
        if failed:
            details = "".join((work / f"{n}.failed").read_text() for n in failed if (work / f"{n}.failed").exists())
            raise RuntimeError(f"judge training failed ({', '.join(failed)}):\n{details}")
        timings["judges_minutes"] = round((time.perf_counter() - started) / 60, 1)
        for name in judges:
            _install(work, name, out, [f"{name}.log"])
        log(f"judges stage done in {timings['judges_minutes']} min")
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    quality = None
    if "cards" in stages:
        from .cards import measure_quality, write_cards

        quality = measure_quality(out, recipe, seed, log)
        write_cards(out, recipe, seed, command, quality, timings)
    shutil.rmtree(work, ignore_errors=True)
    return quality


def main(argv: list[str] | None = None) -> int:
    """delora-world-pretrain: render the toy world, train its Stable Diffusion and judges, write their cards."""
    from .assets import PRETRAINED_DIR

    parser = argparse.ArgumentParser(prog="delora-world-pretrain", description=main.__doc__, allow_abbrev=False)
    parser.add_argument("--out", default=str(PRETRAINED_DIR), help="folder of sd/, dino/, clip/ (default: %(default)s)")
    parser.add_argument(
        "--recipe",
        default="full",
        choices=sorted(RECIPES),
        help="full: the shipped models; smoke: every stage in a minute, to check the command",
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        default=list(STAGES),
        choices=STAGES,
        help="sd (~100 min on 2 cores), judges (~70 min), cards (quality figures) (default: all)",
    )
    parser.add_argument(
        "--judges",
        nargs="+",
        default=list(JUDGES),
        choices=JUDGES,
        help="the judges the judges stage trains, one per core (default: both)",
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    command = " ".join(["delora-world-pretrain", *(argv if argv is not None else sys.argv[1:])])
    quality = pretrain(Path(args.out), RECIPES[args.recipe], args.seed, tuple(args.stages), command, tuple(args.judges))
    if quality is not None:
        print(json.dumps(quality, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
