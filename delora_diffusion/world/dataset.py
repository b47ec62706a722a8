"""Pretraining data: many random scenes rendered once into arrays, in parallel, from one seed.

Scene ``k`` of a dataset depends on ``(seed, k)`` only, so any worker count gives the same arrays.
Instances held out for personalisation (``HELD_OUT``) never appear: a scene that would draw one is
redrawn with the next random instance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from .objects import CLASS_NOUNS, Instance, sample_instance
from .render import Scene, render, sample_scene
from .scenes import CONTEXT_NAMES


def is_held_out(instance: Instance) -> bool:
    """True for instances reserved as personalisation subjects (see ``subjects.py``)."""
    from .subjects import HELD_OUT_COMBINATIONS

    return (instance.class_noun, instance.main, instance.accent) in HELD_OUT_COMBINATIONS


def pretraining_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of the pretraining stream of ``seed``."""
    rng = random.Random(f"{seed}/{index}")
    while True:
        class_noun = rng.choice(CLASS_NOUNS)
        instance = sample_instance(class_noun, rng)
        if not is_held_out(instance):
            return sample_scene(rng, instance=instance)


@dataclass
class RenderedSet:
    """``images`` (N, H, W, 3) uint8, ``masks`` (N, H, W) bool, and per scene its caption and labels."""

    images: np.ndarray
    masks: np.ndarray
    captions: list[str]
    class_ids: np.ndarray  # index into CLASS_NOUNS
    context_ids: np.ndarray  # index into scenes.CONTEXT_NAMES (0 = studio)
    scenes: list[Scene]


def _render_range(args) -> tuple[np.ndarray, np.ndarray]:
    scenes, size = args
    images = np.empty((len(scenes), size, size, 3), np.uint8)
    masks = np.empty((len(scenes), size, size), bool)
    for k, scene in enumerate(scenes):
        image, mask = render(scene, size)
        images[k] = np.asarray(image)
        masks[k] = np.asarray(mask) > 0
    return images, masks


def render_scenes(scenes: list[Scene], size: int = 64, workers: int = 1) -> RenderedSet:
    """Render ``scenes`` (on ``workers`` processes) into arrays with their captions and labels."""
    chunks = [scenes[i : i + 512] for i in range(0, len(scenes), 512)]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_render_range, [(c, size) for c in chunks])
    else:
        parts = [_render_range((c, size)) for c in chunks]
    images = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, size, size, 3), np.uint8)
    masks = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, size, size), bool)
    return RenderedSet(
        images=images,
        masks=masks,
        captions=[s.caption() for s in scenes],
        class_ids=np.array([CLASS_NOUNS.index(s.instance.class_noun) for s in scenes], np.int64),
        context_ids=np.array([CONTEXT_NAMES.index(s.context) for s in scenes], np.int64),
        scenes=scenes,
    )


def pretraining_set(count: int, seed: int, size: int = 64, workers: int = 1, start: int = 0) -> RenderedSet:
    return render_scenes([pretraining_scene(seed, start + k) for k in range(count)], size, workers)
