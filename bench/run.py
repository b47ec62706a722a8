"""Benchmarks, run on demand (never in the test suite): ratios against a baseline measured in the same run.
The index of every benchmark, what each measures and how to read it: bench/README.md.

    python bench/run.py layers      # adapter layer forward+backward per method vs PEFT LoRA / PEFT DeLoRA
    python bench/run.py step        # one SD1.5-architecture UNet training step per method vs LoRA / no adapter
    python bench/run.py infer       # merged-adapter inference vs the base model; unmerged overhead
    python bench/run.py cache       # the trainer's step with cached latents + text embeddings vs uncached
    python bench/run.py all [--quick]

Every case runs in its own subprocess so its peak memory (max RSS) is its own. Times are medians
of repeated runs after warm-up, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cases  # noqa: E402

SUITES = {
    "layers": (cases.LAYER_CASES, "peft-lora", "adapter layer forward+backward, SD1.5 projection shapes"),
    "step": (cases.STEP_CASES, "lora", "training step, SD1.5-architecture UNet, 256 px, batch 1"),
    "infer": (cases.INFER_CASES, "base", "UNet forward (inference), SD1.5 architecture, 256 px"),
    "cache": (
        cases.CACHE_CASES,
        "{model}-cached",
        "DreamBooth training step (the trainer's code) with / without cached latents + text embeddings",
    ),
}


def run_case(suite: str, case: str, quick: bool, threads: int | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--worker", suite, case] + (["--quick"] if quick else [])
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(suite: str, results: dict[str, dict]) -> str:
    _, baseline, title = SUITES[suite]
    lines = [
        f"### {title}",
        "",
        "| case | median ms | ratio to " + baseline + " | extra ratios | max RSS MB |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for case, r in results.items():
        if "error" in r:
            lines.append(f"| {case} | error: {r['error']} | | | |")
            continue
        # "{model}-cached": each case against the baseline of its own model (tiny-*, sd15-*).
        base = results.get(baseline.format(model=case.split("-")[0]), {}).get("ms")
        ratio = f"{r['ms'] / base:.3f}" if base else "-"
        extra = ", ".join(
            f"vs {other}: {r['ms'] / results[other]['ms']:.3f}"
            for other in r.get("compare", [])
            if results.get(other, {}).get("ms")
        )
        lines.append(f"| {case} | {r['ms']:.2f} | {ratio} | {extra} | {r['max_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("suite", nargs="?", choices=[*SUITES, "all"], default="all")
    parser.add_argument("case", nargs="?")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every case (default: torch's choice)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(cases.run(args.suite, args.case, args.quick)))
        return 0
    import torch

    threads = args.threads or torch.get_num_threads()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {threads}{' (--quick: few repetitions)' if args.quick else ''}\n"
    )
    for suite in SUITES if args.suite == "all" else [args.suite]:
        names = SUITES[suite][0]
        results = {name: run_case(suite, name, args.quick, args.threads) for name in names}
        print(report(suite, results) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
