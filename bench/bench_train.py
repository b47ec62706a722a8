"""Training step time of the DreamBooth trainer per adapter method, through the real loop.

    python bench/bench_train.py                       # tiny model, CPU, the demo subject, 32 and 64 px
    python bench/bench_train.py --resolution 64 --steps 40 --threads 1
    python bench/bench_train.py --quick               # delora and lora, 32 px, 8 steps
    python bench/bench_train.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --resolution 512 --rank 16   # on a GPU

Each method runs in its own process (`train_dreambooth.py` with prior preservation: one instance and one
class image per step, cached latents, no checkpoints or validation). Reported: the mean time of an
optimizer step after the first (which includes one-off allocations), from the trainer's own
`time/step_seconds` log, and the wall time of the whole run (model loading and class images included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("delora", "lora", "dora", "ether", "etherplus")


def run_method(
    method: str, model: str, resolution: int, steps: int, rank: int, threads: int | None, work: Path
) -> dict:
    out = work / f"{method}-{resolution}"
    command = [
        sys.executable,
        str(ROOT / "train_dreambooth.py"),
        "--pretrained_model_name_or_path",
        model,
        "--instance_data_dir",
        str(ROOT / "subjects" / "robot"),
        "--instance_prompt",
        "a photo of sks toy",
        "--with_prior_preservation",
        "--class_prompt",
        "a photo of a toy",
        "--num_class_images",
        "5",
        "--class_data_dir",
        str(work / f"class-{resolution}"),
        "--class_inference_steps",
        "5",
        "--resolution",
        str(resolution),
        "--center_crop",
        "--adapter",
        method,
        "--rank",
        str(rank),
        "--train_batch_size",
        "1",
        "--max_train_steps",
        str(steps),
        "--checkpointing_steps",
        "0",
        "--output_dir",
        str(out),
        "--log_weight_distance_steps",
        str(steps),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    times = _step_times(out / "logs")
    return {"s_per_step": sum(times[1:]) / max(1, len(times) - 1), "wall_s": wall}


def _step_times(logdir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = next(logdir.rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    return [e.value for e in accumulator.Scalars("time/step_seconds")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", help="pipeline folder or hub id (default: the tiny model, built if missing)")
    parser.add_argument("--resolution", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of each run (default: torch's choice)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--quick", action="store_true", help="delora and lora at 32 px, 8 steps (noisier)")
    args = parser.parse_args()
    if args.quick:
        args.methods, args.resolution, args.steps = ["delora", "lora"], [32], 8
    if args.model is None:
        sys.path.insert(0, str(ROOT))
        from delora_diffusion.models.tiny import ensure_tiny

        args.model = str(ensure_tiny("sd", ROOT / "outputs" / "tiny"))
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for resolution in args.resolution:
            for method in args.methods:
                results[f"{method}@{resolution}"] = run_method(
                    method, args.model, resolution, args.steps, args.rank, args.threads, Path(work)
                )
                print(json.dumps({f"{method}@{resolution}": results[f"{method}@{resolution}"]}), flush=True)
    print(
        f"\n{args.model}, rank {args.rank}, {args.steps} steps, batch 1 instance + 1 class image, "
        f"threads {args.threads or 'default'}\n"
    )
    print("| method | resolution | s / step | run wall s |\n| --- | ---: | ---: | ---: |")
    for key, r in results.items():
        method, resolution = key.split("@")
        if "error" in r:
            print(f"| {method} | {resolution} | error: {r['error']} | |")
        else:
            print(f"| {method} | {resolution} | {r['s_per_step']:.3f} | {r['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
