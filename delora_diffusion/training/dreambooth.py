"""DreamBooth (Ruiz et al., CVPR 2023) as a plug-in of the training loop, and the trainer's CLI.

What is DreamBooth-specific lives here: subject images under one prompt naming the subject, class
images under the class prompt (generated with the base model when missing) trained jointly with
the prior-preservation loss  L = mean(instance) + w · mean(class),  and validation prompts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..configfile import add_config_arg, parse_args
from ..data.dreambooth import CLASS, DreamBoothDataset, ImageDataError, ImageSet, collate_dreambooth
from ..images import background_colour
from ..inference.sampling import sample_images
from .args import (
    add_adapter_args, add_bool_flag, add_model_args, add_optimization_args, add_run_args, apply_method_defaults,
    check_common_args,
)
from .class_images import generate_class_images
from .components import encode_prompts, sampling_pipeline
from .latents import batch_latents, cache_posteriors
from .entry import run_trainer, summary_lines
from .loop import TrainResult
from .task import RunContext, TrainingTask

PROG = "train_dreambooth.py"


def validation_seeds(args: argparse.Namespace) -> list[int]:
    """Image j of every validation prompt uses seed ``--seed`` + j, as ``generate.py --seed`` does."""
    return [args.seed + j for j in range(args.num_validation_images)]


class DreamBoothTask(TrainingTask):
    name = "dreambooth"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prompt_embeds: dict[str, torch.Tensor] = {}
        self.dataset: DreamBoothDataset | None = None
        self.instance: ImageSet | None = None

    # --- data -------------------------------------------------------------------------------
    def check_inputs(self, args: argparse.Namespace) -> None:
        self.instance = ImageSet.load(args.instance_data_dir, args.instance_prompt, args.resolution,
                                      "instance_data_dir", background=args.alpha_background)

    def build_dataset(self, run: RunContext) -> DreamBoothDataset:
        args = self.args
        if self.instance is None:
            self.check_inputs(args)
        instance, class_images = self.instance, None
        if args.with_prior_preservation:
            with run.accelerator.main_process_first():
                if run.is_main_process:
                    self._fill_class_images(run)
            class_images = ImageSet.load(args.class_data_dir, args.class_prompt, args.resolution, "class_data_dir",
                                         limit=args.num_class_images, background=args.alpha_background)
        for images in (instance, class_images):
            run.notes += [f"warning: {note}" for note in (images.notes if images else [])]
        dataset = DreamBoothDataset(instance, class_images, args.resolution, args.center_crop, args.random_flip,
                                    args.seed)
        self._cache(run, dataset)
        self.dataset = dataset
        return dataset

    def _fill_class_images(self, run: RunContext) -> None:
        args, components = self.args, run.components
        components.unet.to(run.device)
        pipeline = sampling_pipeline(components)
        # The UNet is still fp32 here (the adapter is attached to full-precision weights), the text
        # encoder and VAE already in the mixed-precision dtype: autocast reconciles them.
        half = run.weight_dtype != torch.float32
        with torch.autocast(device_type=run.device.type, dtype=run.weight_dtype, enabled=half):
            written = generate_class_images(
                pipeline, args.class_data_dir, args.class_prompt, args.num_class_images, args.seed,
                batch_size=args.sample_batch_size, num_inference_steps=args.class_inference_steps,
                resolution=args.resolution)
        if written:
            run.notes.append(f"generated {len(written)} class images of “{args.class_prompt}” in {args.class_data_dir}")

    def _cache(self, run: RunContext, dataset: DreamBoothDataset) -> None:
        """Encode prompts once; encode images once too unless their pixels change between steps."""
        args, components = self.args, run.components
        reason = dataset.fresh_encode_reason()
        if args.cache_latents and reason:
            raise ImageDataError(f"--cache_latents cannot be used: {reason}")
        if args.cache_latents is False or (args.cache_latents is None and reason):
            why = reason or "--no_cache_latents"
            run.notes.append(f"latents: fresh VAE encode every step ({why})")
        else:
            dataset.latent_cache = {}
            for role, images in dataset.sets.items():
                pixels = [dataset.pixels(role, i, dataset.fixed_view(role, i)) for i in range(len(images))]
                dataset.latent_cache[role] = cache_posteriors(pixels, components.vae)
                images.release_images()
            count = sum(len(s) for s in dataset.sets.values())
            run.notes.append(f"latents: {count} images encoded once and cached (centre crop, no flip)")
        self.prompt_embeds = encode_prompts(components, [s.prompt for s in dataset.sets.values()], run.device,
                                            run.weight_dtype)

    def collate(self, items: list) -> dict:
        return collate_dreambooth(items)

    # --- conditioning and loss --------------------------------------------------------------
    def model_inputs(self, batch: dict, run: RunContext, generator: torch.Generator):
        latents = batch_latents(batch, run.components.vae, generator)
        states = torch.stack([self.prompt_embeds[p] for p in batch["prompts"]])
        return latents, {"encoder_hidden_states": states}

    def reduce_loss(self, per_example: torch.Tensor, batch: dict):
        prior = batch["is_prior"]
        if not bool(prior.any()):
            return per_example.mean(), {}
        instance_loss, prior_loss = per_example[~prior].mean(), per_example[prior].mean()
        loss = instance_loss + self.args.prior_loss_weight * prior_loss
        return loss, {"loss/instance": instance_loss, "loss/prior": prior_loss}

    # --- validation and records -------------------------------------------------------------
    def validation_images(self, run: RunContext, unet, step: int):
        args = self.args
        pipeline = sampling_pipeline(run.components, unet)
        seeds = validation_seeds(args)
        rows = []
        for prompt in args.validation_prompt or []:
            images = sample_images(pipeline, [prompt] * len(seeds), seeds,
                                   num_inference_steps=args.validation_inference_steps,
                                   guidance_scale=args.validation_guidance_scale,
                                   height=args.resolution, width=args.resolution).images
            rows.append((prompt, images))
        return rows

    def adapter_metadata(self) -> dict:
        args = self.args
        return {"instance_prompt": args.instance_prompt, "class_prompt": args.class_prompt,
                "resolution": args.resolution}

    def example_prompt(self) -> str | None:
        return self.args.instance_prompt

    def model_card_facts(self) -> dict[str, str]:
        args, dataset = self.args, self.dataset
        facts = {"instance prompt": f"“{args.instance_prompt}”",
                 "instance images": f"{len(dataset.sets['instance'])} from `{args.instance_data_dir}`"}
        if CLASS in dataset.sets:
            facts["prior preservation"] = (f"{len(dataset.sets[CLASS])} class images of “{args.class_prompt}”, "
                                           f"weight {args.prior_loss_weight:g}")
        else:
            facts["prior preservation"] = "off"
        crop = "centre crop" if args.center_crop else "random crop"
        facts["resolution"] = f"{args.resolution} px, {crop}{', random flips' if args.random_flip else ''}"
        return facts


def add_dreambooth_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DreamBooth data")
    g.add_argument("--instance_data_dir", help="folder of subject images (jpg, png, webp, bmp)")
    g.add_argument("--instance_prompt", help='prompt naming the subject, e.g. "a photo of sks dog"')
    add_bool_flag(g, "with_prior_preservation", "train jointly on class images (DreamBooth's prior-preservation loss)")
    g.add_argument("--class_data_dir", help="class images; missing ones are generated here "
                                            "(default: OUTPUT_DIR/class_images)")
    g.add_argument("--class_prompt", help='prompt of the class, e.g. "a photo of dog"')
    g.add_argument("--prior_loss_weight", type=float, default=1.0)
    g.add_argument("--num_class_images", type=int, default=100,
                   help="class images wanted; missing ones are generated with the base model (default: %(default)s)")
    g.add_argument("--sample_batch_size", type=int, default=4, help="batch size of class-image generation")
    g.add_argument("--class_inference_steps", type=int, default=25,
                   help="DPM-Solver++ steps of class-image generation (default: %(default)s)")
    g.add_argument("--resolution", type=int, default=512, help="training images are resized and cropped to this")
    add_bool_flag(g, "center_crop", "center crop (default: random crop)")
    add_bool_flag(g, "random_flip", "random horizontal flips")
    g.add_argument("--alpha_background", type=background_colour, default="white", metavar="COLOUR",
                   help="colour transparent pixels are composited on: a name or #RRGGBB (default: %(default)s)")
    add_bool_flag(g, "export_kohya", "also write lora_kohya.safetensors (kohya keys, for ComfyUI / A1111) beside "
                                     "the adapter and in each checkpoint (not DoRA)")
    add_bool_flag(g, "cache_latents",
                  "encode images and prompts once (default: on unless --random_flip or random crops of non-square "
                  "images need a fresh encode each step; --no_cache_latents to force fresh encodes)",
                  default=None)


def dreambooth_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="DreamBooth with a DeLoRA / ETHER / LoRA / DoRA adapter on the UNet (accelerate).",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    add_model_args(parser)
    add_dreambooth_args(parser)
    add_adapter_args(parser)
    add_optimization_args(parser)
    add_run_args(parser)
    return parser


def check_dreambooth_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.instance_data_dir:
        parser.error("--instance_data_dir is required (a folder of subject images)")
    if not args.instance_prompt:
        parser.error('--instance_prompt is required (e.g. "a photo of sks dog")')
    if args.resolution < 8 or args.resolution % 8:
        parser.error(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    for name in ("num_class_images", "sample_batch_size", "class_inference_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.export_kohya and args.adapter == "dora":
        parser.error("--export_kohya: DoRA has no kohya form (kohya/LyCORIS DoRA files normalise another axis); "
                     "use pytorch_lora_weights.safetensors (diffusers), which the trainer always writes")
    if args.with_prior_preservation:
        if not args.class_prompt:
            parser.error('--with_prior_preservation needs --class_prompt (e.g. "a photo of dog")')
        if not args.class_data_dir:
            args.class_data_dir = str(Path(args.output_dir) / "class_images")


def summary(result: TrainResult, args: argparse.Namespace) -> list[str]:
    """The lines printed when training ends: outputs and the ``generate.py`` command for this subject."""
    extra = [*result.exports.items(), ("class images", args.class_data_dir if args.with_prior_preservation else None)]
    subject = Path(args.instance_data_dir).name or "subject"
    noun = args.class_prompt.split()[-1] if args.class_prompt else "<class noun>"
    # The README's command: the 25 prompts once each, sampled as validation samples them.
    extra.append(("generate", f"python generate.py --pretrained_model_name_or_path {args.pretrained_model_name_or_path} "
                              f"--adapter {result.adapter_path} --subject {subject} --class_noun {noun} "
                              f"--height {args.resolution} --width {args.resolution} --num_images_per_prompt 1 "
                              f"--num_inference_steps {args.validation_inference_steps} "
                              f"--guidance_scale {args.validation_guidance_scale:g} "
                              f"--output_dir {result.output_dir / 'samples'}"))
    return summary_lines(result, args.adapter, extra)


def build_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parsed and checked flags (``--config`` applied, method defaults filled) and what was filled."""
    parser = dreambooth_parser(PROG)
    args = parse_args(parser, argv)
    check_common_args(parser, args)
    check_dreambooth_args(parser, args)
    return args, apply_method_defaults(args)


def main(argv: list[str] | None = None) -> int:
    """``train_dreambooth.py``: parse flags (and ``--config``), train, print where everything is."""
    as_command = argv is None  # the process is this command: its wall time is the process's age
    argv = list(sys.argv[1:] if argv is None else argv)
    args, filled = build_args(argv)
    return run_trainer(PROG, argv, args, filled, DreamBoothTask(args), (ImageDataError,),
                       lambda result: summary(result, args),
                       as_command=as_command)


if __name__ == "__main__":  # python -m delora_diffusion.training.dreambooth (what delora-sweep launches)
    sys.exit(main())
