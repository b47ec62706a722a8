"""Synthetic semantic-map data sets, drawn offline: the semantic demo's data and the tests' fixtures.

A scene is a background class with a few rectangles of other ADE20K classes. Its map paints each class
in its palette colour; its "photo" paints each class with a texture of its own (a darker palette colour
with class-specific stripes and a little noise), so the photo is a function of the map, as in a real
data set; its caption names the classes. Written in the generic or the ADE20K layout
(``data/semantic.py``), with colour maps or class-id annotations.

    python -m delora_diffusion.data.demo_scenes --out outputs/demo_scenes --count 16 --size 64
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_write_text
from .ade20k import CLASS_NAMES, PALETTE
from .semantic_maps import colorize

BACKGROUNDS = (0, 2, 3, 9, 21)  # wall, sky, floor, grass, water
OBJECTS = (4, 7, 12, 15, 19, 20, 23, 36, 66, 80)  # tree, bed, person, table, chair, car, sofa, lamp, flower, bus


def draw_scene(rng: random.Random, size: int = 64, boxes: int = 3) -> tuple[Image.Image, np.ndarray, str]:
    """(photo, class ids (size, size) int64, caption) of one random scene."""
    background = rng.choice(BACKGROUNDS)
    ids = np.full((size, size), background, dtype=np.int64)
    present = [background]
    for _ in range(boxes):
        cls = rng.choice(OBJECTS)
        width, height = rng.randint(size // 6, size // 2), rng.randint(size // 6, size // 2)
        left, top = rng.randint(0, size - width), rng.randint(0, size - height)
        ids[top : top + height, left : left + width] = cls
        if cls not in present:
            present.append(cls)
    present = [c for c in present if (ids == c).any()]
    return _photo(ids, rng), ids, _caption(present)


def _photo(ids: np.ndarray, rng: random.Random) -> Image.Image:
    size = ids.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    colors = np.array(PALETTE, dtype=np.float32)[ids] * 0.7
    # Stripes whose direction and period depend on the class: the texture says which class a region is.
    angle = ids.astype(np.float32) * 0.7
    period = 3.0 + (ids % 5)
    stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) * (2 * np.pi / period))[..., None]
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, 6.0, colors.shape)
    return Image.fromarray(np.clip(colors + 40.0 * stripes + noise, 0, 255).astype(np.uint8))


def _caption(classes: list[int]) -> str:
    names = [CLASS_NAMES[c] for c in classes]
    if len(names) == 1:
        return f"a scene of {names[0]}"
    return f"a scene of {names[0]} with " + ", ".join(names[1:-1]) + (" and " if len(names) > 2 else "") + names[-1]


def write_scenes(
    out: str | Path,
    count: int = 16,
    size: int = 64,
    seed: int = 0,
    layout: str = "generic",
    annotations: bool = False,
    split: str = "training",
) -> list[str]:
    """Write ``count`` scenes under ``out``; returns their stems.

    ``generic``: ``images/<stem>.png``, ``maps/<stem>.png``, ``captions.jsonl``. ``ade20k``:
    ``images/<split>/<stem>.jpg``, ``annotations/<split>/<stem>.png``, ``prompt_<split>_blip.json``
    (the BLIP caption files' JSON lines). ``annotations``: maps as class-id PNGs (0 = other, id + 1)
    instead of colour maps.
    """
    if layout not in ("generic", "ade20k"):
        raise ValueError(f"layout must be generic or ade20k, got {layout!r}")
    out = Path(out)
    rng = random.Random(seed)
    if layout == "generic":
        images_dir, maps_dir, suffix = out / "images", out / "maps", ".png"
    else:
        images_dir, maps_dir, suffix = out / "images" / split, out / "annotations" / split, ".jpg"
    images_dir.mkdir(parents=True, exist_ok=True)
    maps_dir.mkdir(parents=True, exist_ok=True)
    stems, lines = [], []
    for index in range(count):
        stem = (
            f"scene_{index:04d}"
            if layout == "generic"
            else f"ADE_{'train' if split == 'training' else 'val'}_{index + 1:08d}"
        )
        photo, ids, caption = draw_scene(rng, size)
        photo.save(images_dir / f"{stem}{suffix}", quality=95)
        if annotations:
            Image.fromarray((ids + 1).astype(np.uint8), mode="L").save(maps_dir / f"{stem}.png")
        else:
            Image.fromarray(colorize(ids)).save(maps_dir / f"{stem}.png")
        if layout == "generic":
            lines.append(json.dumps({"file_name": f"{stem}{suffix}", "text": caption}))
        else:
            lines.append(
                json.dumps({"source": f"source/{stem}.png", "target": f"target/{stem}.jpg", "prompt": caption})
            )
        stems.append(stem)
    captions = out / ("captions.jsonl" if layout == "generic" else f"prompt_{split}_blip.json")
    atomic_write_text(captions, "\n".join(lines) + "\n")
    return stems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m delora_diffusion.data.demo_scenes",
        description="Draw a synthetic semantic-map data set (random rectangles of "
        "ADE20K classes, textured photos, captions).",
        allow_abbrev=False,
    )
    parser.add_argument("--out", required=True, help="folder to write into")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=("generic", "ade20k"), default="generic")
    parser.add_argument("--split", default="training", help="ADE20K layout split folder (training or validation)")
    parser.add_argument("--annotations", action="store_true", help="class-id annotation PNGs instead of colour maps")
    args = parser.parse_args(argv)
    stems = write_scenes(args.out, args.count, args.size, args.seed, args.layout, args.annotations, args.split)
    print(f"wrote {len(stems)} scenes ({args.layout} layout) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
