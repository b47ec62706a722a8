"""``train_dreambooth.py``: DreamBooth's flags, their checks, the run summary and the command.

Only light modules are imported at the top, so ``--help`` and flag errors answer before torch loads;
the task (``dreambooth_task.py``) and the loop are imported once the flags are valid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..adapters import METHOD_TABLE
from ..configfile import add_config_arg, parse_args
from ..images import background_colour
from .args import (
    add_adapter_args,
    add_bool_flag,
    add_model_args,
    add_optimization_args,
    add_run_args,
    apply_method_defaults,
    check_common_args,
)
from .compat import add_diffusers_args, check_diffusers_args
from .run_files import CLASS_IMAGES_DIR

PROG = "train_dreambooth.py"


def add_dreambooth_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DreamBooth data")
    g.add_argument("--instance_data_dir", help="folder of subject images (jpg, png, webp, bmp)")
    g.add_argument(
        "--instance_prompt",
        help='prompt naming the subject, e.g. "a photo of sks dog"; with captions, the prompt of images without one',
    )
    g.add_argument(
        "--caption_extension",
        default=".txt",
        metavar="EXT",
        help="per-image captions: metadata.jsonl in --instance_data_dir (file_name, text), else a file "
        "with this extension beside each image (default: %(default)s)",
    )
    g.add_argument(
        "--caption_dropout_rate",
        type=float,
        default=0.0,
        metavar="P",
        help="train this share of instance examples with the empty prompt (default: %(default)s)",
    )
    add_bool_flag(g, "shuffle_caption", "shuffle a caption's comma-separated tags every step (after --keep_tokens)")
    g.add_argument(
        "--keep_tokens",
        type=int,
        default=0,
        metavar="N",
        help="with --shuffle_caption: the first N tags stay in place, e.g. the identifier (default: 0)",
    )
    add_bool_flag(g, "with_prior_preservation", "train jointly on class images (DreamBooth's prior-preservation loss)")
    g.add_argument(
        "--class_data_dir", help="class images; missing ones are generated here (default: OUTPUT_DIR/class_images)"
    )
    g.add_argument("--class_prompt", help='prompt of the class, e.g. "a photo of dog"')
    g.add_argument("--prior_loss_weight", type=float, default=1.0)
    g.add_argument(
        "--num_class_images",
        type=int,
        default=100,
        help="class images wanted; missing ones are generated with the base model (default: %(default)s)",
    )
    g.add_argument("--sample_batch_size", type=int, default=4, help="batch size of class-image generation")
    g.add_argument(
        "--class_inference_steps",
        type=int,
        default=25,
        help="DPM-Solver++ steps of class-image generation (default: %(default)s)",
    )
    g.add_argument("--resolution", type=int, default=512, help="training images are resized and cropped to this")
    add_bool_flag(g, "center_crop", "center crop (default: random crop)")
    add_bool_flag(g, "random_flip", "random horizontal flips")
    add_bool_flag(
        g,
        "enable_bucket",
        "aspect-ratio buckets (kohya's): each image trains at the bucket of about "
        "RESOLUTION² pixels nearest its shape, each batch from one bucket",
    )
    g.add_argument(
        "--min_bucket_reso",
        type=int,
        default=256,
        metavar="PX",
        help="with --enable_bucket: shortest bucket side (default: %(default)s)",
    )
    g.add_argument(
        "--max_bucket_reso",
        type=int,
        default=1024,
        metavar="PX",
        help="with --enable_bucket: longest bucket side (default: %(default)s)",
    )
    g.add_argument(
        "--bucket_reso_steps",
        type=int,
        default=64,
        metavar="PX",
        help="with --enable_bucket: bucket sides are multiples of this (default: %(default)s)",
    )
    g.add_argument(
        "--alpha_background",
        type=background_colour,
        default="white",
        metavar="COLOUR",
        help="colour transparent pixels are composited on: a name or #RRGGBB (default: %(default)s)",
    )
    add_bool_flag(
        g,
        "train_text_encoder",
        "also put the adapter on the text encoder's attention and MLP linears (prompts are then encoded every step)",
    )
    g.add_argument(
        "--text_encoder_lr",
        type=float,
        metavar="LR",
        help="with --train_text_encoder: its adapter's learning rate (default: --learning_rate)",
    )
    add_bool_flag(
        g,
        "export_kohya",
        "also write lora_kohya.safetensors (kohya keys, for ComfyUI / A1111) beside "
        "the adapter and in each checkpoint (not DoRA)",
    )
    add_bool_flag(
        g,
        "cache_latents",
        "encode images and prompts once (default: on unless --random_flip or random crops of non-square "
        "images need a fresh encode each step; --no_cache_latents to force fresh encodes)",
        default=None,
    )


ONE_PER_RUN = ("--instance_data_dir", "--instance_prompt", "--class_data_dir", "--class_prompt")
BUCKET_FLAGS = ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps")


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
    add_diffusers_args(parser)
    return parser


def check_dreambooth_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.instance_data_dir:
        parser.error("--instance_data_dir is required (a folder of subject images)")
    if not args.instance_prompt:
        parser.error('--instance_prompt is required (e.g. "a photo of sks dog")')
    if args.resolution < 8 or args.resolution % 8:
        parser.error(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    if not 0.0 <= args.caption_dropout_rate <= 1.0:
        parser.error(f"--caption_dropout_rate must be in [0, 1], got {args.caption_dropout_rate}")
    if args.keep_tokens < 0:
        parser.error(f"--keep_tokens must be >= 0, got {args.keep_tokens}")
    if args.keep_tokens and not args.shuffle_caption:
        parser.error("--keep_tokens acts with --shuffle_caption: add it, or drop --keep_tokens")
    if args.text_encoder_lr is not None and not args.train_text_encoder:
        parser.error("--text_encoder_lr acts with --train_text_encoder: add it, or drop --text_encoder_lr")
    if args.text_encoder_lr is not None and args.text_encoder_lr <= 0:
        parser.error(f"--text_encoder_lr must be > 0, got {args.text_encoder_lr}")
    if args.enable_bucket:
        from ..data.buckets import BucketSpec

        problem = BucketSpec(
            args.resolution, args.min_bucket_reso, args.max_bucket_reso, args.bucket_reso_steps
        ).problem()
        if problem:
            parser.error(problem)
    else:
        changed = [f"--{n}" for n in BUCKET_FLAGS if getattr(args, n) != parser.get_default(n)]
        if changed:
            parser.error(f"{', '.join(changed)} act with --enable_bucket: add it, or drop them")
    if not args.caption_extension.startswith("."):
        parser.error(f"--caption_extension must start with a dot, e.g. .txt, got {args.caption_extension!r}")
    for name in ("num_class_images", "sample_batch_size", "class_inference_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.export_kohya and not METHOD_TABLE[args.adapter].kohya_export:
        parser.error(
            f"--export_kohya: {METHOD_TABLE[args.adapter].label} has no kohya form (kohya/LyCORIS DoRA files "
            "normalise another axis); "
            "use pytorch_lora_weights.safetensors (diffusers), which the trainer always writes"
        )
    if args.with_prior_preservation:
        if not args.class_prompt:
            parser.error('--with_prior_preservation needs --class_prompt (e.g. "a photo of dog")')
        if not args.class_data_dir:
            args.class_data_dir = str(Path(args.output_dir) / CLASS_IMAGES_DIR)


def summary(result, args: argparse.Namespace) -> list[str]:
    """The lines printed when training ends (``result``: the loop's ``TrainResult``): outputs and the
    ``generate.py`` command for this subject."""
    from .entry import summary_lines

    extra = [*result.exports.items(), ("class images", args.class_data_dir if args.with_prior_preservation else None)]
    subject = Path(args.instance_data_dir).name or "subject"
    noun = args.class_prompt.split()[-1] if args.class_prompt else "<class noun>"
    # The README's command: the 25 prompts once each, sampled as validation samples them.
    extra.append(
        (
            "generate",
            f"python generate.py --pretrained_model_name_or_path {args.pretrained_model_name_or_path} "
            f"--adapter_file {result.adapter_path} --subject {subject} --class_noun {noun} "
            f"--height {args.resolution} --width {args.resolution} --num_images_per_prompt 1 "
            f"--num_inference_steps {args.validation_inference_steps} "
            f"--guidance_scale {args.validation_guidance_scale:g} "
            f"--output_dir {result.output_dir / 'samples'}",
        )
    )
    return summary_lines(result, args.adapter, extra)


def build_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parsed and checked flags (``--config`` applied, method defaults filled) and what was filled."""
    parser = dreambooth_parser(PROG)
    given = [a.split("=", 1)[0] for a in argv]
    for flag in ONE_PER_RUN:
        if given.count(flag) > 1:  # argparse would keep the last one without a word
            parser.error(f"{flag} given {given.count(flag)} times: a run trains one subject (one folder)")
    args = parse_args(parser, argv)
    check_common_args(parser, args)
    check_dreambooth_args(parser, args)
    check_diffusers_args(parser, args)
    return args, apply_method_defaults(args)


def main(argv: list[str] | None = None) -> int:
    """``train_dreambooth.py``: parse flags (and ``--config``), train, print where everything is."""
    as_command = argv is None  # the process is this command: its wall time is the process's age
    argv = list(sys.argv[1:] if argv is None else argv)
    args, filled = build_args(argv)
    from .dreambooth_task import DreamBoothTask
    from .entry import run_trainer

    return run_trainer(
        PROG,
        argv,
        args,
        filled,
        DreamBoothTask(args),
        lambda result: summary(result, args),
        as_command=as_command,
    )


if __name__ == "__main__":  # python -m delora_diffusion.training.dreambooth (what delora-sweep launches)
    sys.exit(main())
