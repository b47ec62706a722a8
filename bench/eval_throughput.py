"""Throughput of ``delora-eval dreambooth`` with the tiny backbones (decoding + preprocessing + embedding).

    python bench/eval_throughput.py [--subjects 4 --prompts 5 --seeds 4 --size 512 --device cpu]
    python bench/eval_throughput.py --quick          # 1 subject, 2 prompts, 2 seeds, 256 px

Builds a synthetic GEN folder (``size``×``size`` PNGs, the inference contract) and a REAL folder
(4 JPEG photos of 1024×1024 per subject), then times a cold run (real embeddings computed) and a warm run
(real embeddings from the cache), per protocol. With the tiny backbones this measures the evaluator's own
cost (image I/O, preprocessing, batching); a real ViT-L/14 adds its forward pass on top.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delora_diffusion.evaluation import DreamBoothEvalSettings, evaluate_dreambooth  # noqa: E402
from delora_diffusion.models.tiny import ensure_tiny  # noqa: E402


def _picture(rng: np.random.Generator, size: int) -> Image.Image:
    blocks = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    noise = rng.integers(0, 24, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(np.asarray(Image.fromarray(blocks).resize((size, size), Image.BILINEAR)) + noise)


def build_folders(root: Path, subjects: int, prompts: int, seeds: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    real, gen = root / "real", root / "gen"
    for s in range(subjects):
        subject = f"subject{s}"
        (real / subject).mkdir(parents=True)
        for k in range(4):
            _picture(rng, 1024).save(real / subject / f"{k:02d}.jpg", quality=92)
        lines = []
        for p in range(prompts):
            folder = gen / subject / f"{p:02d}"
            folder.mkdir(parents=True)
            for seed in range(seeds):
                _picture(rng, size).save(folder / f"{seed}.png")
                lines.append(
                    json.dumps(
                        {
                            "subject": subject,
                            "prompt_index": p,
                            "prompt": f"a sks toy scene {p}",
                            "class_prompt": f"a toy scene {p}",
                            "token": "sks",
                            "class_noun": "toy",
                            "seed": seed,
                            "file": f"{p:02d}/{seed}.png",
                        }
                    )
                )
        (gen / subject / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return real, gen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--size", type=int, default=512, help="generated image side (SD 1.5: 512)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny_dir", default=os.path.join("outputs", "tiny"))
    parser.add_argument("--quick", action="store_true", help="1 subject, 2 prompts, 2 seeds, 256 px (noisier)")
    args = parser.parse_args()
    if args.quick:
        args.subjects, args.prompts, args.seeds, args.size = 1, 2, 2, 256

    dino, clip = ensure_tiny("dino", args.tiny_dir), ensure_tiny("clip", args.tiny_dir)
    with tempfile.TemporaryDirectory() as tmp:
        real, gen = build_folders(Path(tmp), args.subjects, args.prompts, args.seeds, args.size)
        n_gen = args.subjects * args.prompts * args.seeds
        n_real = args.subjects * 4
        print(
            f"{n_gen} generated {args.size}x{args.size} PNGs, {n_real} real 1024x1024 JPEGs, "
            f"batch {args.batch_size}, {args.workers} decode threads, {args.device}, torch threads "
            f"{__import__('torch').get_num_threads()}"
        )
        for protocol in ("oft", "dreambooth"):
            settings = DreamBoothEvalSettings(
                real_dir=real,
                generated_dir=gen,
                protocol=protocol,
                dino_model=str(dino),
                clip_model=str(clip),
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
                cache_dir=Path(tmp) / "cache",
                progress=False,
            )
            for label in ("cold cache", "warm cache"):
                start = time.perf_counter()
                results = evaluate_dreambooth(settings)
                wall = time.perf_counter() - start
                loop = results["timing"]["seconds"]
                print(
                    f"{protocol:>10} {label}: {n_gen / loop:6.1f} generated images/s "
                    f"(scoring loop {loop:.2f} s; {wall:.2f} s with backbone loading)"
                )


if __name__ == "__main__":
    main()
