"""Helpers for tests that run the trainer in-process or as two DDP processes."""

from __future__ import annotations

from pathlib import Path

ROBOT = Path(__file__).resolve().parents[1] / "subjects" / "robot"


def tiny_trainer_flags(base, out, *extra: str, data=ROBOT) -> list[str]:
    """A fast DreamBooth run of the demo robot (``data``) on a tiny model ``base`` into ``out``: 32 px, rank 2,
    no trackers, no validation; ``extra`` flags follow (and win)."""
    return [
        *("--pretrained_model_name_or_path", str(base), "--instance_data_dir", str(data)),
        *("--instance_prompt", "a photo of sks toy", "--resolution", "32", "--center_crop", "--rank", "2"),
        *("--report_to", "none", "--validation_steps", "0", "--num_validation_images", "1"),
        *("--validation_inference_steps", "2", "--output_dir", str(out)),
        *extra,
    ]


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next run can build its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def grid_cell(grid_path, row: int, column: int, size: int):
    """Image (row, column) of a validation grid (``captioned_grid``), back at its ``size`` pixels, and whether
    the row's caption band holds text (any non-white pixel)."""
    from PIL import Image

    from delora_diffusion.inference.contact_sheet import grid_layout

    side, band = grid_layout(size)
    grid = Image.open(grid_path).convert("RGB")
    top = row * (band + side)
    caption = grid.crop((0, top, grid.width, top + band))
    cell = grid.crop((column * side, top + band, (column + 1) * side, top + band + side))
    return cell.resize((size, size), Image.Resampling.NEAREST), caption.getextrema() != ((255, 255),) * 3


def launch_two_processes(script, flags: list[str], cwd, timeout: float = 600) -> tuple[int, str, dict[str, str]]:
    """``script`` (a trainer at the repository root) with ``flags`` as two DDP processes (gloo, CPU) through
    ``accelerate launch``: (exit code, the combined log, each rank's logged adapter fingerprint)."""
    import os
    import re
    import socket
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    with socket.socket() as s:  # other test runs on the machine may hold accelerate's default port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        str(repo / script),
        *flags,
    ]
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    return proc.returncode, log, dict(re.findall(r"process (\d): adapter fingerprint ([0-9a-f]{64})", log))
