"""Builders of small real and generated image folders for the evaluation tests (drawn with numpy + PIL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def draw(seed: int, size: tuple[int, int] = (64, 64), black: bool = False) -> Image.Image:
    """A blocky random RGB picture of ``size`` (width, height); all zeros when ``black``."""
    width, height = size
    if black:
        return Image.fromarray(np.zeros((height, width, 3), np.uint8))
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((width, height), Image.NEAREST)


def make_real(
    root: Path, subjects: dict[str, int], classes: dict[str, str] | None = None, size: tuple[int, int] = (96, 80)
) -> Path:
    """REAL/<subject>/NN.jpg with ``subjects[subject]`` photos each, and a subject,class file when ``classes``."""
    for s_index, (subject, count) in enumerate(sorted(subjects.items())):
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            draw(1000 + 50 * s_index + k, size).save(folder / f"{k:02d}.jpg", quality=95)
    if classes:
        (root / "classes.csv").write_text("".join(f"{s},{c}\n" for s, c in classes.items()))
    return root


def make_generated(
    root: Path,
    subject: str,
    class_noun: str,
    layout: dict[int, int],
    black: set = frozenset(),
    seed_base: int = 0,
    metadata: bool = True,
    token: str = "sks",
) -> Path:
    """GEN/<subject>/<NN>/<seed>.png for ``layout`` {prompt_index: n_images}, plus metadata.jsonl.

    ``black`` holds (prompt_index, k) pairs drawn all black (a safety-filtered image).
    """
    subject_dir = root / subject
    lines = []
    for prompt_index, count in sorted(layout.items()):
        folder = subject_dir / f"{prompt_index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            seed = 100 + k
            draw(seed_base + 31 * prompt_index + k, black=(prompt_index, k) in black).save(folder / f"{seed}.png")
            lines.append(
                {
                    "subject": subject,
                    "prompt_index": prompt_index,
                    "prompt": f"a {token} {class_noun} scene {prompt_index}",
                    "class_prompt": f"a {class_noun} scene {prompt_index}",
                    "token": token,
                    "class_noun": class_noun,
                    "seed": seed,
                    "file": f"{prompt_index:02d}/{seed}.png",
                    "adapter": "adapter.safetensors",
                    "scale": 1.0,
                    "base_model": "tiny",
                    "num_inference_steps": 2,
                    "guidance_scale": 7.5,
                    "scheduler": "DDIMScheduler",
                }
            )
    if metadata:
        (subject_dir / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return subject_dir
