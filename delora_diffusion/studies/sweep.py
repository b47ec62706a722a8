"""``delora-sweep``: learning-rate sweeps and prolonged training as many ordinary trainer runs.

    delora-sweep --config configs/sweeps/demo.yaml          # run (resumable: finished points are skipped)
    delora-sweep report outputs/sweeps/demo                 # tables and plots of what has finished

Each point (method × learning-rate factor × seed) is a ``train_dreambooth`` run in ``SWEEP/<point>/``
(``points.py``); its weight-distance curve, final λ and DeLoRA bound go to ``SWEEP/<point>/result.json``
(``records.py``), optionally with DreamBooth metrics at chosen checkpoints (``evaluate.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..adapters import PAPER_LAMBDA_LEARNING_RATE
from ..configfile import add_config_arg, parse_args
from ..fileio import write_json_atomic
from .evaluate import FINAL, EvalSpec, evaluate_step
from .grid import (
    DEFAULT_LR_FACTORS,
    DEFAULT_METHODS,
    MODES,
    Point,
    SweepConfigError,
    SweepSpec,
    config_digest,
    factor_label,
    parse_assignments,
    parse_method_table,
    read_yaml_mapping,
)
from .points import point_state, read_result, run_point, write_point_config, write_result

PROG = "delora-sweep"


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a grid of DreamBooth trainings (methods × learning-rate factors × seeds, or long runs "
        "with checkpoints) and record each run's weight distance ‖W_ft − W_0‖_F, λ and DeLoRA bound.\n"
        f"Summarise with: {PROG} report SWEEP_DIR",
        allow_abbrev=False,
    )
    add_config_arg(parser)
    g = parser.add_argument_group("grid")
    g.add_argument("--output_dir", help="the sweep folder: one subfolder per point, sweep.json, report/")
    g.add_argument(
        "--mode",
        choices=MODES,
        default="grid",
        help="grid: the learning-rate study (paper Fig. 2); prolonged: long runs with a checkpoint every "
        "--checkpoint_every steps (Fig. 3) (default: %(default)s)",
    )
    g.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="(default: %(default)s)")
    g.add_argument(
        "--lr_factors",
        nargs="+",
        type=float,
        help=f"multiples of each method's base rate (default: grid {' '.join(map(factor_label, DEFAULT_LR_FACTORS))}; "
        "prolonged 1)",
    )
    g.add_argument("--seeds", nargs="+", type=int, default=[0], help="(default: %(default)s)")
    # KEY=VALUE lists extend (a command line adds to the config file's list; for a key given twice the last wins).
    g.add_argument(
        "--base_learning_rates",
        nargs="+",
        action="extend",
        metavar="METHOD=LR",
        help="base rate per method (default: the DeLoRA paper's: delora=6e-3 lora=6e-4 dora=6e-4 "
        "ether=6e-3 etherplus=6e-3)",
    )
    g.add_argument(
        "--lambda_learning_rate",
        type=float,
        default=PAPER_LAMBDA_LEARNING_RATE,
        help="DeLoRA's λ rate (default: %(default)g, not scaled by the factor)",
    )
    g.add_argument(
        "--scale_lambda_learning_rate", action="store_true", help="multiply DeLoRA's λ rate by the factor too"
    )
    t = parser.add_argument_group("the trainer runs")
    t.add_argument("--train_config", metavar="YAML", help="train_dreambooth.py config every point starts from")
    t.add_argument(
        "--method_configs",
        nargs="+",
        action="extend",
        metavar="METHOD=YAML",
        help="a method's own train_dreambooth.py config, over --train_config (e.g. lora_alpha)",
    )
    t.add_argument(
        "--train",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="train_dreambooth.py flags for every point, over the configs (e.g. max_train_steps=400)",
    )
    t.add_argument("--max_train_steps", type=int, help="steps of every point (prolonged mode: required)")
    t.add_argument("--checkpoint_every", type=int, help="checkpoint interval (prolonged mode: required)")
    t.add_argument(
        "--launcher",
        default="python",
        help='how a run starts: "python" or e.g. "accelerate launch --num_processes 2" (default: python)',
    )
    t.add_argument("--jobs", type=int, default=1, help="points trained at once (default: %(default)s)")
    t.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS of each run (CPU: 1 with --jobs = cores is fastest for small models)",
    )
    e = parser.add_argument_group("evaluation (optional)")
    e.add_argument("--evaluate", action="store_true", help="generate the prompt set and score it at --eval_steps")
    e.add_argument("--eval_steps", nargs="+", default=[FINAL], help="'final' and/or checkpoint steps (default: final)")
    e.add_argument("--eval_subject", help="subject name: folder REAL_DIR/<subject> of real photos")
    e.add_argument("--eval_class_noun", help="class noun of the subject (picks the object or live prompt set)")
    e.add_argument("--eval_real_dir", help="DreamBooth dataset layout with the real photos")
    e.add_argument(
        "--generate",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="generate.py flags (e.g. num_images_per_prompt=2)",
    )
    e.add_argument(
        "--eval",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="delora-eval dreambooth flags (e.g. dino_model=...)",
    )
    return parser


def spec_from_args(args: argparse.Namespace) -> tuple[SweepSpec, EvalSpec | None]:
    if not args.output_dir:
        raise SweepConfigError("--output_dir is required (the sweep folder)")
    method_configs = {
        m: read_yaml_mapping(path, f"method_configs {m}")
        for m, path in parse_method_table(args.method_configs, "method_configs").items()
    }
    spec = SweepSpec(
        output_dir=Path(args.output_dir),
        mode=args.mode,
        methods=tuple(args.methods),
        lr_factors=tuple(args.lr_factors or (DEFAULT_LR_FACTORS if args.mode == "grid" else (1.0,))),
        seeds=tuple(args.seeds),
        base_learning_rates=parse_method_table(args.base_learning_rates, "base_learning_rates", float),
        lambda_learning_rate=args.lambda_learning_rate,
        scale_lambda_learning_rate=args.scale_lambda_learning_rate,
        train_config=read_yaml_mapping(args.train_config, "train_config") if args.train_config else {},
        method_configs=method_configs,
        train_overrides=parse_assignments(args.train, "train"),
        max_train_steps=args.max_train_steps,
        checkpoint_every=args.checkpoint_every,
    )
    spec.check()
    for name in ("jobs", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SweepConfigError(f"--{name} must be >= 1, got {value}")
    if not args.evaluate:
        return spec, None
    missing = [f"--{n}" for n in ("eval_subject", "eval_class_noun", "eval_real_dir") if not getattr(args, n)]
    if missing:
        raise SweepConfigError(f"--evaluate needs {', '.join(missing)}")
    for step in args.eval_steps:
        if step != FINAL and not (step.isdigit() and int(step) > 0):
            raise SweepConfigError(f"--eval_steps: expected 'final' or a checkpoint step, got {step!r}")
    evaluation = EvalSpec(
        subject=args.eval_subject,
        class_noun=args.eval_class_noun,
        real_dir=Path(args.eval_real_dir),
        steps=tuple(args.eval_steps),
        generate_flags=parse_assignments(args.generate, "generate"),
        eval_flags=parse_assignments(args.eval, "eval"),
    )
    return spec, evaluation


def check_point_configs(spec: SweepSpec) -> None:
    """Every point's trainer config passes the trainer's own flag checks before anything runs."""
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spec.output_dir, prefix=".check-") as scratch:
        for point in spec.points():
            probe = SweepSpec(**{**spec.__dict__, "output_dir": Path(scratch)})
            write_point_config(probe, point)


def _describe(result: dict) -> str:
    if result.get("status") != "done":
        return f"failed: {result.get('error', 'unknown error')}"
    text = f"‖W_ft − W_0‖_F = {result['distance']:.4g}"
    if result.get("bound") is not None:
        text += f" (bound {result['bound']:.4g})"
    return text + f", {result.get('wall_seconds', 0):.0f} s"


def run_sweep(
    spec: SweepSpec,
    evaluation: EvalSpec | None = None,
    launcher: str | None = None,
    jobs: int = 1,
    threads: int | None = None,
    log=print,
) -> dict[str, dict]:
    """Run the points not finished yet (``jobs`` at a time), evaluate if asked; returns results by point."""
    check_point_configs(spec)
    write_json_atomic(spec.describe(), spec.output_dir / "sweep.json", indent=1)
    points = spec.points()
    results: dict[str, dict] = {}
    todo: list[Point] = []
    for point in points:
        state = point_state(spec, point, config_digest(spec.train_config_for(point)))
        if state == "done":
            results[point.name] = read_result(spec.point_dir(point))
        elif state == "conflict":
            results[point.name] = {
                "point": point.name,
                "status": "failed",
                "error": f"{spec.point_dir(point)} holds a run with other settings; remove it or "
                "use another --output_dir",
            }
        else:
            todo.append(point)
    skipped = sum(1 for r in results.values() if r.get("status") == "done")
    log(
        f"{PROG}: {len(points)} points in {spec.output_dir}: {skipped} finished (skipped), {len(todo)} to run"
        + (f", {len(results) - skipped} in conflict" if len(results) > skipped else "")
    )
    for name, result in results.items():
        if result.get("status") != "done":
            log(f"  {name}: {_describe(result)}")

    counter = iter(range(1, len(todo) + 1))

    def one(point: Point) -> None:
        result = run_point(spec, point, launcher, threads)
        results[point.name] = result
        log(f"[{next(counter)}/{len(todo)}] {point.name}: {_describe(result)}")

    if todo:
        # The first point alone: it builds what all share (a default tiny model, the class images).
        one(todo[0])
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, todo[1:]))

    if evaluation is not None:
        for point in points:
            result = results[point.name]
            if result.get("status") != "done":
                continue
            evaluations = result.setdefault("evaluations", {})
            base_model = spec.train_config_for(point).get("pretrained_model_name_or_path")
            missing = [step for step in evaluation.steps if step not in evaluations or "error" in evaluations[step]]
            if not missing:
                continue  # a finished point's result.json is left untouched
            for step in missing:
                evaluations[step] = evaluate_step(spec.point_dir(point), str(base_model), evaluation, step)
                scores = evaluations[step]
                what = (
                    scores["error"]
                    if "error" in scores
                    else ", ".join(
                        f"{k} {scores[k]:.3f}" for k in ("dino", "clip_i", "clip_t") if scores.get(k) is not None
                    )
                )
                log(f"  eval {point.name} @ {step}: {what}")
            write_result(spec.point_dir(point), result)
    return {p.name: results[p.name] for p in points}


def main(argv: list[str] | None = None) -> int:
    """``delora-sweep [run] --config SWEEP.yaml`` or ``delora-sweep report SWEEP_DIR``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from .report import main as report_main

        return report_main(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    parser = run_parser()
    args = parse_args(parser, argv)
    try:
        spec, evaluation = spec_from_args(args)
        results = run_sweep(spec, evaluation, launcher=args.launcher, jobs=args.jobs, threads=args.threads)
    except SweepConfigError as exc:
        parser.error(str(exc))
    failed = [name for name, r in results.items() if r.get("status") != "done"]
    done = len(results) - len(failed)
    print(
        f"\n{done} of {len(results)} points finished"
        + (f"; failed: {', '.join(failed)} (see each point's train.log)" if failed else "")
        + f"\nsummary: {PROG} report {spec.output_dir}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
