"""``train_semantic.py``: the semantic-map task's flags, their checks, the run summary and the command.

Only light modules are imported at the top, so ``--help`` and flag errors answer before torch loads;
the task (``semantic_task.py``) and the loop are imported once the flags are valid.
"""

from __future__ import annotations

import argparse
import sys

from ..configfile import add_config_arg, parse_args
from ..data.semantic_files import DEFAULT_SPLIT, LAYOUTS
from ..inference.defaults import SEMANTIC
from ..models.control_kinds import CONTROL_LEARNING_RATES, CONTROLS
from .args import (
    add_adapter_args,
    add_bool_flag,
    add_model_args,
    add_optimization_args,
    add_run_args,
    apply_method_defaults,
    check_common_args,
)

PROG = "train_semantic.py"


def add_semantic_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("semantic-map data")
    g.add_argument(
        "--data_dir",
        help="data folder: ADE20K layout (images/<split>/, annotations/<split>/, "
        "prompt_<split>_blip.json) or generic (images/, maps/, captions.jsonl)",
    )
    g.add_argument("--layout", default="auto", choices=LAYOUTS, help="(default: %(default)s: detected)")
    g.add_argument("--split", default=DEFAULT_SPLIT, help="ADE20K layout split folder (default: %(default)s)")
    g.add_argument("--images_dir", help="images folder, relative to --data_dir (overrides the layout's)")
    g.add_argument("--maps_dir", help="maps folder, relative to --data_dir (overrides the layout's)")
    g.add_argument(
        "--captions_file",
        help="caption file, JSON lines or JSON, matched by file stem (default: the layout's, when present)",
    )
    g.add_argument("--palette", metavar="FILE", help="colours of class-id annotation maps (default: ADE20K's 150)")
    g.add_argument("--max_train_samples", type=int, help="train on the first N pairs only (sorted by name)")
    g.add_argument("--resolution", type=int, default=512, help="images and maps are resized and cropped to this")
    add_bool_flag(g, "center_crop", "center crop (default: random crop, the same for image and map)")
    add_bool_flag(g, "random_flip", "random horizontal flips (of image and map together)")
    add_bool_flag(
        g,
        "cache_latents",
        "encode every image once before training (needs --center_crop and no "
        "--random_flip; holds all latents in memory)",
    )
    g.add_argument(
        "--proportion_empty_prompts",
        type=float,
        default=0.0,
        help="train this fraction of examples with the empty prompt (default: %(default)s)",
    )
    g.add_argument(
        "--validation_maps",
        nargs="+",
        metavar="MAP",
        help="maps of the validation grid (one row each: the map, then --num_validation_images "
        "samples); prompts: --validation_prompt (one, or one per map), else the captions",
    )


def add_control_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("control")
    g.add_argument(
        "--control",
        default="hint",
        choices=CONTROLS,
        help="hint: the 8-conv hint encoder added after conv_in (the papers'); controlnet: a full "
        "diffusers ControlNet built from the UNet (heavier) (default: %(default)s)",
    )
    g.add_argument(
        "--control_learning_rate",
        type=float,
        help="learning rate of the control module (default: "
        + ", ".join(f"{k} {v:g}" for k, v in CONTROL_LEARNING_RATES.items())
        + ")",
    )
    g.add_argument(
        "--control_weight_decay",
        type=float,
        default=1e-2,
        help="AdamW weight decay of the control module (default: %(default)s)",
    )


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
    add_run_args(
        parser,
        helps={
            "validation_inference_steps": "DDIM steps of validation images (default: %(default)s)",
            "validation_prompt": "prompt(s) of the --validation_maps rows (default: their captions)",
        },
    )
    parser.set_defaults(output_dir="outputs/semantic", validation_guidance_scale=SEMANTIC.guidance)
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


def summary(result, args: argparse.Namespace) -> list[str]:
    """The lines printed when training ends (``result``: the loop's ``TrainResult``): outputs and the
    ``generate.py semantic`` command."""
    from .entry import summary_lines

    command = (
        f"python generate.py semantic --pretrained_model_name_or_path {args.pretrained_model_name_or_path} "
        f"--adapter_file {result.adapter_path} --maps MAPS --captions CAPTIONS "
        f"--height {args.resolution} --width {args.resolution} --output_dir {result.output_dir / 'samples'}"
    )
    return summary_lines(result, f"{args.adapter} + {args.control}", [("generate", command)])


def main(argv: list[str] | None = None) -> int:
    """``train_semantic.py``: parse flags (and ``--config``), train, print where everything is."""
    as_command = argv is None  # the process is this command: its wall time is the process's age
    argv = list(sys.argv[1:] if argv is None else argv)
    args, filled = build_args(argv)
    from .entry import run_trainer
    from .semantic_task import SemanticTask

    return run_trainer(
        PROG,
        argv,
        args,
        filled,
        SemanticTask(args),
        lambda result: summary(result, args),
        as_command=as_command,
    )
