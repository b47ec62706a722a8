"""Class images for DreamBooth's prior preservation, generated with the base model when missing.

Generated image k is ``class-{k:05d}.png`` and always comes from its own seed (seed, k) through
inference's per-image seeded sampling, so an interrupted generation resumes where it stopped,
images already in the folder (the user's or an earlier run's) are kept, and a resumed folder holds
the images one uninterrupted run would have made. Each file is written atomically, so a crash never
leaves a half-written image that counts.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from ..data.dreambooth import list_images
from ..fileio import save_png_atomic
from ..inference.sampling import sample_images
from .determinism import derive_seed

GENERATED_NAME = "class-{index:05d}.png"


def class_image_seed(seed: int, index: int) -> int:
    return derive_seed(seed, 3, index) % 2**32


def missing_indices(folder: Path, wanted: int) -> list[int]:
    """Indices k of the images to generate so that ``folder`` holds ``wanted`` images."""
    existing = list_images(folder, "class_data_dir") if folder.exists() else []
    names = {p.name for p in existing}
    need, indices, k = wanted - len(existing), [], 0
    while len(indices) < need:
        if GENERATED_NAME.format(index=k) not in names:
            indices.append(k)
        k += 1
    return indices


def generate_class_images(
    pipeline,
    folder: str | Path,
    prompt: str,
    wanted: int,
    seed: int,
    batch_size: int = 4,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    resolution: int | None = None,
    show_progress: bool = True,
) -> list[Path]:
    """Fill ``folder`` up to ``wanted`` images of ``prompt`` (``resolution`` px square, default the
    pipeline's); returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    indices = missing_indices(folder, wanted)
    written: list[Path] = []
    if not indices:
        return written
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    for batch in tqdm(batches, desc="class images", unit="batch", disable=not show_progress):
        images = sample_images(
            pipeline,
            [prompt] * len(batch),
            [class_image_seed(seed, k) for k in batch],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=resolution,
            width=resolution,
        ).images
        for k, image in zip(batch, images):
            path = folder / GENERATED_NAME.format(index=k)
            save_png_atomic(image, path)
            written.append(path)
    return written
