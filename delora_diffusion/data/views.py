"""The crop and flip a training image is seen through in one epoch, shared by every dataset.

A view is a function of (seed, epoch, role, index) only, never of hidden RNG state, so any batch can
be rebuilt exactly after a resume and on any number of data-loader workers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF
from PIL import Image


@dataclass(frozen=True)
class View:
    """Where an image is cropped (pixels from the top-left of the resized image) and whether it is flipped."""

    top: int
    left: int
    flip: bool


@dataclass
class EpochViews:
    """Square ``resolution`` crops (centred or random) and optional horizontal flips, redrawn each epoch."""

    resolution: int
    center_crop: bool
    random_flip: bool
    seed: int
    epoch: int = 0

    def view(self, role: str, index: int, width: int, height: int) -> View:
        """The view of item ``index`` of ``role`` in the current epoch, for a resized ``width`` × ``height`` image."""
        size = self.resolution
        rng = None
        if self.center_crop or (width == size and height == size):
            top, left = (height - size) // 2, (width - size) // 2
        else:
            rng = random.Random(f"{self.seed}/{self.epoch}/{role}/{index}")
            top, left = rng.randint(0, height - size), rng.randint(0, width - size)
        if not self.random_flip:
            return View(top, left, False)
        rng = rng or random.Random(f"{self.seed}/{self.epoch}/{role}/{index}")
        return View(top, left, rng.random() < 0.5)

    def centre(self, width: int, height: int) -> View:
        """The centred, unflipped view: the only one when views are fixed (what a latent cache encodes)."""
        return View((height - self.resolution) // 2, (width - self.resolution) // 2, False)

    def apply(self, picture: Image.Image, view: View) -> torch.Tensor:
        """(3, R, R) float tensor in [0, 1] of ``picture`` seen through ``view``."""
        picture = TF.crop(picture, view.top, view.left, self.resolution, self.resolution)
        return TF.to_tensor(TF.hflip(picture) if view.flip else picture)
