"""Running one sweep point: an ordinary ``train_dreambooth`` run in its own folder and process.

``POINT/train_config.yaml`` is the run's complete trainer config (rerun it by hand with
``train_dreambooth.py --config``), ``POINT/train.log`` its console output, ``POINT/result.json`` the
point's status and measurements (``records.collect_run``). A separate process per point keeps a
crash, an out-of-memory kill or a NaN in one point from touching the others, and frees its memory.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

import delora_diffusion

from ..configfile import ConfigFileError, config_file_tokens
from ..fileio import atomic_write_text, write_json_atomic
from ..training.checkpoint import list_checkpoints
from ..training.dreambooth import dreambooth_parser
from ..training.run_files import ADAPTER_FILE
from .grid import Point, SweepConfigError, SweepSpec, config_digest

RESULT_FILE = "result.json"
CONFIG_FILE = "train_config.yaml"
LOG_FILE = "train.log"
TRAINER_MODULE = "delora_diffusion.training.dreambooth"
PACKAGE_ROOT = Path(delora_diffusion.__file__).resolve().parents[1]


def read_result(point_dir: Path) -> dict | None:
    path = Path(point_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_result(point_dir: Path, result: dict) -> None:
    write_json_atomic(result, Path(point_dir) / RESULT_FILE, indent=1)


def write_point_config(spec: SweepSpec, point: Point) -> tuple[Path, dict]:
    """Write ``POINT/train_config.yaml`` and check every key against the trainer's flags.

    Raises ``SweepConfigError`` naming the file and key for a key or value the trainer rejects.
    """
    config = spec.train_config_for(point)
    path = spec.point_dir(point) / CONFIG_FILE
    text = f"# delora-sweep point {point.name}: the complete trainer config of this run\n" + yaml.safe_dump(
        config, sort_keys=False, allow_unicode=True
    )
    atomic_write_text(path, text)
    try:
        config_file_tokens(dreambooth_parser(), path)
    except ConfigFileError as exc:
        raise SweepConfigError(str(exc)) from None
    return path, config


def launch_command(launcher: str | None) -> list[str]:
    """The command prefix of a trainer run: this Python, or e.g. ``accelerate launch --num_processes 2``."""
    if not launcher or launcher == "python":
        return [sys.executable]
    return shlex.split(launcher)


def _point_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    # The toolkit this sweep runs from, also when it is a source checkout rather than an install.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    if threads:
        # Small models on a few shared cores run much faster single-threaded, and points can run side by side.
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def _error_line(log: Path) -> str:
    """The line of the run's log that says what went wrong (the last ``error`` line, else the last line)."""
    try:
        lines = [
            line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "error" in line.lower():
            return line[-400:]
    return lines[-1][-400:] if lines else "no output"


def point_state(spec: SweepSpec, point: Point, digest: str) -> str:
    """``done`` (finished with this config: skip), ``conflict`` (run with other settings), or ``todo``."""
    folder = spec.point_dir(point)
    previous = read_result(folder)
    if previous is not None and previous.get("config_digest") != digest:
        if list_checkpoints(folder) or (folder / ADAPTER_FILE).exists():
            return "conflict"
        return "todo"
    if previous is not None and previous.get("status") == "done":
        return "done"
    return "todo"


def run_point(spec: SweepSpec, point: Point, launcher: str | None = None, threads: int | None = None) -> dict:
    """Train ``point`` (resuming its newest checkpoint, if any) and return its ``result.json`` content.

    Never raises for a failing run: the result says ``status: failed`` with the error line of its log.
    """
    folder = spec.point_dir(point)
    config_path, config = write_point_config(spec, point)
    digest = config_digest(config)
    result = {
        "point": point.name,
        "method": point.method,
        "lr_factor": point.lr_factor,
        "seed": point.seed,
        "learning_rate": config["learning_rate"],
        "lambda_learning_rate": config.get("lambda_learning_rate"),
        "config_digest": digest,
        "status": "running",
    }
    write_result(folder, result)
    command = [*launch_command(launcher), "-m", TRAINER_MODULE, "--config", str(config_path)]
    started = time.perf_counter()
    with (folder / LOG_FILE).open("w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        try:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=_point_env(threads)).returncode
        except OSError as exc:  # the launcher itself is missing
            log.write(f"error: could not start {command[0]}: {exc}\n")
            code = 127
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    result["returncode"] = code
    if code != 0:
        result.update(status="failed", error=_error_line(folder / LOG_FILE))
    else:
        from .records import collect_run  # reads adapter files with torch: not needed by --help or a dry run

        try:
            result.update(collect_run(folder), status="done")
        except (OSError, ValueError) as exc:
            result.update(status="failed", error=f"the run finished but its records are unusable: {exc}")
    write_result(folder, result)
    return result
