"""The flags of diffusers' ``train_dreambooth_lora.py`` that have no flag of ours, so a diffusers command
parses here: each either works with diffusers' meaning or stops the run with one line saying why.

(The flags both trainers share, ``--rank``, ``--learning_rate``, ``--push_to_hub``, ..., are ours already.)
"""

from __future__ import annotations

import argparse
import importlib.util

from ..configfile import add_bool_flag
from .args import check_optimizer

# flag -> why it stops the run when given: what it is for in diffusers, and what to do here instead.
REFUSED = {
    "class_labels_conditioning": "is for UNets with class embeddings (DeepFloyd IF); Stable Diffusion's UNet has none",
    "text_encoder_use_attention_mask": "is for T5 text encoders (DeepFloyd IF); SD's CLIP text encoder takes no mask",
    "tokenizer_max_length": "is for T5 text encoders (DeepFloyd IF); SD's CLIP tokenizer keeps the 77 positions its "
    "text encoder was trained with",
    "tokenizer_name": "would pair the text encoder with another tokenizer than its own; the checkpoint's is used",
    "validation_images": "is for DeepFloyd IF's upscaler (image-conditioned validation); use --validation_prompt",
}
PRECISIONS = ("no", "fp32", "fp16", "bf16")


def add_diffusers_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("diffusers train_dreambooth_lora.py flags (same meaning, or a one-line refusal)")
    g.add_argument(
        "--validation_epochs", type=int, metavar="N", help="validate every N epochs (instead of --validation_steps)"
    )
    add_bool_flag(
        g,
        "enable_xformers_memory_efficient_attention",
        "xformers attention when installed; PyTorch's SDPA (as fast on torch 2) otherwise, said once",
    )
    g.add_argument(
        "--prior_generation_precision",
        choices=PRECISIONS,
        help="dtype of class-image generation (default: the run's --mixed_precision)",
    )
    add_bool_flag(
        g,
        "pre_compute_text_embeddings",
        "accepted: text embeddings are computed once whenever the prompts are fixed",
    )
    add_bool_flag(
        g,
        "use_8bit_adam",
        "diffusers' name for --optimizer adamw8bit (bitsandbytes' 8-bit AdamW, CUDA)",
    )
    g.add_argument(
        "--local_rank",
        type=int,
        default=-1,
        help="set by torch.distributed launchers (accelerate reads LOCAL_RANK itself)",
    )
    g.add_argument(
        "--image_interpolation_mode",
        default="bilinear",
        choices=("bilinear", "bicubic", "lanczos", "nearest"),
        help="resampling of training images to --resolution (default: %(default)s)",
    )
    for name in ("class_labels_conditioning", "tokenizer_name", "validation_images"):
        g.add_argument(f"--{name}", nargs="*", help=argparse.SUPPRESS)
    g.add_argument("--text_encoder_use_attention_mask", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--tokenizer_max_length", type=int, help=argparse.SUPPRESS)


def check_diffusers_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One-line errors for the refused flags and unusable values."""
    for name, why in REFUSED.items():
        if getattr(args, name) not in (None, False):
            parser.error(f"--{name} {why}")
    if args.validation_epochs is not None:
        if args.validation_epochs < 1:
            parser.error(f"--validation_epochs must be >= 1, got {args.validation_epochs}")
        if args.validation_steps not in (0, parser.get_default("validation_steps")):
            parser.error("give --validation_epochs or --validation_steps, not both")
    if args.use_8bit_adam:  # diffusers' name for --optimizer adamw8bit (the package is checked with it)
        if args.optimizer not in ("adamw", "adamw8bit"):
            parser.error(f"--use_8bit_adam is --optimizer adamw8bit; it contradicts --optimizer {args.optimizer}")
        args.optimizer = "adamw8bit"
        check_optimizer(parser, args)


def xformers_note(args: argparse.Namespace) -> str | None:
    """With --enable_xformers_memory_efficient_attention but no xformers installed: what runs instead."""
    if (
        getattr(args, "enable_xformers_memory_efficient_attention", False)
        and importlib.util.find_spec("xformers") is None
    ):
        return (
            "--enable_xformers_memory_efficient_attention: xformers is not installed; PyTorch's "
            "scaled-dot-product attention is used (as fast on torch 2)"
        )
    return None
