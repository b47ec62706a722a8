"""``generate.py semantic``: images from semantic maps, with an adapter file from ``train_semantic.py``.

The adapter file holds the UNet adapter and the control module (hint encoder or ControlNet) with its
configuration, so ``--adapter`` is all a run needs besides the base model and the maps. Every map is
fitted to the output size (its centred region of the output's aspect ratio, nearest-neighbour resize);
its prompt is its caption (``--captions``, matched by file stem; a map without one gets the empty prompt
and is counted) or ``--prompt``. Sample k of every map uses seed ``--seed + k``. The control reaches both
classifier-free-guidance branches (the hint features are added to the unconditional and the conditional
half of the batch; diffusers' ControlNet pipeline does the same outside guess mode). Defaults follow the
OFT / ETHER / DeLoRA S2I sampling (``defaults.SEMANTIC``; the sampling itself: ``controlled.py``).

Layout (the generated-images contract, one "subject" folder per map, prompt index 0):
``OUT/<map stem>/00/<seed>.png``, ``OUT/<map stem>/metadata.jsonl`` and ``OUT/<map stem>/map.png`` (the
fitted colour map the images were generated from). Each record adds to the DreamBooth fields ``map``,
``map_file``, ``map_sha256``, ``map_size`` (width, height) and ``map_crop`` (left, top, right, bottom: the
region of the map file the image shows), which is what ``delora-eval semantic`` scores against.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..data.semantic_files import IMAGE_EXTENSIONS, read_captions
from ..data.semantic_maps import MAP_EXTENSIONS, center_box, default_palette, fit_map, open_map, read_palette
from ..fileio import file_sha256
from ..models.families import SD
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
from .defaults import SEMANTIC

PROG = "generate.py semantic"
CONTROL_MAP_FILE = "map.png"
PROMPT_INDEX = 0
# Besides layout.SETTINGS_FIELDS, what decides an image's pixels here.
SEMANTIC_SETTINGS = ("map_sha256", "map_crop", "control_scale")


# --- planning ---------------------------------------------------------------------------------------------------


@dataclass
class MapJob:
    stem: str
    path: Path
    prompt: str
    caption_found: bool


def list_maps(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise GenerateError(
            f"--maps {folder} is not a folder" if folder.exists() else f"--maps {folder} does not exist"
        )
    suffixes = set(MAP_EXTENSIONS) | set(IMAGE_EXTENSIONS)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )
    if not files:
        raise GenerateError(f"--maps {folder} contains no map images ({', '.join(sorted(suffixes))})")
    return files


def build_jobs(args) -> list[MapJob]:
    files = list_maps(Path(args.maps))
    if args.limit:
        files = files[: args.limit]
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise GenerateError(f"--maps {args.maps} has several files for {duplicates[0]!r}; keep one per stem")
    captions = read_captions(args.captions) if args.captions else {}
    jobs = []
    for path in files:
        layout.check_subject_name(path.stem)
        if args.prompt is not None:
            jobs.append(MapJob(path.stem, path, args.prompt, True))
        else:
            caption = captions.get(path.stem)
            jobs.append(MapJob(path.stem, path, caption or "", caption is not None))
    return jobs


def map_records(job: MapJob, seeds: list[int], map_fields: dict, common: dict) -> list[dict]:
    """One metadata record per image of one map (``map_fields``: its file, hash, size and crop)."""
    return [
        {
            "subject": job.stem,
            "map": job.stem,
            "prompt_index": PROMPT_INDEX,
            "prompt": job.prompt,
            "caption_found": job.caption_found,
            "seed": seed,
            "file": layout.image_file(PROMPT_INDEX, seed),
            **map_fields,
            "control_map": CONTROL_MAP_FILE,
            **common,
        }
        for seed in seeds
    ]


# --- command line -----------------------------------------------------------------------------------------------


def semantic_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = new_parser(
        prog,
        description="Generate images from semantic maps with a base Stable Diffusion model and an adapter file "
        "written by train_semantic.py (adapter + hint encoder or ControlNet).",
        epilog="Layout: OUT/<map stem>/00/<seed>.png, OUT/<map stem>/metadata.jsonl, OUT/<map stem>/map.png. "
        "Sample k of every map uses seed --seed + k. Re-running skips images already generated with the "
        "same settings.",
    )
    model = add_model_args(
        parser,
        base_help="base pipeline: diffusers folder, hub id or single file (the one the adapter was trained on)",
        adapter_help="adapter.safetensors from train_semantic.py (holds the control module too)",
        adapter_required=True,
    )
    model.add_argument(
        "--control_scale",
        type=float,
        default=1.0,
        help="strength of the control (hint features / ControlNet residuals; default 1)",
    )

    data = parser.add_argument_group("maps and prompts")
    data.add_argument(
        "--maps",
        required=True,
        metavar="DIR",
        help="folder of maps: colour maps, or class-id annotations (coloured with --palette)",
    )
    data.add_argument(
        "--captions",
        metavar="FILE",
        help="caption file (JSON lines or JSON, matched by file stem, "
        "e.g. ADE20K's prompt_validation_blip.json); maps without a caption get the empty prompt",
    )
    data.add_argument("--prompt", help="one prompt for every map instead of captions")
    data.add_argument("--palette", metavar="FILE", help="colours of class-id annotations (default: ADE20K's 150)")
    data.add_argument("--limit", type=int, metavar="N", help="only the first N maps (sorted by name)")

    add_sampling_args(parser, SEMANTIC, per="map")
    add_output_args(parser, help="OUT: images go to OUT/<map stem>/")
    return parser


def _check_args(parser, args) -> None:
    check_common_args(parser, args, per="map")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.control_scale < 0:
        parser.error(f"--control_scale must be >= 0, got {args.control_scale}")
    if args.prompt is not None and args.captions:
        parser.error("give either --captions or --prompt, not both")


def run_semantic(args) -> tuple[list[tuple[Plan, MapJob, int]], float]:
    """Plan every map, load the pipeline once, render what is missing; returns ([(plan, job, written)], seconds)."""
    from .controlled import load_semantic_pipeline, sample_semantic
    from .pipeline import resolve_device, resolve_dtype
    from .sampling import default_size

    jobs = build_jobs(args)
    palette = read_palette(args.palette)[1] if args.palette else default_palette()[1]
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
    except ValueError as exc:
        raise GenerateError(f"--device/--dtype: {exc}") from exc
    pipe, kind, control, loaded = load_semantic_pipeline(
        args.pretrained_model_name_or_path,
        args.adapter,
        scale=args.scale,
        merge=args.merge,
        dtype=dtype,
        device=device,
        scheduler=args.scheduler,
        safety_checker=not args.disable_safety_checker,
        revision=args.revision,
        variant=args.variant,
        zero_terminal_snr=args.zero_terminal_snr,
        single_file_config=args.single_file_config,
    )
    zero_snr_warning(args, loaded.file.metadata, args.adapter)
    default_h, default_w = default_size(pipe)
    height, width = args.height or default_h, args.width or default_w
    common = {
        "adapter": str(args.adapter),
        "adapter_sha256": loaded.sha256,
        "adapter_method": loaded.method,
        "scale": float(args.scale),
        "control": kind,
        "control_scale": float(args.control_scale),
        **common_fields(args, str(dtype).removeprefix("torch."), height, width),
    }
    seeds = [args.seed + k for k in range(args.num_images_per_map)]
    prepare_output(args)
    plans = []
    for job in jobs:  # plan all first: a settings clash stops the run before any image is made
        source = open_map(job.path)  # checked here; fitted (colour-mapped and resized) only when rendered
        map_fields = {
            "map_file": str(job.path),
            "map_sha256": file_sha256(job.path),
            "map_size": list(source.size),
            "map_crop": list(center_box(*source.size, width, height)),
        }
        plans.append(
            plan_folder(
                job.stem,
                Path(args.output_dir) / job.stem,
                map_records(job, seeds, map_fields, common),
                args.overwrite,
                SEMANTIC_SETTINGS,
            )
        )
    paths = {job.stem: job.path for job in jobs}
    fitted = {}  # the fitted maps of the current batch only (data sets have thousands)

    def control_map(plan: Plan):
        if plan.name not in fitted:
            fitted[plan.name] = fit_map(open_map(paths[plan.name]), width, height, palette)[0]
        return fitted[plan.name]

    def sample(batch):
        for stem in [s for s in fitted if s not in {plan.name for plan, _ in batch}]:
            del fitted[stem]
        return sample_semantic(
            pipe,
            kind,
            control,
            [control_map(plan) for plan, _ in batch],
            [r["prompt"] for _, r in batch],
            [r["seed"] for _, r in batch],
            control_scale=args.control_scale,
            negative_prompt=args.negative_prompt or None,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
            height=height,
            width=width,
        )

    started = time.perf_counter()
    written = render(
        [(plan, record) for plan in plans for record in plan.todo],
        args.batch_size,
        sample,
        not args.no_progress,
        on_first_image=lambda plan: layout.write_image(plan.folder / CONTROL_MAP_FILE, control_map(plan)),
    )
    return [(plan, job, written.get(plan.name, 0)) for plan, job in zip(plans, jobs)], time.perf_counter() - started


def _report(args, outcome: tuple[list[tuple[Plan, MapJob, int]], float]) -> None:
    results, seconds = outcome
    total = sum(len(plan.records) for plan, _, _ in results)
    made = sum(written for _, _, written in results)
    missing = sum(not job.caption_found for _, job, _ in results)
    rate = f", {made / seconds:.2f} images/s" if made else ""
    print(f"{len(results)} maps, {total} images in {args.output_dir} ({made} generated, {total - made} kept{rate})")
    if missing:
        print(
            f"warning: {missing} of {len(results)} maps have no caption"
            f"{' in ' + args.captions if args.captions else ' (no --captions given)'}: generated with the empty prompt",
            file=sys.stderr,
        )


def semantic_main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The ``semantic`` subcommand; returns the exit status (2 for a user error, printed without traceback)."""
    return run_command(prog, semantic_parser(prog), argv, _check_args, run_semantic, _report, families=(SD,))
