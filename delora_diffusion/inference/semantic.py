"""``generate.py semantic``: images from semantic maps, with an adapter file from ``train_semantic.py``.

The adapter file holds the UNet adapter and the control module (hint encoder or ControlNet) with its
configuration, so ``--adapter`` is all a run needs besides the base model and the maps. Every map is
fitted to the output size (its centred region of the output's aspect ratio, nearest-neighbour resize);
its prompt is its caption (``--captions``, matched by file stem; a map without one gets the empty prompt
and is counted) or ``--prompt``. Sample k of every map uses seed ``--seed + k``. The control reaches both
classifier-free-guidance branches (the hint features are added to the unconditional and the conditional
half of the batch; diffusers' ControlNet pipeline does the same outside guess mode). Defaults follow the
OFT / ETHER / DeLoRA S2I sampling: DDIM, 50 steps, guidance 9.0 (the sampling itself: ``controlled.py``).

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
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from .. import layout
from ..adapters import AdapterFileError
from ..configfile import add_config_arg, parse_args
from ..data.semantic import IMAGE_EXTENSIONS, SemanticDataError, read_captions
from ..data.semantic_maps import (
    MAP_EXTENSIONS, MapError, center_box, default_palette, fit_map, open_map, read_palette,
)
from ..fileio import file_sha256, folder_problem, remove_stale_temporaries
from ..models.control import ControlFileError
from ..threads import add_thread_arg, apply_threads
from .controlled import (
    DEFAULT_GUIDANCE, DEFAULT_SCHEDULER, DEFAULT_STEPS, load_semantic_pipeline, sample_semantic,
)
from .pipeline import PipelineLoadError, resolve_device, resolve_dtype
from .sampling import default_size
from .schedulers import SCHEDULERS

PROG = "generate.py semantic"
CONTROL_MAP_FILE = "map.png"
PROMPT_INDEX = 0
# Besides layout.SETTINGS_FIELDS, what decides an image's pixels here.
SEMANTIC_SETTINGS = ("map_sha256", "map_crop", "control_scale")


class SemanticGenerateError(ValueError):
    """A user error of ``generate.py semantic`` (printed as ``prog: error: ...``)."""


# --- planning ---------------------------------------------------------------------------------------------------

@dataclass
class MapJob:
    stem: str
    path: Path
    prompt: str
    caption_found: bool


@dataclass
class MapPlan:
    job: MapJob
    folder: Path
    records: dict[tuple[int, int], dict]
    todo: list[dict] = field(default_factory=list)


def list_maps(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SemanticGenerateError(f"--maps {folder} is not a folder" if folder.exists() else
                                    f"--maps {folder} does not exist")
    suffixes = set(MAP_EXTENSIONS) | set(IMAGE_EXTENSIONS)
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)
    if not files:
        raise SemanticGenerateError(f"--maps {folder} contains no map images ({', '.join(sorted(suffixes))})")
    return files


def build_jobs(args) -> list[MapJob]:
    files = list_maps(Path(args.maps))
    if args.limit:
        files = files[:args.limit]
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise SemanticGenerateError(f"--maps {args.maps} has several files for {duplicates[0]!r}; keep one per stem")
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


def plan_map(job: MapJob, output_dir: Path, seeds: list[int], common: dict, map_fields: dict,
             overwrite: bool = False) -> MapPlan:
    """Which images of one map to render: kept when the PNG exists with the same settings (see
    ``layout.settings_mismatch`` and ``SEMANTIC_SETTINGS``); other settings are an error unless ``overwrite``."""
    folder = output_dir / job.stem
    records = layout.read_metadata(folder)
    plan = MapPlan(job, folder, records)
    for seed in seeds:
        record = {"subject": job.stem, "map": job.stem, "prompt_index": PROMPT_INDEX, "prompt": job.prompt,
                  "caption_found": job.caption_found, "seed": seed, "file": layout.image_file(PROMPT_INDEX, seed),
                  **map_fields, "control_map": CONTROL_MAP_FILE, **common}
        existing = records.get(layout.record_key(record))
        if existing is not None:
            difference = layout.settings_mismatch(existing, record) or next(
                (f"{k}: {existing.get(k)!r} -> {record.get(k)!r}" for k in SEMANTIC_SETTINGS
                 if existing.get(k) != record.get(k)), None)
            if difference is None and layout.is_intact_image(folder / existing["file"]):
                continue
            if difference is not None and not overwrite:
                raise SemanticGenerateError(f"{folder / existing['file']} was generated with other settings "
                                            f"({difference}); use another --output_dir, or --overwrite")
        plan.todo.append(record)
    return plan


# --- command line -----------------------------------------------------------------------------------------------

def semantic_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate images from semantic maps with a base Stable Diffusion model and an adapter file "
                    "written by train_semantic.py (adapter + hint encoder or ControlNet).",
        epilog="Layout: OUT/<map stem>/00/<seed>.png, OUT/<map stem>/metadata.jsonl, OUT/<map stem>/map.png. "
               "Sample k of every map uses seed --seed + k. Re-running skips images already generated with the "
               "same settings.",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--pretrained_model_name_or_path", required=True, metavar="PATH_OR_ID",
                       help="base pipeline: diffusers folder or hub id (the one the adapter was trained on)")
    model.add_argument("--revision")
    model.add_argument("--variant")
    model.add_argument("--adapter", required=True, metavar="FILE",
                       help="adapter.safetensors from train_semantic.py (holds the control module too)")
    model.add_argument("--scale", type=float, default=1.0, help="adapter strength s >= 0 (default 1)")
    model.add_argument("--merge", action="store_true", help="fold the adapter into the UNet weights")
    model.add_argument("--control_scale", type=float, default=1.0,
                       help="strength of the control (hint features / ControlNet residuals; default 1)")
    model.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    model.add_argument("--device", default="auto")
    model.add_argument("--disable_safety_checker", action="store_true",
                       help="drop the checkpoint's safety checker (flagged images are black, which biases the metrics)")

    data = parser.add_argument_group("maps and prompts")
    data.add_argument("--maps", required=True, metavar="DIR",
                      help="folder of maps: colour maps, or class-id annotations (coloured with --palette)")
    data.add_argument("--captions", metavar="FILE", help="caption file (JSON lines or JSON, matched by file stem, "
                      "e.g. ADE20K's prompt_validation_blip.json); maps without a caption get the empty prompt")
    data.add_argument("--prompt", help="one prompt for every map instead of captions")
    data.add_argument("--palette", metavar="FILE", help="colours of class-id annotations (default: ADE20K's 150)")
    data.add_argument("--limit", type=int, metavar="N", help="only the first N maps (sorted by name)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--num_images_per_map", type=int, default=4, metavar="N", help="default: %(default)s")
    sampling.add_argument("--seed", type=int, default=0, help="base seed: sample k of each map uses seed + k")
    sampling.add_argument("--num_inference_steps", type=int, default=DEFAULT_STEPS, help="default: %(default)s")
    sampling.add_argument("--guidance_scale", type=float, default=DEFAULT_GUIDANCE, help="default: %(default)s")
    sampling.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=list(SCHEDULERS),
                          help="default: %(default)s")
    sampling.add_argument("--negative_prompt")
    sampling.add_argument("--height", type=int, help="pixels (default: the model's resolution)")
    sampling.add_argument("--width", type=int, help="pixels (default: the model's resolution)")
    sampling.add_argument("--batch_size", type=int, default=4, help="images per pipeline call (default: %(default)s)")

    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", required=True, metavar="OUT")
    output.add_argument("--overwrite", action="store_true",
                        help="regenerate images that exist with other settings instead of stopping")
    output.add_argument("--no_progress", action="store_true")
    add_thread_arg(output)
    return parser


def _check_args(parser, args) -> None:
    for name in ("num_images_per_map", "num_inference_steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    for name in ("seed", "guidance_scale", "scale", "control_scale"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < 8 or value % 8):
            parser.error(f"--{name} must be a positive multiple of 8, got {value}")
    if args.prompt is not None and args.captions:
        parser.error("give either --captions or --prompt, not both")
    problem = folder_problem(args.output_dir)
    if problem:
        parser.error(f"--output_dir {args.output_dir} {problem}")


def run_semantic(args) -> tuple[list[tuple[MapPlan, int]], float]:
    """Plan every map, load the pipeline once, render what is missing; returns ([(plan, written)], seconds)."""
    jobs = build_jobs(args)
    palette = read_palette(args.palette)[1] if args.palette else default_palette()[1]
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
    except ValueError as exc:
        raise SemanticGenerateError(f"--device/--dtype: {exc}") from exc
    pipe, kind, control, loaded = load_semantic_pipeline(
        args.pretrained_model_name_or_path, args.adapter, scale=args.scale, merge=args.merge, dtype=dtype,
        device=device, scheduler=args.scheduler, safety_checker=not args.disable_safety_checker,
        revision=args.revision, variant=args.variant)
    default_h, default_w = default_size(pipe)
    height, width = args.height or default_h, args.width or default_w
    common = {"adapter": str(args.adapter), "adapter_sha256": loaded.sha256, "adapter_method": loaded.method,
              "control": kind, "control_scale": float(args.control_scale), "scale": float(args.scale),
              "merged": bool(args.merge), "base_model": str(args.pretrained_model_name_or_path),
              "revision": args.revision, "variant": args.variant, "num_inference_steps": args.num_inference_steps,
              "guidance_scale": float(args.guidance_scale), "scheduler": args.scheduler,
              "negative_prompt": args.negative_prompt or None, "height": height, "width": width,
              "dtype": str(dtype).removeprefix("torch.")}
    seeds = [args.seed + k for k in range(args.num_images_per_map)]
    output_dir = Path(args.output_dir)
    removed = remove_stale_temporaries(output_dir)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run, e.g. {removed[0]}", file=sys.stderr)
    print(f"{apply_threads(args)} CPU thread(s) per process (--num_threads)", file=sys.stderr)
    plans = []
    for job in jobs:  # plan all first: a settings clash stops the run before any image is made
        source = open_map(job.path)  # checked here; fitted (colour-mapped and resized) only when rendered
        box = center_box(*source.size, width, height)
        map_fields = {"map_file": str(job.path), "map_sha256": file_sha256(job.path), "map_size": list(source.size),
                      "map_crop": list(box)}
        plans.append(plan_map(job, output_dir, seeds, common, map_fields, overwrite=args.overwrite))
    fitted: dict[str, Image.Image] = {}  # the fitted maps of the current batch only (data sets have thousands)

    def control_map(plan: MapPlan) -> Image.Image:
        if plan.job.stem not in fitted:
            fitted[plan.job.stem] = fit_map(open_map(plan.job.path), width, height, palette)[0]
        return fitted[plan.job.stem]

    started = time.perf_counter()
    todo = [(plan, record) for plan in plans for record in plan.todo]
    written = {plan.job.stem: 0 for plan in plans}
    with tqdm(total=len(todo), desc="images", unit="img", disable=args.no_progress) as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start:start + args.batch_size]
            for stem in [s for s in fitted if s not in {plan.job.stem for plan, _ in batch}]:
                del fitted[stem]
            samples = sample_semantic(
                pipe, kind, control, [control_map(plan) for plan, _ in batch], [r["prompt"] for _, r in batch],
                [r["seed"] for _, r in batch], control_scale=args.control_scale,
                negative_prompt=args.negative_prompt or None, num_inference_steps=args.num_inference_steps,
                guidance_scale=args.guidance_scale, height=height, width=width)
            touched = {}
            for (plan, record), image, flagged in zip(batch, samples.images, samples.nsfw):
                record = {**record, "nsfw": flagged}
                if not written[plan.job.stem]:
                    layout.write_image(plan.folder / CONTROL_MAP_FILE, control_map(plan))
                layout.write_image(plan.folder / record["file"], image, record)
                plan.records[layout.record_key(record)] = record
                written[plan.job.stem] += 1
                touched[plan.job.stem] = plan
            for plan in touched.values():  # metadata after the images: a record always points at a whole image
                layout.write_metadata(plan.folder, plan.records)
            bar.update(len(batch))
    return [(plan, written[plan.job.stem]) for plan in plans], time.perf_counter() - started


def semantic_main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The ``semantic`` subcommand; returns the exit status (2 for a user error, printed without traceback)."""
    parser = semantic_parser(prog)
    args = parse_args(parser, argv)
    _check_args(parser, args)
    try:
        results, seconds = run_semantic(args)
    except (SemanticGenerateError, SemanticDataError, MapError, AdapterFileError, ControlFileError,
            PipelineLoadError, layout.LayoutError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    total = sum(len(plan.records) for plan, _ in results)
    made = sum(written for _, written in results)
    missing = sum(not plan.job.caption_found for plan, _ in results)
    rate = f", {made / seconds:.2f} images/s" if made else ""
    print(f"{len(results)} maps, {total} images in {args.output_dir} ({made} generated, {total - made} kept{rate})")
    if missing:
        print(f"warning: {missing} of {len(results)} maps have no caption"
              f"{' in ' + args.captions if args.captions else ' (no --captions given)'}: generated with the empty prompt",
              file=sys.stderr)
    return 0
