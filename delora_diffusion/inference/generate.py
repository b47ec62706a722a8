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

from tqdm.auto import tqdm

from .. import layout
from ..adapters import AdapterFileError, read_adapter
from ..configfile import add_config_arg, parse_args
from ..data.prompts import DEFAULT_TOKEN, read_class_nouns
from ..fileio import file_sha256, folder_problem, remove_stale_temporaries
from ..threads import add_thread_arg, apply_threads
from .pipeline import (
    PipelineLoadError, apply_adapter, load_pipeline, remove_adapter, resolve_device,
    resolve_dtype,
)
from .contact_sheet import SHEET_FILE, contact_sheet
from .prompt_sets import (
    PROMPT_SETS, PromptFileError, SubjectPrompt, read_prompt_file, subject_prompts, templates_for, verbatim_templates,
)
from .sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, default_size, sample_images
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS
from .semantic import semantic_main

PROG = "generate.py"
CLASS_TABLE = "prompts_and_classes.txt"


class GenerateError(ValueError):
    """A user error found while planning or running a generation (printed as ``prog: error: ...``)."""


@dataclass
class Sampling:
    """How every image is rendered (shared by all subjects of one call). Sizes in pixels, None = model default."""

    num_images_per_prompt: int = 4
    seed: int = 0
    num_inference_steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    batch_size: int = 4

    def seeds(self) -> list[int]:
        """Seed of image k (of every prompt) is ``seed + k``."""
        return [self.seed + k for k in range(self.num_images_per_prompt)]


@dataclass
class SubjectJob:
    """One subject to render: its prompts and the adapter file (None = base model)."""

    subject: str
    class_noun: str
    token: str | None
    prompts: list[SubjectPrompt]
    adapter: str | None = None


@dataclass
class SubjectPlan:
    job: SubjectJob
    folder: Path
    records: dict[tuple[int, int], dict]  # what metadata.jsonl will hold (kept + planned)
    todo: list[dict] = field(default_factory=list)  # records of the images still to render


# --- planning ---------------------------------------------------------------------------------------------------

def plan_subject(job: SubjectJob, output_dir: Path, sampling: Sampling, common: dict, overwrite: bool = False) -> SubjectPlan:
    """Decide which images of ``job`` to render: an image is kept when its PNG exists and its metadata
    record has the same settings; a record with other settings is an error unless ``overwrite``.

    ``common`` holds the record fields shared by every image (base model, dtype, adapter hash, ...).
    """
    folder = output_dir / layout.check_subject_name(job.subject)
    records = layout.read_metadata(folder)
    plan = SubjectPlan(job=job, folder=folder, records=records)
    for prompt in job.prompts:
        for seed in sampling.seeds():
            record = {
                "subject": job.subject, "prompt_index": prompt.index, "prompt": prompt.prompt,
                "class_prompt": prompt.class_prompt, "token": job.token or None, "class_noun": job.class_noun,
                "seed": seed, "file": layout.image_file(prompt.index, seed), **common,
            }
            existing = records.get(layout.record_key(record))
            if existing is not None:
                difference = layout.settings_mismatch(existing, record)
                if difference is None and layout.is_intact_image(folder / existing["file"]):
                    continue
                if difference is not None and not overwrite:
                    raise GenerateError(
                        f"{folder / existing['file']} was generated with other settings ({difference}); "
                        "use another --output_dir, or --overwrite to regenerate"
                    )
            plan.todo.append(record)
    return plan


def _common_fields(args, dtype, height: int, width: int) -> dict:
    return {
        "adapter": None, "adapter_sha256": None, "adapter_method": None, "scale": float(args.scale),
        "merged": bool(args.merge), "base_model": str(args.pretrained_model_name_or_path),
        "revision": args.revision, "variant": args.variant, "num_inference_steps": args.num_inference_steps,
        "guidance_scale": float(args.guidance_scale), "scheduler": args.scheduler,
        "negative_prompt": args.negative_prompt or None, "height": height, "width": width,
        "dtype": str(dtype).removeprefix("torch."),
    }


# --- rendering --------------------------------------------------------------------------------------------------

def render_plan(pipe, plan: SubjectPlan, sampling: Sampling, progress: bool = True) -> int:
    """Render ``plan.todo`` in batches, writing each image and then the metadata; returns images written."""
    if not plan.todo:
        return 0
    written = 0
    with tqdm(total=len(plan.todo), desc=plan.job.subject, unit="img", disable=not progress) as bar:
        for start in range(0, len(plan.todo), sampling.batch_size):
            batch = plan.todo[start:start + sampling.batch_size]
            samples = sample_images(
                pipe, [r["prompt"] for r in batch], [r["seed"] for r in batch],
                negative_prompt=sampling.negative_prompt, num_inference_steps=sampling.num_inference_steps,
                guidance_scale=sampling.guidance_scale, height=sampling.height, width=sampling.width,
            )
            for record, image, flagged in zip(batch, samples.images, samples.nsfw):
                record = {**record, "nsfw": flagged}
                layout.write_image(plan.folder / record["file"], image, record)
                plan.records[layout.record_key(record)] = record
            # Metadata after the images: a record on disk always points at a complete image.
            layout.write_metadata(plan.folder, plan.records)
            written += len(batch)
            bar.update(len(batch))
    return written


# --- command line -----------------------------------------------------------------------------------------------

def dreambooth_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate the DreamBooth evaluation images of one or more subjects, with a base Stable "
                    "Diffusion model and an optional delora-diffusion adapter. Subcommands: "
                    f"{', '.join(SUBCOMMANDS)}; without one, {DEFAULT_SUBCOMMAND} runs.",
        epilog="Layout: OUT/<subject>/<prompt_index:02d>/<seed>.png and OUT/<subject>/metadata.jsonl. "
               "Image k of every prompt uses seed --seed + k. Re-running skips images already generated "
               "with the same settings.",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--pretrained_model_name_or_path", required=True, metavar="PATH_OR_ID",
                       help="base pipeline: diffusers folder or hub id "
                            "(e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)")
    model.add_argument("--revision", help="hub revision of the base model")
    model.add_argument("--variant", help="weight variant of the base model (e.g. fp16)")
    model.add_argument("--adapter", metavar="FILE", help="adapter.safetensors from delora-diffusion (its method and config are read "
                                         "from the file); may contain {subject}. Omit for base-model baselines")
    model.add_argument("--scale", type=float, default=1.0, help="adapter strength s >= 0: W + s(W' - W) (default 1)")
    model.add_argument("--merge", action="store_true", help="fold the adapter into the weights (faster sampling)")
    model.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                       help="base weights dtype; auto = float16 on CUDA, float32 otherwise (adapters stay fp32)")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    model.add_argument("--disable_safety_checker", action="store_true",
                       help="drop the checkpoint's safety checker (it blacks out flagged images)")

    subjects = parser.add_argument_group("subjects")
    one_or_many = subjects.add_mutually_exclusive_group()
    one_or_many.add_argument("--subject", metavar="NAME", help="subject name (names the output folder), e.g. dog")
    one_or_many.add_argument("--subjects", metavar="NAMES", help="comma-separated subject names, or 'all', read with --class_nouns")
    subjects.add_argument("--class_noun", metavar="NOUN", help="class noun of --subject, e.g. dog (picks object or live prompts)")
    subjects.add_argument("--class_nouns", metavar="PATH", help=f"subject,class table: a DreamBooth dataset folder (its {CLASS_TABLE}), "
                                                "that file, or a 'subject,class' CSV")
    subjects.add_argument("--token", default=DEFAULT_TOKEN,
                          help="identifier token in the prompts (default: %(default)s; '' = class-only prompts)")

    prompts = parser.add_argument_group("prompts")
    prompts.add_argument("--prompt_set", default="auto", choices=PROMPT_SETS,
                         help="DreamBooth prompts: auto = live-subject prompts for dog/cat, object prompts otherwise")
    prompts.add_argument("--prompt_file", metavar="FILE", help="instead: one prompt template per line, with {token} and {class_noun}")
    prompts.add_argument("--prompt", action="append", metavar="TEXT",
                         help="instead: a prompt to render (repeatable), as written or with {token}/{class_noun}; "
                              "the images go to OUT/<--subject> (default: prompts)")
    prompts.add_argument("--negative_prompt", metavar="TEXT", help="negative prompt for every image (default: none)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--num_images_per_prompt", type=int, default=4, metavar="N", help="default: %(default)s")
    sampling.add_argument("--seed", type=int, default=0, help="base seed: image k of each prompt uses seed + k")
    sampling.add_argument("--num_inference_steps", type=int, default=DEFAULT_STEPS, metavar="N",
                          help="default: %(default)s")
    sampling.add_argument("--guidance_scale", type=float, default=DEFAULT_GUIDANCE, help="default: %(default)s")
    sampling.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=list(SCHEDULERS),
                          help="solver built from the checkpoint's scheduler config (default: %(default)s)")
    sampling.add_argument("--height", type=int, help="pixels (default: the model's resolution)")
    sampling.add_argument("--width", type=int, help="pixels (default: the model's resolution)")
    sampling.add_argument("--batch_size", type=int, default=4, metavar="N",
                          help="images per pipeline call; does not change the images (default: %(default)s)")

    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", required=True, metavar="OUT", help="OUT: images go to OUT/<subject>/")
    output.add_argument("--overwrite", action="store_true",
                        help="regenerate images that exist with other settings instead of stopping")
    output.add_argument("--no_progress", action="store_true", help="no progress bar")
    output.add_argument("--no_contact_sheet", action="store_true",
                        help=f"skip OUT/<subject>/{SHEET_FILE} (each prompt's first image with the prompt under it)")
    add_thread_arg(output)
    return parser


def _check_args(parser: argparse.ArgumentParser, args) -> None:
    positive = ("num_images_per_prompt", "num_inference_steps", "batch_size")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.guidance_scale < 0:
        parser.error(f"--guidance_scale must be >= 0, got {args.guidance_scale}")
    if args.scale < 0:
        parser.error(f"--scale must be >= 0, got {args.scale}")
    if args.adapter is None and (args.scale != 1.0 or args.merge):
        parser.error("--scale and --merge act on an adapter: pass --adapter too")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < 8 or value % 8):
            parser.error(f"--{name} must be a positive multiple of 8, got {value}")
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
    if args.prompt:
        pass  # one folder, the prompts as given
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
    problem = folder_problem(args.output_dir)
    if problem:  # before the pipeline loads, not after the first batch
        parser.error(f"--output_dir {args.output_dir} {problem}")


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


def _adapter_for(template: str | None, subject: str) -> str | None:
    if template is None:
        return None
    try:
        path = template.format(subject=subject)
    except (KeyError, IndexError, ValueError) as exc:
        raise GenerateError(f"--adapter {template!r}: only {{subject}} may appear in braces ({exc})") from exc
    read_adapter(path)  # fail before any model is loaded: missing, unreadable, or not our file
    return path


def build_jobs(args) -> list[SubjectJob]:
    if args.prompt:
        for text in args.prompt:  # braces other than the two placeholders would fail at render time
            try:
                text.format(token="", class_noun="")
            except (KeyError, IndexError, ValueError) as exc:
                raise GenerateError(f"--prompt {text!r}: only {{token}} and {{class_noun}} may appear in braces "
                                    f"({exc!r})") from exc
    templates = args.prompt or (read_prompt_file(args.prompt_file) if args.prompt_file else None)
    verbatim = verbatim_templates(templates or []) if args.prompt_file else []
    if verbatim:
        print(f"warning: --prompt_file {args.prompt_file}: {len(verbatim)} line(s) have neither {{token}} nor "
              f"{{class_noun}} and are used as written, without the identifier: {verbatim[0]!r}", file=sys.stderr)
    jobs = []
    for subject, class_noun in _subject_classes(args):
        layout.check_subject_name(subject)
        job_templates = templates or templates_for(class_noun, args.prompt_set)
        jobs.append(SubjectJob(subject=subject, class_noun=class_noun, token=args.token,
                               prompts=subject_prompts(job_templates, args.token, class_noun),
                               adapter=_adapter_for(args.adapter, subject)))
    return jobs


def run_dreambooth(args) -> list[tuple[SubjectPlan, int, float]]:
    """Plan every subject, load the pipeline once, render what is missing; returns (plan, written, seconds)."""
    jobs = build_jobs(args)
    removed = remove_stale_temporaries(args.output_dir)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run, e.g. {removed[0]}", file=sys.stderr)
    print(f"{apply_threads(args)} CPU thread(s) per process (--num_threads)", file=sys.stderr)
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
    except ValueError as exc:
        raise GenerateError(f"--device/--dtype: {exc}") from exc
    pipe = load_pipeline(args.pretrained_model_name_or_path, revision=args.revision, variant=args.variant,
                         dtype=dtype, device=device, scheduler=args.scheduler,
                         safety_checker=not args.disable_safety_checker)
    default_h, default_w = default_size(pipe)
    height, width = args.height or default_h, args.width or default_w
    sampling = Sampling(num_images_per_prompt=args.num_images_per_prompt, seed=args.seed,
                        num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                        negative_prompt=args.negative_prompt or None, height=height, width=width,
                        batch_size=args.batch_size)
    output_dir = Path(args.output_dir)
    plans = []
    for job in jobs:  # plan all first: a settings clash stops the run before any image is made
        common = _common_fields(args, dtype, height, width)
        if job.adapter is not None:
            adapter_file = read_adapter(job.adapter)
            common.update(adapter=job.adapter, adapter_sha256=file_sha256(job.adapter),
                          adapter_method=adapter_file.config.method)
        plans.append(plan_subject(job, output_dir, sampling, common, overwrite=args.overwrite))
    results = []
    for plan in plans:
        start = time.perf_counter()
        if plan.todo:
            if plan.job.adapter is not None:
                apply_adapter(pipe, plan.job.adapter, scale=args.scale, merge=args.merge,
                              base_model=args.pretrained_model_name_or_path)
            else:
                remove_adapter(pipe)
        written = render_plan(pipe, plan, sampling, progress=not args.no_progress)
        if not args.no_contact_sheet and (written or not (plan.folder / SHEET_FILE).exists()):
            contact_sheet(plan.folder, list(plan.records.values()))
        results.append((plan, written, time.perf_counter() - start))
    return results


def dreambooth_main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The ``dreambooth`` subcommand; returns the exit status (2 for a user error, printed without traceback)."""
    parser = dreambooth_parser(prog)
    args = parse_args(parser, argv)
    _check_args(parser, args)
    try:
        results = run_dreambooth(args)
    except (GenerateError, AdapterFileError, PipelineLoadError, PromptFileError, layout.LayoutError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for plan, written, seconds in results:
        total = len(plan.job.prompts) * args.num_images_per_prompt
        rate = f", {written / seconds:.2f} images/s" if written else ""
        sheet = "" if args.no_contact_sheet else f"; contact sheet: {plan.folder / SHEET_FILE}"
        print(f"{plan.job.subject}: {total} images in {plan.folder} ({written} generated, {total - written} kept"
              f"{rate}); metadata: {plan.folder / layout.METADATA_FILE}{sheet}")
    return 0


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
