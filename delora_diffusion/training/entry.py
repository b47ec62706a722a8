"""What both trainer CLIs do around ``train``: logging set-up, user errors as exit codes, the summary."""

from __future__ import annotations

import logging
import os
import sys

from ..errors import UserError
from ..models.families import ModelFamilyError, check_base_model, check_other_models
from .args import rate_scale_warning
from .hub import HubError, check_hub, push_outputs, redact_token
from .loop import NonFiniteLossError, TrainResult, train
from .ranks import MainProcessError
from .run_files import TRAINING_ARGS_FILE
from .task import TrainingTask

LABEL_WIDTH = 16  # of the summary's "  label  path" lines: the longest label ("EMA adapter", "diffusers LoRA") + 2

# A one-line message and exit 2, no traceback: bad input, a file the system refused, or the main process's
# stop in work every process waited for.
USER_ERRORS = (UserError, OSError, MainProcessError)


def launcher() -> list[str]:
    """How this process was started, as a command prefix: ``accelerate launch`` leaves its settings in the
    environment of the processes it starts; anything else is taken for ``python``."""
    return ["accelerate", "launch"] if "ACCELERATE_MIXED_PRECISION" in os.environ else ["python"]


def run_trainer(
    prog: str,
    argv: list[str],
    args,
    filled: list[str],
    task: TrainingTask,
    summary,
    as_command: bool = False,
) -> int:
    """Train ``task`` with parsed ``args``; ``summary(result)`` returns the lines printed at the end.
    ``as_command``: this process runs just this command, so the summary times it from process start.

    Exit codes: 0 done, 1 the loss became NaN/inf (last good checkpoint kept), 2 bad input, 3 trained but the
    ``--push_to_hub`` upload failed (the outputs are on disk).
    """
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file checkpoint messages
    try:  # before any work: an SDXL or Flux folder would otherwise fail deep inside the first step
        check_base_model(args.pretrained_model_name_or_path, revision=args.revision, families=task.families)
        check_other_models(args)
    except ModelFamilyError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    hub = None
    if getattr(args, "push_to_hub", False):
        try:
            hub = check_hub(args)  # before any work: never fail at the upload after an hour of training
        except HubError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        argv, args.hub_token = redact_token(argv, args.hub_token), None  # nothing the run writes holds it
    try:
        notes = [note for note in [rate_scale_warning(args)] if note] + [f"default {f}" for f in filled]
        result = train(args, task, command=[*launcher(), prog, *argv], notes=notes)
    except USER_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if result.adapter_path is not None:
        if as_command:
            result.wall_seconds = max(_process_age_seconds(), result.loop_seconds)
        print("\n".join(summary(result)), flush=True)
        if hub is not None:
            repo_id, token = hub
            try:
                url = push_outputs(
                    result.output_dir, repo_id, token, f"{prog}: {result.global_step} steps of {args.adapter}"
                )
            except Exception as exc:  # the hub's and the network's errors alike: the outputs stay on disk
                print(
                    f"{prog}: error: the upload to {repo_id} failed ({exc}); the outputs are in {result.output_dir}: "
                    f"upload them with `hf upload {repo_id} {result.output_dir}`",
                    file=sys.stderr,
                )
                return 3
            print(f"  {'hub':<{LABEL_WIDTH}}{url}", flush=True)
    return 0


def _process_age_seconds() -> float:
    """Wall seconds since this process started: what a user timing the command sees."""
    import time

    import psutil  # an accelerate dependency

    return time.time() - psutil.Process().create_time()


def summary_lines(result: TrainResult, title: str, extra: list[tuple[str, object]]) -> list[str]:
    """ "Done: N steps of TITLE in MmSSs (MmSSs after imports)" and one line per output that exists (``extra``
    appended): the first figure is what a user timing the command sees."""

    def clock(value: float) -> str:
        minutes, seconds = divmod(int(round(value)), 60)
        return f"{minutes}m{seconds:02d}s"

    pace = f", {result.seconds_per_step:.3f} s/step" if result.seconds_per_step else ""
    entries = [
        ("adapter", result.adapter_path),
        ("checkpoints", ", ".join(map(str, result.checkpoints)) or None),
        ("validation", result.validation_grids[-1] if result.validation_grids else None),
        ("model card", result.model_card),
        ("settings", result.output_dir / TRAINING_ARGS_FILE),
        ("TensorBoard", f"tensorboard --logdir {result.logging_dir}" if result.logging_dir else None),
        *extra,
    ]
    return [
        f"\nDone: {result.global_step} steps of {title} in {clock(result.wall_seconds)} "
        f"({clock(result.loop_seconds)} after imports){pace}."
    ] + [f"  {name:<{LABEL_WIDTH}}{value}" for name, value in entries if value]
