"""``delora-eval``: DreamBooth metrics of a generated-images folder, semantic-map metrics, and side-by-side
comparison of runs.

    delora-eval dreambooth --real_dir REAL --generated_dir GEN [--protocol oft|dreambooth] [--out results.json]
    delora-eval semantic --maps MAPS --generated GEN --real REAL [--seg_model ID] [--out results.json]
    delora-eval compare RUN1.json RUN2.json ... [--plot scatter.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..configfile import add_config_arg, parse_args
from ..errors import UserError
from ..threads import add_thread_arg, apply_threads
from .errors import EvaluationInputError
from .folders import CLIP_T_PROMPTS
from .protocols import DEFAULT_PROTOCOL, DEFAULT_SEG_MODEL, INCEPTION, PROTOCOLS

PROG = "delora-eval"
REQUIRED = ("real_dir", "generated_dir")


def _subjects(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated subject names, e.g. dog,cat2")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _add_dreambooth_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "dreambooth",
        help="DINO, CLIP-I and CLIP-T of generated images against the real subject photos",
        description="Score GEN/<subject>/<prompt_index>/<seed>.png against REAL/<subject>/*.jpg with DINO, CLIP-I "
        "and CLIP-T; print a markdown table and write JSON + CSV.",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    parser.add_argument(
        "--real_dir", type=Path, help="DreamBooth dataset layout: REAL/<subject>/*.jpg (+ prompts_and_classes.txt)"
    )
    parser.add_argument(
        "--generated_dir",
        type=Path,
        help="generated images: GEN/<subject>/<NN>/<seed>.png + GEN/<subject>/metadata.jsonl",
    )
    parser.add_argument("--subjects", type=_subjects, help="comma-separated subjects to score (default: all in GEN)")
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default=DEFAULT_PROTOCOL,
        help="preprocessing and default backbones (default: %(default)s; see README 'Evaluation')",
    )
    parser.add_argument(
        "--dino_model",
        help="DINO backbone: hub id or local folder, timm:NAME, or open_clip:ARCH/PRETRAINED (default: the protocol's)",
    )
    parser.add_argument(
        "--clip_model",
        help="CLIP backbone: hub id or local folder, or open_clip:ARCH/PRETRAINED (default: the protocol's)",
    )
    parser.add_argument(
        "--class_nouns",
        type=Path,
        help="subject,class file or prompts_and_classes.txt (default: REAL/prompts_and_classes.txt when present)",
    )
    parser.add_argument(
        "--max_images_per_prompt",
        type=_positive_int,
        metavar="N",
        help="score only the first N images of each prompt (lowest seeds): OFT's eval.py scores 4 "
        "(default: every image)",
    )
    parser.add_argument(
        "--clip_t_prompt",
        choices=CLIP_T_PROMPTS,
        default="without_token",
        help="text CLIP-T compares with: the prompt without or with the identifier token (default: %(default)s)",
    )
    _add_output_args(parser, "GEN/eval_<protocol>.json", "per-subject bar charts", batch_size=32)
    parser.add_argument(
        "--workers", type=_positive_int, default=2, help="threads decoding images (default: %(default)s)"
    )
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--cache_dir",
        type=Path,
        help="real-image embedding cache (default: $XDG_CACHE_HOME/delora-diffusion/eval-embeddings)",
    )
    parser.add_argument("--no_cache", action="store_true", help="do not read or write the embedding cache")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _add_output_args(parser: argparse.ArgumentParser, default_out: str, plot_what: str, batch_size: int) -> None:
    """--out, --name, --plot and --batch_size, shared by the dreambooth and semantic commands."""
    parser.add_argument("--out", type=Path, help=f"results JSON; the CSV goes beside it (default: {default_out})")
    parser.add_argument("--name", help="run name shown in tables (default: GEN's folder name)")
    parser.add_argument(
        "--plot",
        nargs="?",
        const=True,
        default=None,
        metavar="PNG",
        help=f"also write {plot_what} (default path: the results file with .png)",
    )
    parser.add_argument(
        "--batch_size", type=_positive_int, default=batch_size, help="images per forward pass (default: %(default)s)"
    )


def _add_semantic_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "semantic",
        help="mIoU, mean class accuracy, pixel accuracy and FID of images generated from semantic maps",
        description="Segment GEN/<map>/00/<seed>.png (written by generate.py semantic) and score the predictions "
        "against the maps (mmseg's mIoU, mAcc, aAcc; 'other' ignored); FID against the real images. "
        "Prints a markdown table and writes JSON + CSV.",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    parser.add_argument(
        "--generated",
        "--generated_dir",
        dest="generated_dir",
        type=Path,
        help="generated images: GEN/<map stem>/00/<seed>.png + GEN/<map stem>/metadata.jsonl",
    )
    parser.add_argument(
        "--maps",
        "--maps_dir",
        dest="maps_dir",
        type=Path,
        help="the maps the images were generated from (colour maps or class-id annotations), "
        "matched by file stem; omit to skip the segmentation metrics",
    )
    parser.add_argument(
        "--real",
        "--real_dir",
        dest="real_dir",
        type=Path,
        help="folder of real images for FID (e.g. ADE20K images/validation); omit to skip FID",
    )
    parser.add_argument(
        "--seg_model",
        default=DEFAULT_SEG_MODEL,
        help="transformers semantic-segmentation model (hub id or local folder) predicting the "
        "palette's classes (default: %(default)s)",
    )
    parser.add_argument("--palette", type=Path, help="palette file: class colours in id order (default: ADE20K's 150)")
    parser.add_argument(
        "--fid_extractor",
        default=INCEPTION,
        help="'inception' (the standard 2048-d FID features, via torchmetrics + torch-fidelity) or a "
        "torch.export program (.pt2) mapping uint8 (B, 3, H, W) to (B, D) (default: %(default)s)",
    )
    parser.add_argument(
        "--fid_weights",
        type=Path,
        help="local copy of the FID Inception weights (default: torch-fidelity downloads them)",
    )
    _add_output_args(parser, "GEN/eval_semantic.json", "per-class IoU / accuracy bars", batch_size=16)
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _check_outputs(out: Path, plot: Path | bool | None) -> None:
    """Before any scoring: the results and plot files can be written (a folder given as --out would otherwise
    fail after the whole evaluation, with nothing written)."""
    from ..fileio import file_problem

    targets = [("--out", out)] + ([("--plot", Path(plot))] if plot not in (None, True) else [])
    for flag, path in targets:
        problem = file_problem(path)
        if problem:
            raise EvaluationInputError(f"{flag} {path} {problem}")


def _score(args: argparse.Namespace, out: Path, evaluate, write_csv, plot_run, markdown_summary) -> int:
    """Check the outputs can be written, run ``evaluate()``, write and print its results."""
    _check_outputs(out, args.plot)
    if args.no_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    return _write_results(evaluate(), out, args.plot, write_csv, plot_run, markdown_summary)


def _write_results(results: dict, out: Path, plot, write_csv, plot_run, markdown_summary) -> int:
    """JSON at ``out``, CSV (and, with --plot, PNG) beside it; the markdown table to stdout."""
    from ..fileio import write_json_atomic as write_json

    written = [write_json(results, out), write_csv(results, out.with_suffix(".csv"))]
    if plot is not None:
        written.append(plot_run(results, out.with_suffix(".png") if plot is True else Path(plot)))
    print(markdown_summary(results))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    counts = results["counts"]
    if counts["scored_images"] == 0:  # a table of dashes is a failed evaluation, not a result
        print(
            f"delora-eval: error: none of the {counts['generated_images']} generated images could be scored: "
            f"all are black (safety-filtered, or rendered by a broken adapter)",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_semantic(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .semantic import SemanticEvalSettings, evaluate_semantic
    from .semantic_report import markdown_summary, plot_run, write_csv

    if args.generated_dir is None:
        parser.error("the following arguments are required: --generated")
    if args.maps_dir is None and args.real_dir is None:
        parser.error("give --maps (segmentation metrics), --real (FID), or both")
    settings = SemanticEvalSettings(
        generated_dir=args.generated_dir,
        maps_dir=args.maps_dir,
        real_dir=args.real_dir,
        seg_model=args.seg_model,
        palette=args.palette,
        fid_extractor=args.fid_extractor,
        fid_weights=args.fid_weights,
        batch_size=args.batch_size,
        device=args.device or _default_device(),
        name=args.name,
        progress=not args.no_progress,
    )
    out = args.out or Path(args.generated_dir) / "eval_semantic.json"
    return _score(args, out, lambda: evaluate_semantic(settings), write_csv, plot_run, markdown_summary)


def _add_compare_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="side-by-side table of several results files",
        description="Print the metrics of several `delora-eval dreambooth` (or several `delora-eval semantic`) "
        "results files side by side.",
        allow_abbrev=False,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="results JSON files")
    parser.add_argument("--names", type=_subjects, help="comma-separated run names (default: each file's name)")
    parser.add_argument(
        "--per_subject", action="store_true", help="also print per-subject tables (semantic results: per-class IoU)"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="write a DINO vs CLIP-T scatter plot (semantic results: mIoU vs FID)"
    )
    parser.add_argument(
        "--allow_mixed",
        action="store_true",
        help="compare runs scored with different protocols, backbones or segmentation models",
    )
    return parser


def _run_dreambooth(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .dreambooth import DreamBoothEvalSettings, evaluate_dreambooth
    from .embedding_cache import default_cache_dir
    from .report import markdown_summary, plot_run, write_csv

    missing = [f"--{name}" for name in REQUIRED if getattr(args, name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    settings = DreamBoothEvalSettings(
        real_dir=args.real_dir,
        generated_dir=args.generated_dir,
        subjects=args.subjects,
        protocol=args.protocol,
        dino_model=args.dino_model,
        clip_model=args.clip_model,
        class_nouns=args.class_nouns,
        clip_t_prompt=args.clip_t_prompt,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device or _default_device(),
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        name=args.name,
        progress=not args.no_progress,
        max_images_per_prompt=args.max_images_per_prompt,
    )
    out = args.out or Path(args.generated_dir) / f"eval_{args.protocol}.json"
    return _score(args, out, lambda: evaluate_dreambooth(settings), write_csv, plot_run, markdown_summary)


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import report, semantic_report
    from .protocols import DREAMBOOTH_RESULTS_FORMAT as DREAMBOOTH_FORMAT
    from .protocols import SEMANTIC_RESULTS_FORMAT as SEMANTIC_FORMAT

    if args.names and len(args.names) != len(args.runs):
        parser.error(f"--names has {len(args.names)} names for {len(args.runs)} results files")
    loaded = [report.read_results(path, (DREAMBOOTH_FORMAT, SEMANTIC_FORMAT)) for path in args.runs]
    kinds = {results["format"] for results in loaded}
    if len(kinds) > 1:
        raise EvaluationInputError(
            "cannot compare DreamBooth and semantic-map results files with each other: "
            + ", ".join(f"{p} is {r['format']}" for p, r in zip(args.runs, loaded))
        )
    tables = semantic_report if kinds == {SEMANTIC_FORMAT} else report
    names = args.names or [results["name"] for results in loaded]
    if len(set(names)) < len(names):  # same run name twice: tell the files apart
        names = [str(path) for path in args.runs]
    runs = list(zip(names, loaded))
    if not args.allow_mixed:
        tables.check_comparable(runs)
    print(tables.compare_table(runs, per_subject=args.per_subject))
    if args.plot:
        _check_outputs(Path(args.plot), None)
        print(f"wrote {tables.plot_compare(runs, args.plot)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``delora-eval``; returns the exit status (2 for bad input, with ``delora-eval: error: ...``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="DreamBooth metrics (DINO, CLIP-I, CLIP-T) of generated images, semantic-map "
        "metrics (mIoU, accuracy, FID), and side-by-side comparison of runs.",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    parsers = {
        "dreambooth": _add_dreambooth_parser(subparsers),
        "semantic": _add_semantic_parser(subparsers),
        "compare": _add_compare_parser(subparsers),
    }
    for name in ("dreambooth", "semantic"):
        add_thread_arg(parsers[name])
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("dreambooth", "semantic"):  # the subcommands that read --config
        args = parse_args(parsers[argv[0]], argv[1:])
        args.command = argv[0]
        apply_threads(args)
    else:
        args = parser.parse_args(argv)
    try:
        if args.command == "dreambooth":
            return _run_dreambooth(args, parsers["dreambooth"])
        if args.command == "semantic":
            return _run_semantic(args, parsers["semantic"])
        return _run_compare(args, parsers["compare"])
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
