"""Pictures of instances: the views a subject folder holds and the multi-view sets judges learn from.

``python -m delora_diffusion.world.views --subject robot --out subjects/toy_robot`` writes a subject's
DreamBooth folder (studio photos, as the dataset's subjects are photographed).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .objects import CLASS_NOUNS, Instance, sample_instance
from .render import Scene, render, sample_pose
from .scenes import CONTEXTS

STUDIO_SHARE = 0.3  # of the non-first views; the first view of every instance is a studio photo


def instance_scenes(instance: Instance, count: int, rng: random.Random, studio_only: bool = False) -> list[Scene]:
    """``count`` scenes of one instance: a studio photo first, then studio photos or contexts, random poses."""
    scenes = []
    for k in range(count):
        studio = studio_only or k == 0 or rng.random() < STUDIO_SHARE
        context = "studio" if studio else rng.choice(CONTEXTS).name
        scenes.append(Scene(instance, context, None, sample_pose(rng), rng.randrange(2**31)))
    return scenes


def sibling(instance: Instance, rng: random.Random) -> Instance:
    """Another instance of the same class and colours: a different pattern or part, other proportions."""
    while True:
        other = replace(sample_instance(instance.class_noun, rng), main=instance.main, accent=instance.accent)
        if (other.pattern, other.part) != (instance.pattern, instance.part):
            return other


def instance_views(instances: int, views: int, seed: int, size: int = 64, siblings: int = 2) -> np.ndarray:
    """(instances, views, size, size, 3) uint8: random instances of every class, each in ``views`` scenes,
    in families of ``siblings`` consecutive instances that share class and colours (``sibling``)."""
    from .dataset import is_held_out, render_scenes

    rng = random.Random(f"views/{seed}")
    scenes = []
    for _ in range(0, instances, siblings):
        family = sample_instance(rng.choice(CLASS_NOUNS), rng)
        while is_held_out(family):
            family = sample_instance(family.class_noun, rng)
        scenes.extend(instance_scenes(family, views, rng))
        for _ in range(siblings - 1):
            scenes.extend(instance_scenes(sibling(family, rng), views, rng))
    return render_scenes(scenes, size).images.reshape(instances, views, size, size, 3)


def write_views(
    instance: Instance, out: str | Path, count: int = 5, seed: int = 0, size: int = 64, name: str = "view"
) -> list[Path]:
    """Studio photos of ``instance`` as ``out/{name}-{k}.png`` (a DreamBooth subject folder); atomic writes."""
    rng = random.Random(f"subject/{seed}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, scene in enumerate(instance_scenes(instance, count, rng, studio_only=True)):
        image, _ = render(scene, size)
        path = out / f"{name}-{k}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    from .subjects import SUBJECTS

    parser = argparse.ArgumentParser(
        prog="python -m delora_diffusion.world.views",
        allow_abbrev=False,
        description="Write a toy-world subject's photos (a DreamBooth subject folder).",
    )
    parser.add_argument("--subject", required=True, choices=sorted(SUBJECTS))
    parser.add_argument("--out", required=True, help="folder to write view-0.png ... into")
    parser.add_argument("--count", type=int, default=5, help="number of photos (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="poses and backdrops (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in write_views(SUBJECTS[args.subject], args.out, args.count, args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
