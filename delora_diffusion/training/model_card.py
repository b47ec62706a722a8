"""The model card ``OUTPUT/README.md``: how the adapter was trained and how to use it."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from ..adapters import METHOD_TABLE
from ..fileio import atomic_write_text
from .args import adapter_config_from_args
from .run_files import ADAPTER_FILE, MODEL_CARD_FILE


def _method_summary(args: argparse.Namespace) -> str:
    return METHOD_TABLE[args.adapter].summary(adapter_config_from_args(args))


def _learning_rates(args: argparse.Namespace) -> str:
    text = f"{args.learning_rate:g}"
    if METHOD_TABLE[args.adapter].strength and args.lambda_learning_rate is not None:
        text += f" (λ: {args.lambda_learning_rate:g}, weight decay {args.lambda_weight_decay:g})"
    if args.scale_lr:
        text += ", scaled by batch × accumulation × processes"
    return text


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LICENSES = {"stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m"}


def card_metadata(args: argparse.Namespace, task, result, output_dir: Path) -> str:
    """The card's YAML front matter (Hugging Face hub metadata): base model when it is a hub id, its
    licence when known, tags, the instance prompt and the last validation grid as the widget."""
    from huggingface_hub import ModelCardData

    base = str(args.pretrained_model_name_or_path)
    on_hub = bool(_HUB_ID.match(base)) and not Path(base).exists()
    prompts = task.validation_prompts(args)
    widget = None
    if result.validation_grids and prompts:
        widget = [
            {"text": prompts[0], "output": {"url": result.validation_grids[-1].relative_to(output_dir).as_posix()}}
        ]
    data = ModelCardData(
        base_model=base if on_hub else None,
        license=_LICENSES.get(base),
        library_name="diffusers",
        tags=["text-to-image", "diffusers", "lora", "delora-diffusion", task.name, args.adapter],
        instance_prompt=task.adapter_metadata().get("instance_prompt"),
        widget=widget,
    )
    return "---\n" + data.to_yaml() + "\n---\n"


def _optimizer(args: argparse.Namespace) -> str:
    name = getattr(args, "optimizer", "adamw")
    if name == "lion":  # its own betas (0.9, 0.99), no ε
        return f"Lion (lion-pytorch), weight decay {args.adam_weight_decay:g}"
    label = {"adamw": "AdamW", "adamw8bit": "8-bit AdamW (bitsandbytes)", "prodigy": "Prodigy (prodigyopt)"}[name]
    return (
        f"{label}, β = ({args.adam_beta1:g}, {args.adam_beta2:g}), ε = {args.adam_epsilon:g}, "
        f"weight decay {args.adam_weight_decay:g}"
    )


def _loading_lines(base: str) -> tuple[str, str]:
    """(import line, loading line) of the usage snippets: a single file loads through its pipeline class
    (``from_single_file`` is per class), a folder or hub id through ``DiffusionPipeline``, which reads the
    class from it."""
    from ..models.families import SD, is_single_file, pipeline_class

    if is_single_file(base):
        name, method = pipeline_class(base) or SD, "from_single_file"
    else:
        name, method = "DiffusionPipeline", "from_pretrained"
    return f"from diffusers import {name}", f'pipe = {name}.{method}("{base}")'


def write_model_card(output_dir: Path, args: argparse.Namespace, task, result, command: list[str] | None) -> Path:
    """Write ``output_dir/README.md`` atomically and return its path."""
    base = args.pretrained_model_name_or_path
    prompts = task.validation_prompts(args)
    rows = [
        ("base model", f"`{base}`"),
        ("adapter", _method_summary(args)),
        ("target modules", ", ".join(f"`{t}`" for t in args.target_modules)),
        *task.model_card_facts().items(),
        ("steps", f"{result.global_step}"),
        ("batch", f"{args.train_batch_size} per device × {args.gradient_accumulation_steps} accumulation"),
        ("learning rate", _learning_rates(args)),
        ("schedule", f"{args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps"),
        ("optimizer", _optimizer(args)),
        ("gradient clipping", f"{args.max_grad_norm:g}" if args.max_grad_norm else "off"),
        ("Min-SNR γ", f"{args.snr_gamma:g}" if args.snr_gamma else "off"),
        *[
            (name, value)
            for name, value in (
                ("noise offset", f"{args.noise_offset:g}" if getattr(args, "noise_offset", 0) else None),
                (
                    "zero terminal SNR",
                    "on (rescaled betas; sample with generate.py --zero_terminal_snr)"
                    if getattr(args, "zero_terminal_snr", False)
                    else None,
                ),
                (
                    "EMA of the adapter",
                    f"decay {args.adapter_ema_decay:g}: `adapter_ema.safetensors`"
                    if getattr(args, "adapter_ema_decay", None)
                    else None,
                ),
            )
            if value
        ],
        ("mixed precision", f"{result.mixed_precision} (adapter weights fp32)"),
        ("seed", str(args.seed)),
    ]
    script = next((word for word in command or [] if word.endswith(".py")), None)
    trainer = f"`{Path(script).name}`" if script else f"the {task.name} trainer"
    lines = [
        f"# {task.name} adapter: {_method_summary(args)}",
        "",
        f"Trained with delora-diffusion's {trainer} on `{base}`.",
        "",
    ]
    if result.validation_grids:
        grid = result.validation_grids[-1]
        lines += [
            f"![validation grid, step {result.global_step}]({grid.relative_to(output_dir).as_posix()})",
            "",
            "Rows: " + "; ".join(f"“{p}”" for p in prompts) + f" ({args.num_validation_images} seeds each).",
            "",
        ]
    import_line, load_line = _loading_lines(base)
    usage = task.usage_lines(base)
    if usage is None:
        usage = [
            import_line,
            "from delora_diffusion.inference import apply_adapter",
            "",
            load_line,
            f'apply_adapter(pipe, "{ADAPTER_FILE}")  # UNet and any text encoder; settings are in the file',
        ]
        example = prompts[0] if prompts else task.example_prompt()
        if example:
            usage.append(f"image = pipe({example!r}).images[0]")
    lines += ["## Use", "", "```python", *usage, "```", ""]
    if result.exports:
        lines += [
            "Without this package, the same update as a plain LoRA (exact, not an approximation) in stock diffusers:",
            "",
            "```python",
            import_line,
            "",
            load_line,
            'pipe.load_lora_weights(".")  # this folder\'s pytorch_lora_weights.safetensors',
            "```",
            "",
        ]
        if "kohya LoRA" in result.exports:
            lines += ["`lora_kohya.safetensors` holds it with kohya's keys, for ComfyUI and AUTOMATIC1111.", ""]
    lines += ["## Training", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    if result.seconds_per_step:
        lines.append(
            f"| time | {result.seconds_per_step:.3f} s per step, {result.loop_seconds:.0f} s from loading the model to the adapter |"
        )
    if command:
        lines += ["", "Command:", "", "```bash", shlex.join(command), "```"]
    if result.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in result.notes]
    lines += [
        "",
        "All settings: `training_args.json`. Learning curves: "
        f"`tensorboard --logdir {Path(args.output_dir, args.logging_dir).as_posix()}`.",
        "",
    ]
    path = output_dir / MODEL_CARD_FILE
    atomic_write_text(path, card_metadata(args, task, result, output_dir) + "\n".join(lines))
    return path
