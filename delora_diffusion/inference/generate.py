"""``generate.py``: render a subject's evaluation prompts with a base model and an optional adapter.

Subcommands: ``dreambooth`` (the default, so ``generate.py --flags`` works): the 25 DreamBooth prompts
of each subject (or a prompt file) × ``--num_images_per_prompt`` seeds, written in the layout the
evaluator reads (``layout.py``); ``semantic``: images from semantic maps (``semantic.py``). Image k of every prompt uses seed ``--seed + k``, so methods, scales
and prompts are compared on the same starting noise. Re-running skips images already on disk with
the same settings, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout
from ..data.prompts import DEFAULT_TOKEN, read_class_nouns
from ..fileio import file_sha256
from .command import (
    GenerateError,
    Plan,
    add_model_args,
    add_output_args,
    add_sampling_args,
    check_common_args,
    common_fields,
    new_parser,
    plan_folder,
    prepare_output,
    render,
    run_command,
    zero_snr_warning,
)
from .contact_sheet import SHEET_FILE, contact_sheet
from .defaults import DREAMBOOTH
from .prompt_sets import (
    PROMPT_SETS,
    SubjectPrompt,
    read_prompt_file,
    subject_prompts,
    templates_for,
    verbatim_templates,
)
from .semantic import semantic_main

PROG = "generate.py"
CLASS_TABLE = "prompts_and_classes.txt"


@dataclass
class SubjectJob:
    """One subject to render: its prompts and the adapter file (None = base model)."""

    subject: str
    class_noun: str
    token: str | None
    prompts: list[SubjectPrompt]
    adapter: str | None = None


def subject_records(job: SubjectJob, seeds: list[int], common: dict) -> list[dict]:
    """One metadata record per image of ``job``: prompt k × seed; ``common`` holds the shared settings."""
    return [
        {
            "subject": job.subject,
            "prompt_index": prompt.index,
            "prompt": prompt.prompt,
            "class_prompt": prompt.class_prompt,
            "token": job.token or None,
            "class_noun": job.class_noun,
            "seed": seed,
            "file": layout.image_file(prompt.index, seed),
            **common,
        }
        for prompt in job.prompts
        for seed in seeds
    ]


# --- command line -----------------------------------------------------------------------------------------------


def dreambooth_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = new_parser(
        prog,
        description="Generate the DreamBooth evaluation images of one or more subjects, with a base Stable "
        "Diffusion model and an optional delora-diffusion adapter. Subcommands: "
        f"{', '.join(SUBCOMMANDS)}; without one, {DEFAULT_SUBCOMMAND} runs.",
        epilog="Layout: OUT/<subject>/<prompt_index:02d>/<seed>.png and OUT/<subject>/metadata.jsonl. "
        "Image k of every prompt uses seed --seed + k. Re-running skips images already generated "
        "with the same settings.",
    )
    add_model_args(
        parser,
        base_help="base pipeline: diffusers folder, hub id or single-file .safetensors "
        "(e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)",
        adapter_help="an adapter: adapter.safetensors from delora-diffusion (method and settings read "
        "from the file; may contain {subject}), or a plain LoRA file with diffusers or kohya "
        "keys (e.g. from other trainers). Repeat for several (at most one of ours): plain "
        "LoRAs are fused into the weights first. Omit for base-model baselines",
        adapter_required=False,
        several=True,
    )

    subjects = parser.add_argument_group("subjects")
    one_or_many = subjects.add_mutually_exclusive_group()
    one_or_many.add_argument("--subject", metavar="NAME", help="subject name (names the output folder), e.g. dog")
    one_or_many.add_argument(
        "--subjects", metavar="NAMES", help="comma-separated subject names, or 'all', read with --class_nouns"
    )
    subjects.add_argument(
        "--class_noun", metavar="NOUN", help="class noun of --subject, e.g. dog (picks object or live prompts)"
    )
    subjects.add_argument(
        "--class_nouns",
        metavar="PATH",
        help=f"subject,class table: a DreamBooth dataset folder (its {CLASS_TABLE}), "
        "that file, or a 'subject,class' CSV",
    )
    subjects.add_argument(
        "--token",
        default=DEFAULT_TOKEN,
        help="identifier token in the prompts (default: %(default)s; '' = class-only prompts)",
    )

    prompts = parser.add_argument_group("prompts")
    prompts.add_argument(
        "--prompt_set",
        default="auto",
        choices=PROMPT_SETS,
        help="DreamBooth prompts: auto = live-subject prompts for dog/cat, object prompts otherwise",
    )
    prompts.add_argument(
        "--prompt_file", metavar="FILE", help="instead: one prompt template per line, with {token} and {class_noun}"
    )
    prompts.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="instead: a prompt to render (repeatable), as written or with {token}/{class_noun}; "
        "the images go to OUT/<--subject> (default: prompts)",
    )

    add_sampling_args(parser, DREAMBOOTH, per="prompt")
    output = add_output_args(parser, help="OUT: images go to OUT/<subject>/")
    output.add_argument(
        "--no_contact_sheet",
        action="store_true",
        help=f"skip OUT/<subject>/{SHEET_FILE} (each prompt's first image with the prompt under it)",
    )
    return parser


def _check_args(parser: argparse.ArgumentParser, args) -> None:
    check_common_args(parser, args, per="prompt")
    adapters, scales = args.adapter or [], args.scale or []
    if not adapters and (scales or args.merge):
        parser.error("--scale and --merge act on an adapter: pass --adapter too")
    if len(scales) > 1 and len(scales) != len(adapters):
        parser.error(
            f"--scale: give one value for every --adapter, or one per --adapter in order "
            f"({len(adapters)} adapters, {len(scales)} scales)"
        )
    if args.prompt:
        if args.prompt_file or args.prompt_set != "auto":
            parser.error("give one of --prompt, --prompt_file and --prompt_set")
        if args.subjects:
            parser.error("--prompt renders into one folder: name it with --subject (default: prompts), not --subjects")
        if any("{class_noun}" in p for p in args.prompt) and not args.class_noun:
            parser.error("a --prompt uses {class_noun}: give --class_noun")
        args.subject = args.subject or "prompts"
    elif args.subject is None and args.subjects is None:
        parser.error("give --subject (with --class_noun), --subjects (with --class_nouns) or --prompt")
    elif args.subject is not None:
        if not args.class_noun:
            parser.error("--subject needs --class_noun (e.g. --class_noun dog)")
        if args.class_nouns:
            parser.error("--class_nouns goes with --subjects; with --subject give --class_noun")
    else:
        if not args.class_nouns:
            parser.error("--subjects needs --class_nouns (a DreamBooth dataset folder or a subject,class file)")
        if args.class_noun:
            parser.error("--class_noun goes with --subject; with --subjects the nouns come from --class_nouns")
    if args.prompt_file and args.prompt_set != "auto":
        parser.error("give either --prompt_file or --prompt_set, not both")


def _subject_classes(args) -> list[tuple[str, str]]:
    """(subject, class noun) pairs from --subject/--class_noun or --subjects/--class_nouns."""
    if args.subject is not None:
        return [(args.subject, args.class_noun)]
    table_path = Path(args.class_nouns)
    if table_path.is_dir():
        table_path = table_path / CLASS_TABLE
    try:
        classes = read_class_nouns(table_path)
    except (OSError, ValueError) as exc:
        raise GenerateError(f"--class_nouns: {exc}") from exc
    if args.subjects.strip() == "all":
        return list(classes.items())
    names = [s.strip() for s in args.subjects.split(",") if s.strip()]
    if not names:
        raise GenerateError("--subjects is empty; give comma-separated names or 'all'")
    unknown = [s for s in names if s not in classes]
    if unknown:
        raise GenerateError(f"--subjects: {', '.join(unknown)} not in {table_path} (it lists {', '.join(classes)})")
    return [(s, classes[s]) for s in names]


@dataclass
class Adapters:
    """The --adapter files sorted: at most one delora-diffusion adapter (a path template) and plain LoRAs."""

    ours: str | None = None
    ours_scale: float = 1.0
    plain: list = field(default_factory=list)  # PlainLora


def split_adapters(args) -> Adapters:
    """Sort ``--adapter`` files by what their header says, each with its ``--scale``; a template with
    {subject} is ours (one file per subject)."""
    from ..adapters.io import is_delora_adapter
    from .plain_lora import PlainLora

    adapters = args.adapter or []
    scales = args.scale or [1.0]
    found = Adapters()
    for path, scale in zip(adapters, scales * len(adapters) if len(scales) == 1 else scales):
        if "{" in path or is_delora_adapter(path):
            if found.ours is not None:
                raise GenerateError(
                    f"--adapter: one delora-diffusion adapter at a time ({found.ours} and {path}); "
                    "turn one into a plain LoRA with delora-export and pass that"
                )
            found.ours, found.ours_scale = path, float(scale)
        else:
            found.plain.append(PlainLora(path, file_sha256(path), float(scale)))
    if args.merge and found.ours is None:
        raise GenerateError("--merge folds a delora-diffusion adapter into the weights; plain LoRAs are fused anyway")
    return found


def _adapter_for(template: str | None, subject: str) -> str | None:
    if template is None:
        return None
    try:
        path = template.format(subject=subject)
    except (KeyError, IndexError, ValueError) as exc:
        raise GenerateError(f"--adapter_file {template!r}: only {{subject}} may appear in braces ({exc})") from exc
    from ..adapters import read_adapter

    read_adapter(path)  # fail before any model is loaded: missing, unreadable, or not our file
    return path


def build_jobs(args, ours: str | None = None) -> list[SubjectJob]:
    """One job per subject; ``ours``: the delora-diffusion adapter path template (None: base model)."""
    if args.prompt:
        for text in args.prompt:  # braces other than the two placeholders would fail at render time
            try:
                text.format(token="", class_noun="")
            except (KeyError, IndexError, ValueError) as exc:
                raise GenerateError(
                    f"--prompt {text!r}: only {{token}} and {{class_noun}} may appear in braces ({exc!r})"
                ) from exc
    templates = args.prompt or (read_prompt_file(args.prompt_file) if args.prompt_file else None)
    verbatim = verbatim_templates(templates or []) if args.prompt_file else []
    if verbatim:
        print(
            f"warning: --prompt_file {args.prompt_file}: {len(verbatim)} line(s) have neither {{token}} nor "
            f"{{class_noun}} and are used as written, without the identifier: {verbatim[0]!r}",
            file=sys.stderr,
        )
    jobs = []
    for subject, class_noun in _subject_classes(args):
        layout.check_subject_name(subject)
        job_templates = templates or templates_for(class_noun, args.prompt_set)
        jobs.append(
            SubjectJob(
                subject=subject,
                class_noun=class_noun,
                token=args.token,
                prompts=subject_prompts(job_templates, args.token, class_noun),
                adapter=_adapter_for(ours, subject),
            )
        )
    return jobs


def run_dreambooth(args) -> list[tuple[Plan, int, int, float]]:
    """Plan every subject, load the pipeline once, render what is missing; returns (plan, images of this call,
    written, seconds) per subject."""
    from ..adapters.io import read_adapter_metadata
    from .pipeline import apply_adapter, load_pipeline, remove_adapter, resolve_device, resolve_dtype
    from .plain_lora import fuse_plain_loras
    from .sampling import default_size, sample_images

    adapters = split_adapters(args)
    jobs = build_jobs(args, adapters.ours)
    prepare_output(args)
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
    except ValueError as exc:
        raise GenerateError(f"--device/--dtype: {exc}") from exc
    pipe = load_pipeline(
        args.pretrained_model_name_or_path,
        revision=args.revision,
        variant=args.variant,
        single_file_config=args.single_file_config,
        dtype=dtype,
        device=device,
        scheduler=args.scheduler,
        safety_checker=not args.disable_safety_checker,
        zero_terminal_snr=args.zero_terminal_snr,
    )
    fuse_plain_loras(pipe, adapters.plain)  # once: they are the same for every subject
    default_h, default_w = default_size(pipe)
    height, width = args.height or default_h, args.width or default_w
    seeds = [args.seed + k for k in range(args.num_images_per_prompt)]
    plans = []
    for job in jobs:  # plan all first: a settings clash stops the run before any image is made
        common = {
            "adapter": None,
            "adapter_sha256": None,
            "adapter_method": None,
            "scale": adapters.ours_scale,
            "loras": [lora.record() for lora in adapters.plain] or None,
            **common_fields(args, str(dtype).removeprefix("torch."), height, width),
        }
        if job.adapter is not None:  # the header only: the tensors are read once, when the adapter is applied
            metadata = read_adapter_metadata(job.adapter)
            zero_snr_warning(args, metadata, job.adapter)
            common.update(
                adapter=job.adapter, adapter_sha256=file_sha256(job.adapter), adapter_method=metadata["method"]
            )
        folder = Path(args.output_dir) / layout.check_subject_name(job.subject)
        plans.append(plan_folder(job.subject, folder, subject_records(job, seeds, common), args.overwrite))

    def sample(batch):
        return sample_images(
            pipe,
            [r["prompt"] for _, r in batch],
            [r["seed"] for _, r in batch],
            negative_prompt=args.negative_prompt or None,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
            height=height,
            width=width,
        )

    results = []
    for job, plan in zip(jobs, plans):
        start = time.perf_counter()
        if plan.todo:
            if job.adapter is not None:
                apply_adapter(
                    pipe,
                    job.adapter,
                    scale=adapters.ours_scale,
                    merge=args.merge,
                    base_model=args.pretrained_model_name_or_path,
                )
            else:
                remove_adapter(pipe)
        written = (
            render([(plan, r) for r in plan.todo], args.batch_size, sample, not args.no_progress, desc=job.subject)[
                job.subject
            ]
            if plan.todo
            else 0
        )
        if not args.no_contact_sheet and (written or not (plan.folder / SHEET_FILE).exists()):
            contact_sheet(plan.folder, list(plan.records.values()))
        results.append((plan, len(job.prompts) * len(seeds), written, time.perf_counter() - start))
    return results


def _report(args, results: list[tuple[Plan, int, int, float]]) -> None:
    for plan, total, written, seconds in results:
        rate = f", {written / seconds:.2f} images/s" if written else ""
        sheet = "" if args.no_contact_sheet else f"; contact sheet: {plan.folder / SHEET_FILE}"
        print(
            f"{plan.name}: {total} images in {plan.folder} ({written} generated, {total - written} kept"
            f"{rate}); metadata: {plan.folder / layout.METADATA_FILE}{sheet}"
        )


def dreambooth_main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The ``dreambooth`` subcommand; returns the exit status (2 for a user error, printed without traceback)."""
    return run_command(prog, dreambooth_parser(prog), argv, _check_args, run_dreambooth, _report)


# Subcommand name -> entry taking (argv, prog).
SUBCOMMANDS: dict[str, Callable[..., int]] = {"dreambooth": dreambooth_main, "semantic": semantic_main}
DEFAULT_SUBCOMMAND = "dreambooth"


def main(argv: list[str] | None = None) -> int:
    """``generate.py [SUBCOMMAND] --flags``; without a subcommand name, ``dreambooth`` runs."""
    prog = PROG if argv is not None else Path(sys.argv[0]).name  # generate.py or delora-generate
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:], prog=f"{prog} {argv[0]}")
    return SUBCOMMANDS[DEFAULT_SUBCOMMAND](argv, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
