"""The trainers' command-line flags, optionally read from a YAML file (``--config configs/X.yaml``).

Flag names follow diffusers' ``train_dreambooth_lora.py`` so its users keep their commands. The YAML
file holds ``flag_name: value`` pairs; every value goes through the same argparse types and choices
as the command line, flags given explicitly override the file, and an unknown key is an error that
names it. Groups are separate functions so another trainer (e.g. semantic map → image) reuses the
model, adapter, optimisation and run groups and adds only its own data group.
"""

from __future__ import annotations

import argparse

from ..adapters import DEFAULT_TARGETS, METHODS, default_weight_decay
from ..configfile import ConfigFileError, add_config_arg, parse_args  # noqa: F401  (re-exported for trainers)

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")

# Learning rates of the DreamBooth experiments in the DeLoRA (ICLR 2025) and ETHER (ICML 2024) papers.
PAPER_LEARNING_RATES = {"delora": 2e-2, "lora": 6e-4, "dora": 6e-4, "ether": 6e-3, "etherplus": 6e-3}
PAPER_LAMBDA_LEARNING_RATE = 1e-3


class UsageError(ValueError):
    """A flag value found unusable once the run starts (e.g. a tracker that is not installed)."""


def add_bool_flag(group, name: str, help: str, default: bool | None = False) -> None:
    """``--name`` turns the option on, ``--no_name`` off (to override a config file)."""
    group.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=help)
    group.add_argument(f"--no_{name}", dest=name, action="store_false", default=default, help=argparse.SUPPRESS)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("base model")
    g.add_argument("--pretrained_model_name_or_path", metavar="PATH_OR_ID",
                   help="diffusers pipeline folder or hub id, e.g. runwayml/stable-diffusion-v1-5 "
                        "(outputs/tiny/sd is built on first use)")
    g.add_argument("--revision", help="hub revision of the base model")
    g.add_argument("--variant", help="weight variant of the base model files, e.g. fp16")


def add_adapter_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("adapter")
    g.add_argument("--adapter", default="delora", choices=METHODS, help="method (default: %(default)s)")
    g.add_argument("--rank", type=int, default=16, help="r of DeLoRA / LoRA / DoRA (default: %(default)s)")
    g.add_argument("--target_modules", nargs="+", default=list(DEFAULT_TARGETS), metavar="NAME",
                   help="nn.Linear module names or dotted suffixes to adapt, or one regex matching whole names "
                        "(default: %(default)s)")
    g.add_argument("--adapter_init", default="residual", choices=("residual", "zero_b"),
                   help="DeLoRA initialisation (default: %(default)s)")
    g.add_argument("--delora_lambda", type=float, default=15.0,
                   help="initial DeLoRA strength λ (default: %(default)s)")
    g.add_argument("--lora_alpha", type=float, help="LoRA/DoRA α (default: α = rank)")
    g.add_argument("--ether_blocks", type=int, default=4,
                   help="number of diagonal blocks of the ETHER/ETHER+ reflections (default: %(default)s)")
    add_bool_flag(g, "ether_one_sided", "ETHER+: transform the input side only")


def add_optimization_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=1,
                   help="instance images per device per step (prior preservation adds as many class images) "
                        "(default: %(default)s)")
    g.add_argument("--max_train_steps", type=int, help="optimizer steps; overrides --num_train_epochs")
    g.add_argument("--num_train_epochs", type=int, default=1, help="used when --max_train_steps is not given")
    g.add_argument("--learning_rate", type=float,
                   help="adapter learning rate (default: the paper's for the method: " +
                        ", ".join(f"{m} {lr:g}" for m, lr in PAPER_LEARNING_RATES.items()) + ")")
    g.add_argument("--lambda_learning_rate", type=float,
                   help=f"DeLoRA λ learning rate (default: {PAPER_LAMBDA_LEARNING_RATE:g})")
    g.add_argument("--lambda_weight_decay", type=float, default=0.0, help="AdamW weight decay of λ (default: 0)")
    g.add_argument("--adam_weight_decay", type=float,
                   help="AdamW weight decay of the adapter (default: 0 for ETHER/ETHER+, 1e-2 otherwise)")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    add_bool_flag(g, "scale_lr", "multiply the learning rates by accumulation steps × batch size × processes")
    g.add_argument("--lr_scheduler", default="constant", choices=LR_SCHEDULERS, help="(default: %(default)s)")
    g.add_argument("--lr_warmup_steps", type=int, default=0, help="(default: %(default)s)")
    g.add_argument("--lr_num_cycles", type=int, default=1, help="cycles of cosine_with_restarts")
    g.add_argument("--lr_power", type=float, default=1.0, help="power of the polynomial scheduler")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    add_bool_flag(g, "gradient_checkpointing", "recompute UNet activations in the backward pass (saves memory)")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping; 0 turns it off")
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"),
                   help="frozen weights in this dtype, adapter weights stay fp32 (default: accelerate's config)")
    add_bool_flag(g, "allow_tf32", "allow TF32 matmuls on Ampere GPUs")
    g.add_argument("--snr_gamma", type=float, help="Min-SNR loss weighting γ (Hang et al. 2023); 5 is typical")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order, noise (default: 0)")
    g.add_argument("--dataloader_num_workers", type=int, default=0)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output, logging, checkpoints, validation")
    g.add_argument("--output_dir", default="outputs/dreambooth", help="(default: %(default)s)")
    g.add_argument("--logging_dir", default="logs", help="TensorBoard folder, relative to --output_dir")
    g.add_argument("--report_to", default="tensorboard",
                   help="accelerate tracker: tensorboard, wandb, all or none (default: %(default)s)")
    g.add_argument("--log_weight_distance_steps", type=int, default=10,
                   help="log ‖W_ft − W_0‖_F (sum and per layer) every N steps (default: %(default)s)")
    g.add_argument("--checkpointing_steps", type=int, default=500,
                   help="save checkpoint-N/ every N steps; 0 turns it off (default: %(default)s)")
    g.add_argument("--checkpoints_total_limit", type=int, help="keep only the newest N checkpoints")
    g.add_argument("--resume_from_checkpoint", metavar="latest|PATH",
                   help="continue from output_dir's newest checkpoint or from the given checkpoint-N folder")
    g.add_argument("--validation_prompt", nargs="+", metavar="PROMPT", help="prompt(s) of the validation grid")
    g.add_argument("--num_validation_images", type=int, default=4, help="images per validation prompt")
    g.add_argument("--validation_steps", type=int, default=100,
                   help="validate every N steps (and at the end); 0: only at the end (default: %(default)s)")
    g.add_argument("--validation_inference_steps", type=int, default=25,
                   help="DPM-Solver++ steps of validation images (default: %(default)s)")
    g.add_argument("--validation_guidance_scale", type=float, default=7.5)


def add_dreambooth_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DreamBooth data")
    g.add_argument("--instance_data_dir", help="folder of subject images (jpg, png, webp)")
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
    add_bool_flag(g, "cache_latents",
                  "encode images and prompts once (default: on unless --random_flip or random crops of non-square "
                  "images need a fresh encode each step; --no_cache_latents to force fresh encodes)",
                  default=None)


def dreambooth_parser(prog: str = "train_dreambooth.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="DreamBooth with a DeLoRA / ETHER / LoRA / DoRA adapter on the UNet (accelerate).",
    )
    add_config_arg(parser)
    add_model_args(parser)
    add_dreambooth_args(parser)
    add_adapter_args(parser)
    add_optimization_args(parser)
    add_run_args(parser)
    return parser


def apply_method_defaults(args: argparse.Namespace) -> list[str]:
    """Fill learning rates and weight decay left unset with the method's defaults; returns what was filled."""
    filled = []
    if args.learning_rate is None:
        args.learning_rate = PAPER_LEARNING_RATES[args.adapter]
        filled.append(f"learning_rate={args.learning_rate:g} ({args.adapter} paper default)")
    if args.adapter == "delora" and args.lambda_learning_rate is None:
        args.lambda_learning_rate = PAPER_LAMBDA_LEARNING_RATE
        filled.append(f"lambda_learning_rate={args.lambda_learning_rate:g} (DeLoRA paper default)")
    if args.adam_weight_decay is None:
        args.adam_weight_decay = default_weight_decay(args.adapter)
        filled.append(f"adam_weight_decay={args.adam_weight_decay:g} ({args.adapter} default)")
    return filled


def check_common_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors (``prog: error: ...``, exit 2) for values no trainer can use."""
    if not args.pretrained_model_name_or_path:
        parser.error("--pretrained_model_name_or_path is required (a diffusers pipeline folder or hub id)")
    positive = ["train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "rank", "ether_blocks",
                "num_validation_images", "validation_inference_steps", "log_weight_distance_steps"]
    for name in positive:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("checkpointing_steps", "validation_steps", "lr_warmup_steps", "dataloader_num_workers"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.max_grad_norm is not None and args.max_grad_norm < 0:
        parser.error(f"--max_grad_norm must be >= 0, got {args.max_grad_norm}")
    if args.snr_gamma is not None and args.snr_gamma <= 0:
        parser.error(f"--snr_gamma must be > 0, got {args.snr_gamma}")
    if args.learning_rate is not None and args.learning_rate <= 0:
        parser.error(f"--learning_rate must be > 0, got {args.learning_rate}")
    from accelerate.utils import LoggerType

    trackers = ["none", *(t.value for t in LoggerType)]
    if args.report_to not in trackers:
        parser.error(f"--report_to must be one of {', '.join(trackers)}, got {args.report_to!r}")
