"""Training checkpoints: ``OUTPUT/checkpoint-N/`` with accelerate's state plus a standalone adapter.

A checkpoint holds accelerate's optimizer, LR-scheduler and gradient-accumulation state, the adapter
(``adapter.safetensors``, loadable on its own like the final one: the UNet itself is not saved) and
``trainer_state.json`` (step and the settings that fix the data order). It is written into a hidden
temporary folder and renamed when complete, so a crash never leaves a checkpoint that looks whole;
older ones are pruned only after the new one exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..fileio import temporary_dir_name, write_json_atomic
from .args import ADAPTER_FLAG_NAMES
from .run_files import ADAPTER_FILE, CHECKPOINT_PREFIX, TRAINING_ARGS_FILE

STATE_FILE = "trainer_state.json"
_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


class CheckpointError(UserError):
    """A checkpoint path that cannot be resumed from; the message names it."""


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of ``output_dir`` as (step, folder), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _NAME.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(value: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint folder meant by ``--resume_from_checkpoint`` (None: start fresh)."""
    if not value:
        return None
    if value == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(value)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {value}: no such folder")
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"--resume_from_checkpoint {value}: not a complete checkpoint (no {STATE_FILE})")
    return path


def read_trainer_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text(encoding="utf-8"))


def register_adapter_state_hooks(
    accelerator, save_adapter: Callable[[Path], None], load_adapter: Callable[[Path], None]
) -> None:
    """Make ``save_state``/``load_state`` store the adapter file instead of the whole (frozen) UNet."""

    def on_save(models, weights, output_dir):
        save_adapter(Path(output_dir) / ADAPTER_FILE)
        del weights[:]

    def on_load(models, input_dir):
        load_adapter(Path(input_dir) / ADAPTER_FILE)
        del models[:]

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)


def save_checkpoint(
    accelerator, output_dir: str | Path, step: int, trainer_state: dict, total_limit: int | None = None
) -> Path:
    """Write ``checkpoint-{step}`` atomically, then prune to ``total_limit``. Main process only."""
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / temporary_dir_name(final.name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        accelerator.save_state(str(tmp))
        write_json_atomic({**trainer_state, "global_step": step}, tmp / STATE_FILE, sort_keys=True)
        if final.exists():  # the same step saved by an earlier run: replace it whole
            old = output_dir / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune_checkpoints(output_dir, total_limit)
    return final


def prune_checkpoints(output_dir: str | Path, total_limit: int | None) -> list[Path]:
    """Delete the oldest checkpoints beyond ``total_limit``; returns the deleted folders."""
    if not total_limit:
        return []
    found = list_checkpoints(output_dir)
    doomed = [path for _, path in found[: max(0, len(found) - total_limit)]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


# The flags that make an adapter what it is (its hyperparameters' flags, plus the text encoder's part in it):
# a folder holds the run of one setting of them.
ADAPTER_FLAGS = (*ADAPTER_FLAG_NAMES, "train_text_encoder")


def claim_output_dir(output_dir: Path, args, is_main: bool) -> tuple[dict, str | None]:
    """(the earlier run's args, a note when it was replaced). A folder holding a run of other adapter flags, or a
    finished or checkpointed run of the same ones that is not being resumed, stops the run (``CheckpointError``):
    its adapter, card and metrics would be replaced while its checkpoints stayed, and a later resume would mix
    the two; with ``--overwrite_output_dir`` its checkpoints are deleted."""
    previous_file = output_dir / TRAINING_ARGS_FILE
    if not previous_file.is_file():
        return {}, None
    previous = json.loads(previous_file.read_text(encoding="utf-8")).get("args", {})
    now = vars(args)
    changed = [
        f"--{key} {previous.get(key)!r} -> {now.get(key)!r}"
        for key in ADAPTER_FLAGS
        if key in previous and previous[key] != now.get(key)
    ]
    finished = bool(list_checkpoints(output_dir)) or (output_dir / ADAPTER_FILE).is_file()
    if not changed and (not finished or args.resume_from_checkpoint):
        return previous, None
    # Another run here would replace the adapter, card and metrics and leave both runs' checkpoints side by side,
    # for "--resume_from_checkpoint latest" to pick the older run's.
    if changed:
        what, advice = (
            f"other adapter flags ({', '.join(changed)})",
            "use another --output_dir, or --overwrite_output_dir to replace it",
        )
    else:
        what = "the same settings, finished or checkpointed"
        advice = (
            "continue it with --resume_from_checkpoint latest, use another --output_dir, or "
            "--overwrite_output_dir to start again"
        )
    if not args.overwrite_output_dir:
        raise CheckpointError(f"--output_dir {output_dir} holds a run with {what}: {advice}")
    if is_main:
        for _, path in list_checkpoints(output_dir):
            shutil.rmtree(path)
    return (
        previous,
        f"--overwrite_output_dir: replaced the earlier run in {output_dir} ({', '.join(changed) or 'same settings'}) "
        "and deleted its checkpoints",
    )


def nonfinite_stop_message(output_dir: Path, what: str, step: int, epoch: int) -> str:
    """What a run stopped by a NaN/inf ``what`` (e.g. "loss nan") at ``step`` says: where to continue from."""
    found = list_checkpoints(output_dir)
    if found:
        last_step, last = found[-1]
        advice = (
            f"the last good checkpoint is {last} (step {last_step}); lower --learning_rate or "
            f"--max_grad_norm and continue with --resume_from_checkpoint {last}"
        )
    else:
        advice = "no checkpoint was saved yet; lower --learning_rate or --max_grad_norm and start again"
    return f"non-finite {what} at step {step} (epoch {epoch}): stopped without saving the adapter; {advice}"
