"""Console entry points of the adapter core (see pyproject.toml [project.scripts])."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def make_tiny_main(argv: list[str] | None = None) -> int:
    """delora-make-tiny: build the offline tiny models (random weights) under --out."""
    from .models.tiny import DEFAULT_TINY_DIR, TINY_BUILDERS, make_tiny

    parser = argparse.ArgumentParser(prog="delora-make-tiny", description=make_tiny_main.__doc__, allow_abbrev=False)
    parser.add_argument("--out", default=str(DEFAULT_TINY_DIR), help="folder to build into (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=sorted(TINY_BUILDERS), help="build only these components")
    parser.add_argument("--force", action="store_true", help="rebuild components that already exist")
    args = parser.parse_args(argv)
    for name, path in make_tiny(args.out, args.only, args.force).items():
        print(f"{name}: {path}")
    return 0


def export_main(argv: list[str] | None = None) -> int:
    """delora-export: write any adapter as an exact plain-LoRA file (diffusers/PEFT or kohya keys)."""
    from .adapters.formats import FORMATS
    from .fileio import folder_problem
    from .models.families import SINGLE_FILE_CONFIG_HELP

    parser = argparse.ArgumentParser(prog="delora-export", description=export_main.__doc__, allow_abbrev=False)
    parser.add_argument(  # --adapter (a method in the trainers) kept as the earlier spelling
        "--adapter_file",
        "--adapter",
        dest="adapter",
        required=True,
        help="adapter.safetensors written by delora-diffusion",
    )
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument(
        "--base_model",
        help="base pipeline path, hub id or single-file checkpoint (default: the one stored in the adapter)",
    )
    parser.add_argument("--single_file_config", metavar="PATH_OR_ID", help=SINGLE_FILE_CONFIG_HELP)
    parser.add_argument("--scale", type=float, default=1.0, help="bake this strength into the exported update")
    args = parser.parse_args(argv)
    if Path(args.out).is_dir():  # checked first: the error would otherwise name an internal temporary file
        parser.error(
            f"--out {args.out} is a folder; give the .safetensors file to write, e.g. "
            f"{Path(args.out) / 'pytorch_lora_weights.safetensors'}"
        )
    problem = folder_problem(Path(args.out).parent)
    if problem:
        parser.error(f"--out {args.out}: its folder {Path(args.out).parent} {problem}")
    from .adapters import AdapterFileError, export_lora, load_adapter, read_adapter, set_scale
    from .adapters.io import TEXT_ENCODERS, base_model_of
    from .models.families import check_base_model, check_other_models
    from .models.loading import load_text_encoder, load_unet
    from .models.single_file import resolve_base_model

    try:
        adapter = read_adapter(args.adapter)
        base = args.base_model or base_model_of(adapter.metadata)
        if not base:
            parser.error(f"{args.adapter} records no base model; pass --base_model")
        check_base_model(base, "--base_model" if args.base_model else "the adapter's base model")
        check_other_models(args)
        source = resolve_base_model(base, args.single_file_config)
        unet = load_unet(source)
        encoders = {name: load_text_encoder(source, name) for name in TEXT_ENCODERS if adapter.targets_of(name)}
        load_adapter(unet, args.adapter, model_name=base, **encoders)
        for model in (unet, *encoders.values()):
            set_scale(model, args.scale)
        out = export_lora(unet, args.out, args.format, encoders)
    except (AdapterFileError, OSError, ValueError) as exc:
        # A file from an older version records the base model only as typed, relative to where training ran.
        hint = (
            ""
            if args.base_model or isinstance(exc, AdapterFileError)
            else f" (the base model is the one {args.adapter} records; name it with --base_model)"
        )
        print(f"delora-export: error: {exc}{hint}", file=sys.stderr)
        return 2
    print(f"wrote {args.format} LoRA ({adapter.config.method}, {len(adapter.layers)} layers) to {out}")
    return 0
