"""Generation throughput (images/s) of the inference pipeline, base model vs adapter vs merged adapter.

    python bench/bench_generate.py                                  # tiny model, CPU, built under outputs/tiny
    python bench/bench_generate.py --quick                          # 2 images, 5 steps, batch 1
    python bench/bench_generate.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --adapter A.safetensors --device cuda

Without --adapter a random DeLoRA adapter (rank 16) is attached, which is enough to time it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delora_diffusion.adapters import AdapterConfig, attach, save_adapter  # noqa: E402
from delora_diffusion.inference import apply_adapter, load_pipeline, remove_adapter, sample_images  # noqa: E402
from delora_diffusion.models.loading import load_unet  # noqa: E402
from delora_diffusion.models.tiny import ensure_tiny  # noqa: E402


def images_per_second(pipe, count: int, batch_size: int, steps: int) -> float:
    prompts = ["a sks dog in the jungle"] * count
    sample_images(pipe, prompts[:1], [0], num_inference_steps=steps)  # warm-up
    start = time.perf_counter()
    for first in range(0, count, batch_size):
        chunk = range(first, min(first + batch_size, count))
        sample_images(pipe, [prompts[i] for i in chunk], list(chunk), num_inference_steps=steps)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", help="pipeline folder or hub id (default: the tiny model)")
    parser.add_argument("--adapter", help="adapter file (default: a random DeLoRA adapter)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch_sizes", default="1,4")
    parser.add_argument("--quick", action="store_true", help="2 images, 5 steps, batch 1 (noisier)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.steps, args.batch_sizes = 2, 5, "1"
    model = args.model or str(ensure_tiny("sd"))
    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.adapter
        if adapter is None:
            unet = load_unet(model)
            attach(unet, AdapterConfig(method="delora", rank=16))
            adapter = save_adapter(unet, Path(tmp) / "adapter.safetensors", base_model=model)
        pipe = load_pipeline(model, device=args.device)
        print(
            f"model {model} on {pipe.device} ({pipe.unet.dtype}), {args.steps} steps, "
            f"torch threads {torch.get_num_threads()}"
        )
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            rates = {}
            remove_adapter(pipe)
            rates["base"] = images_per_second(pipe, args.images, batch_size, args.steps)
            apply_adapter(pipe, adapter)
            rates["adapter"] = images_per_second(pipe, args.images, batch_size, args.steps)
            apply_adapter(pipe, adapter, merge=True)
            rates["merged"] = images_per_second(pipe, args.images, batch_size, args.steps)
            print(f"batch {batch_size}: " + ", ".join(f"{k} {v:.2f} images/s" for k, v in rates.items()))


if __name__ == "__main__":
    main()
