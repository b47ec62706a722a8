"""The trainers' command-line flags, optionally read from a YAML file (``--config configs/X.yaml``).

Flag names follow diffusers' ``train_dreambooth_lora.py`` so its users keep their commands. The YAML
file holds ``flag_name: value`` pairs; every value goes through the same argparse types and choices
as the command line, flags given explicitly override the file, and an unknown key is an error that
names it. Groups are separate functions so another trainer (e.g. semantic map → image) reuses the
model, adapter, optimisation and run groups and adds only its own data group.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util

from ..adapters import METHOD_TABLE, PAPER_LAMBDA_LEARNING_RATE, AdapterConfig, adapter_fields
from ..configfile import add_bool_flag
from ..errors import UserError
from ..fileio import folder_problem
from ..inference.defaults import DREAMBOOTH
from ..models.families import SINGLE_FILE_CONFIG_HELP
from ..threads import add_thread_arg
from .hub import add_hub_args

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")

# Learning rates of the DreamBooth experiments in the DeLoRA (ICLR 2025) and ETHER (ICML 2024) papers.
PAPER_LEARNING_RATES = {name: row.dreambooth_lr for name, row in METHOD_TABLE.items()}
# --optimizer -> (module to import, package to pip install); adamw is torch's own.
OPTIMIZER_PACKAGES = {
    "adamw": (None, None),
    "adamw8bit": ("bitsandbytes", "bitsandbytes"),
    "prodigy": ("prodigyopt", "prodigyopt"),
    "lion": ("lion_pytorch", "lion-pytorch"),
}
REGEX_CHARACTERS = set("*()[]|^$\\+?")


class UsageError(UserError):
    """A flag value found unusable once the run starts (e.g. a tracker that is not installed)."""


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("base model")
    g.add_argument(
        "--pretrained_model_name_or_path",
        metavar="PATH_OR_ID",
        help="diffusers pipeline folder, hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) or "
        "single-file .safetensors checkpoint (outputs/tiny/sd is built on first use)",
    )
    g.add_argument("--revision", help="hub revision of the base model")
    g.add_argument("--single_file_config", metavar="PATH_OR_ID", help=SINGLE_FILE_CONFIG_HELP)
    g.add_argument(
        "--pretrained_vae_model_name_or_path",
        metavar="PATH_OR_ID",
        help="a VAE replacing the base model's, e.g. madebyollin/sdxl-vae-fp16-fix (SDXL's own VAE "
        "overflows in fp16, so without one it stays fp32 under --mixed_precision)",
    )
    g.add_argument("--variant", help="weight variant of the base model files, e.g. fp16")


FLAG_TYPES = {"int": int, "float": float, "float | None": float}


def add_adapter_args(parser: argparse.ArgumentParser) -> None:
    """One flag per ``AdapterConfig`` field, named, typed, defaulted and explained by the field itself."""
    g = parser.add_argument_group("adapter")
    for hyper in adapter_fields():
        meta = dict(hyper.metadata)
        name = meta.pop("flag")
        default = hyper.default_factory() if hyper.default_factory is not dataclasses.MISSING else hyper.default
        if default is False:
            add_bool_flag(g, name, meta["help"])
            continue
        kind = FLAG_TYPES.get(str(hyper.type))  # the field's annotation (a string: postponed annotations)
        help_text = meta.pop("help") + ("" if default is None else " (default: %(default)s)")
        g.add_argument(
            f"--{name}", dest=name, default=default, help=help_text, **({"type": kind} if kind else {}), **meta
        )


ADAPTER_FLAG_NAMES = tuple(f.metadata["flag"] for f in adapter_fields())


def add_optimization_args(parser: argparse.ArgumentParser, helps: dict[str, str] | None = None) -> None:
    """The optimiser's flags; ``helps`` (flag name -> text) words a flag for another trainer's data."""
    helps = helps or {}
    g = parser.add_argument_group("optimisation")
    g.add_argument(
        "--train_batch_size",
        type=int,
        default=1,
        help=helps.get(
            "train_batch_size",
            "instance images per device per step (prior preservation adds as many class images) (default: %(default)s)",
        ),
    )
    g.add_argument("--max_train_steps", type=int, help="optimizer steps; overrides --num_train_epochs")
    g.add_argument("--num_train_epochs", type=int, default=1, help="used when --max_train_steps is not given")
    g.add_argument(
        "--learning_rate",
        type=float,
        help="adapter learning rate (default: the paper's for the method: "
        + ", ".join(f"{m} {lr:g}" for m, lr in PAPER_LEARNING_RATES.items())
        + ")",
    )
    g.add_argument(
        "--lambda_learning_rate", type=float, help=f"DeLoRA λ learning rate (default: {PAPER_LAMBDA_LEARNING_RATE:g})"
    )
    g.add_argument("--lambda_weight_decay", type=float, default=0.0, help="AdamW weight decay of λ (default: 0)")
    g.add_argument(
        "--adam_weight_decay",
        type=float,
        help="AdamW weight decay of the adapter (default: the method's: "
        + ", ".join(f"{m} {row.weight_decay:g}" for m, row in METHOD_TABLE.items())
        + ")",
    )
    g.add_argument(
        "--optimizer",
        default="adamw",
        choices=list(OPTIMIZER_PACKAGES),
        help="adamw (torch); adamw8bit (bitsandbytes, CUDA); prodigy (prodigyopt: --learning_rate is a "
        "multiplier of the step it estimates, 1 by default, one for every group); lion (lion-pytorch: "
        "usually 3-10x smaller rates than AdamW, per its authors). DeLoRA's λ keeps its own group "
        "(and rate, but under Prodigy) (default: %(default)s)",
    )
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
    g.add_argument(
        "--mixed_precision",
        choices=("no", "fp16", "bf16"),
        help="frozen weights in this dtype, adapter weights stay fp32 (default: accelerate's config)",
    )
    add_bool_flag(g, "allow_tf32", "allow TF32 matmuls on Ampere GPUs")
    g.add_argument("--snr_gamma", type=float, help="Min-SNR loss weighting γ (Hang et al. 2023); 5 is typical")
    g.add_argument(
        "--adapter_ema_decay",
        type=float,
        metavar="D",
        help="also keep an exponential moving average of the adapter's weights (diffusers' EMAModel, "
        "decay min(D, (1+t)/(10+t)) at step t), saved as adapter_ema.safetensors",
    )
    add_bool_flag(
        g,
        "zero_terminal_snr",
        "rescale the schedule's betas to SNR 0 at the last step (Lin et al. 2024; v-prediction "
        "models; sample with generate.py --zero_terminal_snr)",
    )
    g.add_argument(
        "--noise_offset",
        type=float,
        default=0.0,
        help="add offset·N(0,1) per channel to the noise (0.05-0.1 typical; default: %(default)s)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order, noise (default: 0)")
    g.add_argument("--dataloader_num_workers", type=int, default=0)


def add_run_args(parser: argparse.ArgumentParser, helps: dict[str, str] | None = None) -> None:
    """Output, logging, checkpoint and validation flags; ``helps`` (flag name -> text) rewords some."""
    helps = helps or {}
    g = parser.add_argument_group("output, logging, checkpoints, validation")
    g.add_argument("--output_dir", default="outputs/dreambooth", help="(default: %(default)s)")
    add_thread_arg(g)
    add_bool_flag(
        g,
        "overwrite_output_dir",
        "replace the run in --output_dir (its checkpoints are deleted) instead of stopping",
    )
    g.add_argument("--logging_dir", default="logs", help="TensorBoard folder, relative to --output_dir")
    g.add_argument(
        "--report_to",
        default="tensorboard",
        help="accelerate tracker: tensorboard, wandb, all or none (default: %(default)s)",
    )
    g.add_argument(
        "--log_weight_distance_steps",
        type=int,
        default=10,
        help="log ‖W_ft − W_0‖_F (sum and per layer) every N steps (default: %(default)s)",
    )
    g.add_argument(
        "--checkpointing_steps",
        type=int,
        default=500,
        help="save checkpoint-N/ every N steps; 0 turns it off (default: %(default)s)",
    )
    g.add_argument("--checkpoints_total_limit", type=int, help="keep only the newest N checkpoints")
    g.add_argument(
        "--resume_from_checkpoint",
        metavar="latest|PATH",
        help="continue from output_dir's newest checkpoint or from the given checkpoint-N folder",
    )
    g.add_argument(
        "--validation_prompt",
        nargs="+",
        metavar="PROMPT",
        help=helps.get("validation_prompt", "prompt(s) of the validation grid"),
    )
    g.add_argument("--num_validation_images", type=int, default=4, help="images per validation prompt")
    g.add_argument(
        "--validation_steps",
        type=int,
        default=100,
        help="validate every N steps (and at the end); 0: only at the end (default: %(default)s)",
    )
    g.add_argument(
        "--validation_inference_steps",
        type=int,
        default=DREAMBOOTH.steps,
        help=helps.get("validation_inference_steps", "DPM-Solver++ steps of validation images (default: %(default)s)"),
    )
    g.add_argument("--validation_guidance_scale", type=float, default=DREAMBOOTH.guidance)
    add_hub_args(g)


def apply_method_defaults(args: argparse.Namespace) -> list[str]:
    """Fill learning rates and weight decay left unset with the method's defaults; returns what was filled."""
    filled = []
    if getattr(args, "optimizer", "adamw") == "prodigy":  # one multiplier of Prodigy's own step estimate
        if args.learning_rate is None:
            args.learning_rate = 1.0
            filled.append("learning_rate=1 (Prodigy's multiplier)")
        if METHOD_TABLE[args.adapter].strength and args.lambda_learning_rate is None:
            args.lambda_learning_rate = args.learning_rate
            filled.append("lambda_learning_rate=learning_rate (Prodigy takes one rate for every group)")
    if args.learning_rate is None:
        args.learning_rate = PAPER_LEARNING_RATES[args.adapter]
        filled.append(f"learning_rate={args.learning_rate:g} ({args.adapter} paper default)")
    if METHOD_TABLE[args.adapter].strength and args.lambda_learning_rate is None:
        args.lambda_learning_rate = PAPER_LAMBDA_LEARNING_RATE
        filled.append(f"lambda_learning_rate={args.lambda_learning_rate:g} (DeLoRA paper default)")
    if args.adam_weight_decay is None:
        args.adam_weight_decay = METHOD_TABLE[args.adapter].weight_decay
        filled.append(f"adam_weight_decay={args.adam_weight_decay:g} ({args.adapter} default)")
    return filled


RATE_SCALE = 30.0  # the papers' rates span ×33 between methods (LoRA 6e-4 … DeLoRA 2e-2)


def rate_scale_warning(args: argparse.Namespace) -> str | None:
    """A warning when --learning_rate is more than ``RATE_SCALE`` times off the method's paper rate: a rate
    from another method's scale (a diffusers-style 1e-4 for DeLoRA is 200× below its 2e-2) trains next to
    nothing, or far too hard, without any error."""
    if getattr(args, "optimizer", "adamw") == "prodigy":  # a multiplier of Prodigy's own estimate, not a rate
        return None
    paper = PAPER_LEARNING_RATES[args.adapter]
    ratio = args.learning_rate / paper
    if 1 / RATE_SCALE <= ratio <= RATE_SCALE:
        return None
    how = f"{1 / ratio:.0f}× below" if ratio < 1 else f"{ratio:.0f}× above"
    label = METHOD_TABLE[args.adapter].label
    return (
        f"warning: --learning_rate {args.learning_rate:g} is {how} {label}'s paper rate {paper:g}; rates differ "
        f"between methods by up to ×33 (leave --learning_rate out to use {paper:g})"
    )


def adapter_config_from_args(args: argparse.Namespace) -> AdapterConfig:
    """The AdapterConfig the adapter flags describe."""
    values = {f.name: getattr(args, f.metadata["flag"]) for f in adapter_fields()}
    targets = values["target_modules"]
    if len(targets) == 1 and REGEX_CHARACTERS & set(targets[0]):
        values["target_modules"] = targets[0]  # one pattern with regex syntax: match whole module names
    return AdapterConfig(**values)


def check_optimizer(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An optimizer whose package is missing stops with the command that installs it; Prodigy takes one rate."""
    rates = {
        1.0 if args.learning_rate is None else args.learning_rate,
        args.lambda_learning_rate,
        getattr(args, "text_encoder_lr", None),
    } - {None}
    if args.optimizer == "prodigy" and len(rates) > 1:
        parser.error(
            "--optimizer prodigy estimates one step size for every parameter group, so --learning_rate, "
            "--lambda_learning_rate and --text_encoder_lr must be equal (λ keeps its own group and "
            "weight decay)"
        )
    module, package = OPTIMIZER_PACKAGES[args.optimizer]
    if module and importlib.util.find_spec(module) is None:
        parser.error(
            f"--optimizer {args.optimizer} needs {package}: pip install {package} "
            "(or pip install 'delora-diffusion[optimizers]')"
        )


def check_common_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors (``prog: error: ...``, exit 2) for values no trainer can use."""
    if not args.pretrained_model_name_or_path:
        parser.error("--pretrained_model_name_or_path is required (a diffusers pipeline folder or hub id)")
    positive = [
        "train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "rank",
        "ether_blocks",
        "num_validation_images",
        "validation_inference_steps",
        "log_weight_distance_steps",
    ]
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
    if args.adapter_ema_decay is not None and not 0.0 < args.adapter_ema_decay < 1.0:
        parser.error(f"--adapter_ema_decay must be in (0, 1), e.g. 0.999, got {args.adapter_ema_decay}")
    if args.noise_offset < 0:
        parser.error(f"--noise_offset must be >= 0, got {args.noise_offset}")
    if args.snr_gamma is not None and args.snr_gamma <= 0:
        parser.error(f"--snr_gamma must be > 0, got {args.snr_gamma}")
    if args.learning_rate is not None and args.learning_rate <= 0:
        parser.error(f"--learning_rate must be > 0, got {args.learning_rate}")
    problem = folder_problem(args.output_dir)
    if problem:
        parser.error(f"--output_dir {args.output_dir} {problem}")
    for name in ("hub_model_id", "hub_token"):
        if getattr(args, name) and not args.push_to_hub:
            parser.error(f"--{name} is used by --push_to_hub: add it, or drop --{name}")
    from accelerate.utils import LoggerType

    trackers = ["none", *(t.value for t in LoggerType)]
    if args.report_to not in trackers:
        parser.error(f"--report_to must be one of {', '.join(trackers)}, got {args.report_to!r}")
    check_optimizer(parser, args)
    if args.report_to not in ("none", "all") and importlib.util.find_spec(args.report_to) is None:
        parser.error(
            f"--report_to {args.report_to} needs the {args.report_to} package: pip install {args.report_to} "
            "(or --report_to tensorboard, which is installed)"
        )
