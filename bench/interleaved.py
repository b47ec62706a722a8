"""The step and inference targets (DeLoRA ≤ 1.03× LoRA per training step, merged ≤ 1.01× base) measured
with the noise paired out.

`run.py step` / `run.py infer` time each case in its own process, one after the other: on a CPU, a few
percent of drift between processes (memory layout, clock, other jobs) is as large as the difference being
measured. Here every case holds its own copy of the same SD 1.5-architecture UNet (random weights, 256 px)
in one process, and each round times one call of every case back to back, in a rotated order. Ratios to the
first case are taken within each round; the median over rounds is reported.

    python bench/interleaved.py                      # training step, batch 1: lora, delora, delora-zero_b
    python bench/interleaved.py --mode infer         # no-grad forward, batch 2: base, delora-merged, ...
    python bench/interleaved.py --cases lora,dora,ether --rounds 12 --threads 2
    python bench/interleaved.py --quick              # 2 rounds: a check that it runs, not a measurement

A case is `none` (no adapter), a METHOD_CONFIGS name of bench/cases.py (unmerged), or `NAME-merged`.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds after one warm-up round (default 8)")
    parser.add_argument(
        "--mode",
        choices=["step", "infer"],
        default="step",
        help="step: forward+backward+AdamW, batch 1; infer: no-grad forward, batch 2 (guidance)",
    )
    parser.add_argument(
        "--cases",
        help="comma-separated cases, the first is the baseline (default: step "
        "lora,delora,delora-zero_b; infer none,delora-merged,etherplus-merged,delora)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="2 rounds (as every bench script: a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import platform

    import torch
    from torch import nn

    from bench.cases import METHOD_CONFIGS, _unet_inputs
    from delora_diffusion.adapters import attach, merge, param_groups
    from delora_diffusion.models.sd15 import sd15_unet

    torch.set_num_threads(args.threads)
    default = "lora,delora,delora-zero_b" if args.mode == "step" else "none,delora-merged,etherplus-merged,delora"
    methods = (args.cases or default).split(",")
    unknown = [m for m in methods if m != "none" and m.removesuffix("-merged") not in METHOD_CONFIGS]
    if unknown:
        parser.error(
            f"--cases: unknown {', '.join(unknown)}; choose from none, {', '.join(METHOD_CONFIGS)} "
            "(each also as NAME-merged)"
        )
    torch.manual_seed(0)
    base = sd15_unet()
    base.requires_grad_(False)
    latents, t, context = _unet_inputs(base, batch=1 if args.mode == "step" else 2)
    target = torch.randn_like(latents)
    steps = {}
    for method in methods:
        unet = copy.deepcopy(base)
        if method != "none":
            torch.manual_seed(1)
            attach(unet, METHOD_CONFIGS[method.removesuffix("-merged")])
            if method.endswith("-merged"):
                merge(unet)
        if args.mode == "infer":
            steps[method] = torch.no_grad()(lambda unet=unet: unet(latents, t, context))
            continue
        if method == "none":
            inputs = latents.clone().requires_grad_(True)  # backpropagate through the frozen network

            def step(unet=unet, inputs=inputs):
                inputs.grad = None
                nn.functional.mse_loss(unet(inputs, t, context).sample, target).backward()
        else:
            optimizer = torch.optim.AdamW(param_groups(unet, lr=1e-4))

            def step(unet=unet, optimizer=optimizer):
                optimizer.zero_grad(set_to_none=True)
                nn.functional.mse_loss(unet(latents, t, context).sample, target).backward()
                optimizer.step()

        steps[method] = step
    del base

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {args.threads}; "
        f"{args.mode}, {args.rounds} rounds after 1 warm-up\n",
        flush=True,
    )
    times: dict[str, list[float]] = {m: [] for m in methods}
    for round_index in range(args.rounds + 1):
        order = methods[round_index % len(methods) :] + methods[: round_index % len(methods)]
        for method in order:
            start = time.perf_counter()
            steps[method]()
            if round_index:
                times[method].append(time.perf_counter() - start)
    baseline = methods[0]
    print(f"| case | median s | min s | median of per-round ratios to {baseline} | ratio of minima |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for method in methods:
        ratios = [a / b for a, b in zip(times[method], times[baseline])]
        print(
            f"| {method} | {statistics.median(times[method]):.3f} | {min(times[method]):.3f} | "
            f"{statistics.median(ratios):.3f} | {min(times[method]) / min(times[baseline]):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
