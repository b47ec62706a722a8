"""Semantic map → image (the S2I experiments of OFT, ETHER and DeLoRA) as a plug-in of the training loop
(its flags and CLI: ``semantic.py``).

What is specific to this task lives here: (image, colour map, caption) data, a control module trained in
full beside the adapter — the hint encoder (default) or a diffusers ControlNet (``--control controlnet``,
``models/control.py``) with its own learning rate (``--control_learning_rate``) — the denoiser that runs
the UNet under that control, and validation rows of (map, samples). The text encoder and VAE stay frozen;
everything else (flags, checkpoints, resume, logging, DDP, mixed precision) is the shared loop's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data.semantic import SemanticDataset, collate_semantic
from ..data.semantic_files import SemanticData, SemanticDataError, find_pairs
from ..data.semantic_maps import default_palette, fit_map, open_map, read_palette
from ..inference.controlled import control_pipeline, sample_semantic
from ..inference.defaults import SEMANTIC
from ..inference.schedulers import set_scheduler
from ..models.control import MODULE_NAMES, ControlledUNet, build_control, control_metadata
from .components import encode_prompts, sampling_pipeline, stack_text, unet_conditioning
from .determinism import derive_seed
from .latents import batch_latents, cache_posteriors
from .run_files import ADAPTER_FILE
from .task import RunContext, TrainingTask


class SemanticTask(TrainingTask):
    name = "semantic"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.kind = args.control
        self.module_name = MODULE_NAMES[self.kind]
        self.data: SemanticData | None = None
        self.dataset: SemanticDataset | None = None
        self.control: torch.nn.Module | None = None
        self.palette = default_palette()[1]
        self.validation: list[tuple[str, str]] = []  # (map file, prompt)

    # --- data -------------------------------------------------------------------------------
    def check_inputs(self, args: argparse.Namespace) -> None:
        if args.palette:
            self.palette = read_palette(args.palette)[1]
        data = find_pairs(args.data_dir, args.layout, args.split, args.images_dir, args.maps_dir, args.captions_file)
        if args.max_train_samples:
            data.pairs = data.pairs[: args.max_train_samples]
        self.data = data
        self.validation = self._validation_rows(args, data)

    def validation_prompts(self, args: argparse.Namespace) -> list[str]:
        """One per --validation_maps row: the row's --validation_prompt, else the map's caption."""
        return [prompt for _, prompt in self.validation]

    @staticmethod
    def _validation_rows(args: argparse.Namespace, data: SemanticData) -> list[tuple[str, str]]:
        maps = args.validation_maps or []
        prompts = args.validation_prompt
        if prompts and len(prompts) not in (1, len(maps)):
            raise SemanticDataError(
                f"--validation_prompt gives {len(prompts)} prompts for {len(maps)} "
                "--validation_maps: give one, or one per map"
            )
        if prompts and not maps:
            raise SemanticDataError("--validation_prompt needs --validation_maps (the maps to render it with)")
        captions = {pair.stem: pair.prompt for pair in data.pairs}
        rows = []
        for index, path in enumerate(maps):
            open_map(path)  # fail now, naming the file, rather than at the first validation
            if prompts:
                prompt = prompts[index] if len(prompts) > 1 else prompts[0]
            else:
                prompt = captions.get(Path(path).stem, "")
            rows.append((str(path), prompt))
        return rows

    def build_dataset(self, run: RunContext) -> SemanticDataset:
        args, components = self.args, run.components
        if self.data is None:
            self.check_inputs(args)
        dataset = SemanticDataset(
            self.data.pairs, args.resolution, args.center_crop, args.random_flip, args.seed, self.palette
        )
        missing = self.data.missing_captions
        if missing:
            where = self.data.captions_file or "no caption file was found"
            run.notes.append(
                f"{missing} of {len(dataset)} images have no caption ({where}): trained with the empty prompt"
            )
        if args.cache_latents:
            dataset.latent_cache = cache_posteriors([dataset.pixels(i) for i in range(len(dataset))], components.vae)
            run.notes.append(f"latents: {len(dataset)} images encoded once and cached (centre crop, no flip)")
        else:
            run.notes.append("latents: fresh VAE encode every step (--cache_latents to encode once)")
        # Built before the adapter is attached (a ControlNet copies the plain UNet's encoder), from its own
        # seed so its initialisation does not depend on what ran before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(args.seed, 3))
            self.control = build_control(self.kind, components.unet, components.vae_scale_factor)
        if self.kind == "controlnet" and args.gradient_checkpointing:
            self.control.enable_gradient_checkpointing()
        self.dataset = dataset
        return dataset

    def collate(self, items: list) -> dict:
        return collate_semantic(items)

    # --- conditioning -----------------------------------------------------------------------
    def model_inputs(self, batch: dict, run: RunContext, generator: torch.Generator):
        latents = batch_latents(batch, run.components.vae, generator)
        prompts = list(batch["prompts"])
        if self.args.proportion_empty_prompts:
            # Empty prompts teach the unconditional branch that classifier-free guidance samples with.
            drop = torch.rand(len(prompts), generator=generator, device=generator.device)
            prompts = ["" if d < self.args.proportion_empty_prompts else p for p, d in zip(prompts, drop.tolist())]
        text = stack_text(encode_prompts(run.components, prompts, run.device, run.weight_dtype), prompts)
        return latents, {**unet_conditioning(text), "control_image": batch["control_image"]}

    def denoiser(self, unet, run: RunContext):
        return ControlledUNet(unet, self.kind, run.trainable[self.module_name])

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        return {self.module_name: self.control}

    def trainable_module_options(self) -> dict[str, dict]:
        return {
            self.module_name: {"lr": self.args.control_learning_rate, "weight_decay": self.args.control_weight_decay}
        }

    # --- validation and records -------------------------------------------------------------
    def validation_images(self, run: RunContext, unet, step: int):
        args = self.args
        control = run.accelerator.unwrap_model(run.trainable[self.module_name])
        pipeline = sampling_pipeline(run.components, unet)
        set_scheduler(pipeline, SEMANTIC.scheduler)
        pipeline = control_pipeline(pipeline, self.kind, control)
        seeds = [args.seed + j for j in range(args.num_validation_images)]
        rows = []
        for path, prompt in self.validation:
            control_map, _ = fit_map(open_map(path), args.resolution, args.resolution, self.palette)
            images = sample_semantic(
                pipeline,
                self.kind,
                control,
                [control_map] * len(seeds),
                [prompt] * len(seeds),
                seeds,
                num_inference_steps=args.validation_inference_steps,
                guidance_scale=args.validation_guidance_scale,
                height=args.resolution,
                width=args.resolution,
            ).images
            rows.append((prompt, [control_map, *images]))
        return rows

    def adapter_metadata(self) -> dict:
        args = self.args
        return {
            "control": control_metadata(self.kind, self.control),
            "resolution": args.resolution,
            "palette": args.palette or "ade20k",
        }

    def usage_lines(self, base_model: str) -> list[str]:
        side = self.args.resolution
        return [
            "from delora_diffusion.data.semantic_maps import fit_map, open_map",
            "from delora_diffusion.inference.controlled import load_semantic_pipeline, sample_semantic",
            "",
            f'pipe, kind, control, _ = load_semantic_pipeline("{base_model}", "{ADAPTER_FILE}")',
            f'control_map, _ = fit_map(open_map("map.png"), {side}, {side})  # colour map or ADE20K annotation',
            'image = sample_semantic(pipe, kind, control, [control_map], ["a caption"], seeds=[0]).images[0]',
            "# or: python generate.py semantic --adapter adapter.safetensors --maps MAPS --captions FILE ...",
        ]

    def model_card_facts(self) -> dict[str, str]:
        args, data = self.args, self.data
        control = (
            "hint encoder (8 convs, added after conv_in)"
            if self.kind == "hint"
            else "ControlNet (diffusers ControlNetModel.from_unet)"
        )
        params = sum(p.numel() for p in self.control.parameters())
        facts = {
            "task": "semantic map → image",
            "control": f"{control}, {params:,} parameters, lr {args.control_learning_rate:g}, "
            f"weight decay {args.control_weight_decay:g}",
            "data": f"{len(data.pairs)} pairs ({data.layout} layout): images `{data.images_dir}`, maps "
            f"`{data.maps_dir}`, captions `{data.captions_file}`",
            "captions missing": str(data.missing_captions),
        }
        crop = "centre crop" if args.center_crop else "random crop"
        facts["resolution"] = f"{args.resolution} px, {crop}{', random flips' if args.random_flip else ''}"
        if args.proportion_empty_prompts:
            facts["empty prompts"] = f"{args.proportion_empty_prompts:.0%} of examples"
        if self.validation:
            facts["validation rows"] = "map, then the samples"
        return facts
