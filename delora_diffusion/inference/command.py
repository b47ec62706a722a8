"""The skeleton both generate subcommands configure: flag groups, checks, keep-or-clash planning, one
batched render loop and the exit-status wrapper.

Nothing here imports torch: ``--help`` and flag errors answer before the stack loads. A subcommand adds its
own flags, builds its candidate records (one per image, ``layout.py``'s fields plus its own), and passes a
``sample(batch) -> Samples`` function to ``render``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .. import layout
from ..configfile import add_config_arg, parse_args
from ..errors import UserError
from ..fileio import folder_problem, remove_stale_temporaries
from ..models.families import (
    SD,
    SDXL,
    SINGLE_FILE_CONFIG_HELP,
    check_base_model,
    check_other_models,
)
from ..threads import add_thread_arg, apply_threads
from .defaults import SamplingDefaults
from .schedulers import SCHEDULERS

DTYPES = ["auto", "float32", "float16", "bfloat16"]


class GenerateError(UserError):
    """A user error found while planning or running a generation (printed as ``prog: error: ...``)."""


# --- flags ------------------------------------------------------------------------------------------------------


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, allow_abbrev=False)
    add_config_arg(parser)
    return parser


def add_model_args(
    parser: argparse.ArgumentParser, base_help: str, adapter_help: str, adapter_required: bool, several: bool = False
) -> argparse._ArgumentGroup:
    """The base pipeline, the adapter(s) and where they run; returns the group so a subcommand can add to it.
    ``several``: ``--adapter`` and ``--scale`` are repeatable (lists, None when not given)."""
    model = parser.add_argument_group("model")
    model.add_argument("--pretrained_model_name_or_path", required=True, metavar="PATH_OR_ID", help=base_help)
    model.add_argument("--revision", help="hub revision of the base model")
    model.add_argument("--variant", help="weight variant of the base model (e.g. fp16)")
    model.add_argument("--single_file_config", metavar="PATH_OR_ID", help=SINGLE_FILE_CONFIG_HELP)
    repeat = {"action": "append"} if several else {}
    # --adapter_file, as the trainers' --adapter names a method; --adapter stays, the spelling of earlier versions
    model.add_argument(
        "--adapter_file",
        "--adapter",
        dest="adapter",
        required=adapter_required,
        metavar="FILE",
        help=adapter_help,
        **repeat,
    )
    model.add_argument(
        "--scale",
        type=float,
        default=None if several else 1.0,
        metavar="S",
        **repeat,
        help=(
            "strength of each --adapter, in order (one value: all of them; default 1): W + s(W' - W)"
            if several
            else "adapter strength s >= 0: W + s(W' - W) (default 1)"
        ),
    )
    model.add_argument("--merge", action="store_true", help="fold the adapter into the weights (faster sampling)")
    model.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="base weights dtype; auto = float16 on CUDA, float32 otherwise (adapters stay fp32)",
    )
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    model.add_argument(
        "--disable_safety_checker",
        action="store_true",
        help="drop the checkpoint's safety checker (it blacks out flagged images, which biases metrics)",
    )
    return model


def add_sampling_args(parser: argparse.ArgumentParser, defaults: SamplingDefaults, per: str) -> None:
    """Seeds, solver and sizes; ``per`` names what gets ``--num_images_per_<per>`` (prompt, map)."""
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(f"--num_images_per_{per}", type=int, default=4, metavar="N", help="default: %(default)s")
    sampling.add_argument("--seed", type=int, default=0, help=f"base seed: image k of each {per} uses seed + k")
    sampling.add_argument(
        "--num_inference_steps", type=int, default=defaults.steps, metavar="N", help="default: %(default)s"
    )
    sampling.add_argument("--guidance_scale", type=float, default=defaults.guidance, help="default: %(default)s")
    sampling.add_argument(
        "--scheduler",
        default=defaults.scheduler,
        choices=list(SCHEDULERS),
        help="solver built from the checkpoint's scheduler config (default: %(default)s)",
    )
    sampling.add_argument(
        "--zero_terminal_snr",
        action="store_true",
        help="sample a model trained with --zero_terminal_snr: rescaled betas, trailing timesteps",
    )
    sampling.add_argument("--negative_prompt", metavar="TEXT", help="negative prompt for every image (default: none)")
    sampling.add_argument("--height", type=int, help="pixels (default: the model's resolution)")
    sampling.add_argument("--width", type=int, help="pixels (default: the model's resolution)")
    sampling.add_argument(
        "--batch_size",
        type=int,
        default=4,
        metavar="N",
        help="images per pipeline call; does not change the images (default: %(default)s)",
    )


def add_output_args(parser: argparse.ArgumentParser, help: str) -> argparse._ArgumentGroup:
    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", required=True, metavar="OUT", help=help)
    output.add_argument(
        "--overwrite", action="store_true", help="regenerate images that exist with other settings instead of stopping"
    )
    output.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_thread_arg(output)
    return output


def check_common_args(parser: argparse.ArgumentParser, args: argparse.Namespace, per: str) -> None:
    """Range checks of the shared flags, and an output folder that can be written (before any model loads)."""
    for name in (f"num_images_per_{per}", "num_inference_steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("seed", "guidance_scale", "scale"):
        values = getattr(args, name)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and value < 0:
                parser.error(f"--{name} must be >= 0, got {value}")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < 8 or value % 8):
            parser.error(f"--{name} must be a positive multiple of 8, got {value}")
    problem = folder_problem(args.output_dir)
    if problem:
        parser.error(f"--output_dir {args.output_dir} {problem}")


# --- planning ---------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """One output folder: the records ``metadata.jsonl`` will hold (kept + planned) and those still to render."""

    name: str
    folder: Path
    records: dict[tuple[int, int], dict]
    todo: list[dict] = field(default_factory=list)


def plan_folder(
    name: str, folder: Path, candidates: list[dict], overwrite: bool, extra_settings: tuple[str, ...] = ()
) -> Plan:
    """Which of ``candidates`` (one record per image) to render into ``folder``: an image is kept when its
    PNG is intact and its record has the same settings (``layout.settings_mismatch`` plus ``extra_settings``);
    a record with other settings is an error unless ``overwrite``."""
    plan = Plan(name, folder, layout.read_metadata(folder))
    for record in candidates:
        existing = plan.records.get(layout.record_key(record))
        if existing is not None:
            difference = layout.settings_mismatch(existing, record) or next(
                (
                    f"{k}: {existing.get(k)!r} -> {record.get(k)!r}"
                    for k in extra_settings
                    if existing.get(k) != record.get(k)
                ),
                None,
            )
            if difference is None and layout.is_intact_image(folder / existing["file"]):
                continue
            if difference is not None and not overwrite:
                raise GenerateError(
                    f"{folder / existing['file']} was generated with other settings ({difference}); "
                    "use another --output_dir, or --overwrite to regenerate"
                )
        plan.todo.append(record)
    return plan


def common_fields(args: argparse.Namespace, dtype: str, height: int, width: int) -> dict:
    """The record fields every image of one call shares besides its adapters (``dtype`` as "float32", sizes in
    pixels)."""
    return {
        "merged": bool(args.merge),
        "base_model": str(args.pretrained_model_name_or_path),
        "revision": args.revision,
        "variant": args.variant,
        "num_inference_steps": args.num_inference_steps,
        "guidance_scale": float(args.guidance_scale),
        "scheduler": args.scheduler,
        # only when on: records written before the flag existed still match a run without it
        **({"zero_terminal_snr": True} if args.zero_terminal_snr else {}),
        "negative_prompt": args.negative_prompt or None,
        "height": height,
        "width": width,
        "dtype": dtype,
    }


def zero_snr_warning(args: argparse.Namespace, adapter_metadata: dict, path: str) -> None:
    """Say so when an adapter trained with --zero_terminal_snr is sampled without it (its images would be off)."""
    if adapter_metadata.get("extra", {}).get("zero_terminal_snr") and not args.zero_terminal_snr:
        print(
            f"warning: {path} was trained with --zero_terminal_snr; add --zero_terminal_snr to sample it as it was "
            "trained",
            file=sys.stderr,
        )


def prepare_output(args: argparse.Namespace) -> None:
    """Remove what an interrupted run left behind and set the CPU threads, saying both."""
    removed = remove_stale_temporaries(args.output_dir)
    if removed:
        print(
            f"removed {len(removed)} temporary file(s) left by an interrupted run, e.g. {removed[0]}", file=sys.stderr
        )
    print(f"{apply_threads(args)} CPU thread(s) per process (--num_threads)", file=sys.stderr)


# --- rendering --------------------------------------------------------------------------------------------------


def render(
    items: list[tuple[Plan, dict]],
    batch_size: int,
    sample: Callable,
    progress: bool = True,
    desc: str = "images",
    on_first_image: Callable[[Plan], None] | None = None,
) -> dict[str, int]:
    """Render ``(plan, record)`` items in batches of ``batch_size`` with ``sample(batch) -> Samples``,
    writing each image and then its folder's metadata; returns images written per plan name.
    ``on_first_image(plan)`` runs before a plan's first image of this call is written."""
    written = {plan.name: 0 for plan, _ in items}
    with tqdm(total=len(items), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            samples = sample(batch)
            touched = {}
            for (plan, record), image, flagged in zip(batch, samples.images, samples.nsfw):
                record = {**record, "nsfw": flagged}
                if on_first_image is not None and not written[plan.name]:
                    on_first_image(plan)
                layout.write_image(plan.folder / record["file"], image, record)
                plan.records[layout.record_key(record)] = record
                written[plan.name] += 1
                touched[plan.name] = plan
            for plan in touched.values():  # metadata after the images: a record always points at a whole image
                layout.write_metadata(plan.folder, plan.records)
            bar.update(len(batch))
    return written


# --- the command ------------------------------------------------------------------------------------------------


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    check: Callable,
    run: Callable,
    report: Callable,
    families: tuple[str, ...] = (SD, SDXL),
) -> int:
    """Parse and ``check(parser, args)``, then ``report(args, run(args))``; exit status 2 with one line for
    bad input (a ``UserError``, or a pipeline that cannot be loaded) and for a base model of another pipeline
    class than ``families``."""
    args = parse_args(parser, argv)
    check(parser, args)
    try:  # before anything loads
        check_base_model(args.pretrained_model_name_or_path, revision=args.revision, families=families)
        check_other_models(args)
        result = run(args)
    except Exception as exc:
        from .pipeline import PipelineLoadError  # torch-heavy: imported once something failed

        if not isinstance(exc, (UserError, PipelineLoadError)):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    report(args, result)
    return 0
