"""Semantic map → image (the S2I experiments of OFT, ETHER and DeLoRA) as a plug-in of the training loop,
and the ``train_semantic.py`` CLI.

What is specific to this task lives here: (image, colour map, caption) data, a control module trained in
full beside the adapter — the hint encoder (default) or a diffusers ControlNet (``--control controlnet``,
``models/control.py``) with its own learning rate (``--control_learning_rate``) — the denoiser that runs
the UNet under that control, and validation rows of (map, samples). The text encoder and VAE stay frozen;
everything else (flags, checkpoints, resume, logging, DDP, mixed precision) is the shared loop's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..configfile import add_config_arg, parse_args
from ..data.semantic import DEFAULT_SPLIT, LAYOUTS, SemanticData, SemanticDataError, SemanticDataset, collate_semantic, find_pairs
from ..data.semantic_maps import MapError, default_palette, fit_map, open_map, read_palette
from ..inference.schedulers import set_scheduler
from ..inference.controlled import DEFAULT_GUIDANCE, control_pipeline, sample_semantic
from ..models.control import CONTROLS, MODULE_NAMES, ControlledUNet, build_control, control_metadata
from .args import (
    add_adapter_args, add_bool_flag, add_model_args, add_optimization_args, add_run_args, apply_method_defaults,
    check_common_args,
)
from .components import encode_prompts, sampling_pipeline
from .determinism import derive_seed
from .latents import batch_latents, cache_posteriors
from .entry import run_trainer, summary_lines
from .loop import TrainResult
from .task import RunContext, TrainingTask

PROG = "train_semantic.py"
# Our defaults, not the papers': the hint encoder is small and starts at zero; ControlNet's own paper trains at 1e-5.
CONTROL_LEARNING_RATES = {"hint": 1e-4, "controlnet": 1e-5}
VALIDATION_SCHEDULER = "ddim"


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
            data.pairs = data.pairs[:args.max_train_samples]
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
            raise SemanticDataError(f"--validation_prompt gives {len(prompts)} prompts for {len(maps)} "
                                    "--validation_maps: give one, or one per map")
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
        dataset = SemanticDataset(self.data.pairs, args.resolution, args.center_crop, args.random_flip, args.seed,
                                  self.palette)
        missing = self.data.missing_captions
        if missing:
            where = self.data.captions_file or "no caption file was found"
            run.notes.append(f"{missing} of {len(dataset)} images have no caption ({where}): trained with the empty "
                             "prompt")
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
        embeds = encode_prompts(run.components, prompts, run.device, run.weight_dtype)
        states = torch.stack([embeds[p] for p in prompts])
        return latents, {"encoder_hidden_states": states, "control_image": batch["control_image"]}

    def denoiser(self, unet, run: RunContext):
        return ControlledUNet(unet, self.kind, run.trainable[self.module_name])

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        return {self.module_name: self.control}

    def trainable_module_options(self) -> dict[str, dict]:
        return {self.module_name: {"lr": self.args.control_learning_rate,
                                   "weight_decay": self.args.control_weight_decay}}

    # --- validation and records -------------------------------------------------------------
    def validation_images(self, run: RunContext, unet, step: int):
        args = self.args
        control = run.accelerator.unwrap_model(run.trainable[self.module_name])
        pipeline = sampling_pipeline(run.components, unet)
        set_scheduler(pipeline, VALIDATION_SCHEDULER)
        pipeline = control_pipeline(pipeline, self.kind, control)
        seeds = [args.seed + j for j in range(args.num_validation_images)]
        rows = []
        for path, prompt in self.validation:
            control_map, _ = fit_map(open_map(path), args.resolution, args.resolution, self.palette)
            images = sample_semantic(pipeline, self.kind, control, [control_map] * len(seeds), [prompt] * len(seeds),
                                     seeds, num_inference_steps=args.validation_inference_steps,
                                     guidance_scale=args.validation_guidance_scale, height=args.resolution,
                                     width=args.resolution).images
            rows.append((prompt, [control_map, *images]))
        return rows

    def adapter_metadata(self) -> dict:
        args = self.args
        return {"control": control_metadata(self.kind, self.control), "resolution": args.resolution,
                "palette": args.palette or "ade20k"}

    def usage_lines(self, base_model: str) -> list[str]:
        side = self.args.resolution
        return ["from delora_diffusion.data.semantic_maps import fit_map, open_map",
                "from delora_diffusion.inference.controlled import load_semantic_pipeline, sample_semantic", "",
                f'pipe, kind, control, _ = load_semantic_pipeline("{base_model}", "adapter.safetensors")',
                f'control_map, _ = fit_map(open_map("map.png"), {side}, {side})  # colour map or ADE20K annotation',
                'image = sample_semantic(pipe, kind, control, [control_map], ["a caption"], seeds=[0]).images[0]',
                "# or: python generate.py semantic --adapter adapter.safetensors --maps MAPS --captions FILE ..."]

    def model_card_facts(self) -> dict[str, str]:
        args, data = self.args, self.data
        control = ("hint encoder (8 convs, added after conv_in)" if self.kind == "hint"
                   else "ControlNet (diffusers ControlNetModel.from_unet)")
        params = sum(p.numel() for p in self.control.parameters())
        facts = {"task": "semantic map → image",
                 "control": f"{control}, {params:,} parameters, lr {args.control_learning_rate:g}, "
                            f"weight decay {args.control_weight_decay:g}",
                 "data": f"{len(data.pairs)} pairs ({data.layout} layout): images `{data.images_dir}`, maps "
                         f"`{data.maps_dir}`, captions `{data.captions_file}`",
                 "captions missing": str(data.missing_captions)}
        crop = "centre crop" if args.center_crop else "random crop"
        facts["resolution"] = f"{args.resolution} px, {crop}{', random flips' if args.random_flip else ''}"
        if args.proportion_empty_prompts:
            facts["empty prompts"] = f"{args.proportion_empty_prompts:.0%} of examples"
        if self.validation:
            facts["validation rows"] = "map, then the samples"
        return facts


# --- command line -------------------------------------------------------------------------------

def add_semantic_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("semantic-map data")
    g.add_argument("--data_dir", help="data folder: ADE20K layout (images/<split>/, annotations/<split>/, "
                                      "prompt_<split>_blip.json) or generic (images/, maps/, captions.jsonl)")
    g.add_argument("--layout", default="auto", choices=LAYOUTS, help="(default: %(default)s: detected)")
    g.add_argument("--split", default=DEFAULT_SPLIT, help="ADE20K layout split folder (default: %(default)s)")
    g.add_argument("--images_dir", help="images folder, relative to --data_dir (overrides the layout's)")
    g.add_argument("--maps_dir", help="maps folder, relative to --data_dir (overrides the layout's)")
    g.add_argument("--captions_file", help="caption file, JSON lines or JSON, matched by file stem "
                                           "(default: the layout's, when present)")
    g.add_argument("--palette", metavar="FILE", help="colours of class-id annotation maps (default: ADE20K's 150)")
    g.add_argument("--max_train_samples", type=int, help="train on the first N pairs only (sorted by name)")
    g.add_argument("--resolution", type=int, default=512, help="images and maps are resized and cropped to this")
    add_bool_flag(g, "center_crop", "center crop (default: random crop, the same for image and map)")
    add_bool_flag(g, "random_flip", "random horizontal flips (of image and map together)")
    add_bool_flag(g, "cache_latents", "encode every image once before training (needs --center_crop and no "
                                      "--random_flip; holds all latents in memory)")
    g.add_argument("--proportion_empty_prompts", type=float, default=0.0,
                   help="train this fraction of examples with the empty prompt (default: %(default)s)")
    g.add_argument("--validation_maps", nargs="+", metavar="MAP",
                   help="maps of the validation grid (one row each: the map, then --num_validation_images "
                        "samples); prompts: --validation_prompt (one, or one per map), else the captions")


def add_control_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("control")
    g.add_argument("--control", default="hint", choices=CONTROLS,
                   help="hint: the 8-conv hint encoder added after conv_in (the papers'); controlnet: a full "
                        "diffusers ControlNet built from the UNet (heavier) (default: %(default)s)")
    g.add_argument("--control_learning_rate", type=float,
                   help="learning rate of the control module (default: " +
                        ", ".join(f"{k} {v:g}" for k, v in CONTROL_LEARNING_RATES.items()) + ")")
    g.add_argument("--control_weight_decay", type=float, default=1e-2,
                   help="AdamW weight decay of the control module (default: %(default)s)")


def semantic_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Semantic map → image: a DeLoRA / ETHER / LoRA / DoRA adapter on the UNet plus a hint encoder "
                    "(or ControlNet), trained on (image, map, caption) data (accelerate).",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    add_model_args(parser)
    add_semantic_data_args(parser)
    add_control_args(parser)
    add_adapter_args(parser)
    add_optimization_args(parser, helps={"train_batch_size": "examples per device per step (default: %(default)s)"})
    # validation follows generate.py semantic: DDIM, one row per --validation_maps
    add_run_args(parser, helps={"validation_inference_steps": "DDIM steps of validation images (default: %(default)s)",
                                "validation_prompt": "prompt(s) of the --validation_maps rows (default: their captions)"})
    parser.set_defaults(output_dir="outputs/semantic", validation_guidance_scale=DEFAULT_GUIDANCE)
    return parser


def check_semantic_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Errors for unusable values; fills ``--control_learning_rate``; returns what was filled."""
    if not args.data_dir:
        parser.error("--data_dir is required (a folder of images, maps and captions)")
    if args.resolution < 8 or args.resolution % 8:
        parser.error(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    if args.max_train_samples is not None and args.max_train_samples < 1:
        parser.error(f"--max_train_samples must be >= 1, got {args.max_train_samples}")
    if not 0.0 <= args.proportion_empty_prompts <= 1.0:
        parser.error(f"--proportion_empty_prompts must be in [0, 1], got {args.proportion_empty_prompts}")
    if args.cache_latents and (not args.center_crop or args.random_flip):
        parser.error("--cache_latents needs fixed views: add --center_crop and drop --random_flip")
    if args.control_weight_decay < 0:
        parser.error(f"--control_weight_decay must be >= 0, got {args.control_weight_decay}")
    if args.control_learning_rate is not None and args.control_learning_rate <= 0:
        parser.error(f"--control_learning_rate must be > 0, got {args.control_learning_rate}")
    if args.control_learning_rate is None:
        args.control_learning_rate = CONTROL_LEARNING_RATES[args.control]
        return [f"control_learning_rate={args.control_learning_rate:g} ({args.control} default)"]
    return []


def build_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parsed and checked flags (``--config`` applied, defaults filled) and what was filled."""
    parser = semantic_parser(PROG)
    args = parse_args(parser, argv)
    check_common_args(parser, args)
    filled = check_semantic_args(parser, args)
    return args, apply_method_defaults(args) + filled


def summary(result: TrainResult, args: argparse.Namespace) -> list[str]:
    """The lines printed when training ends: outputs and the ``generate.py semantic`` command."""
    command = (f"python generate.py semantic --pretrained_model_name_or_path {args.pretrained_model_name_or_path} "
               f"--adapter {result.adapter_path} --maps MAPS --captions CAPTIONS "
               f"--height {args.resolution} --width {args.resolution} --output_dir {result.output_dir / 'samples'}")
    return summary_lines(result, f"{args.adapter} + {args.control}", [("generate", command)])


def main(argv: list[str] | None = None) -> int:
    """``train_semantic.py``: parse flags (and ``--config``), train, print where everything is."""
    as_command = argv is None  # the process is this command: its wall time is the process's age
    argv = list(sys.argv[1:] if argv is None else argv)
    args, filled = build_args(argv)
    return run_trainer(PROG, argv, args, filled, SemanticTask(args), (SemanticDataError, MapError),
                       lambda result: summary(result, args), as_command=as_command)
