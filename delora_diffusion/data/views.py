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
    """A ``width`` × ``height`` crop at (``top``, ``left``) pixels of the resized image, flipped or not."""

    top: int
    left: int
    flip: bool
    width: int
    height: int


@dataclass
class EpochViews:
    """Crops (centred or random; square ``resolution`` unless an aspect-ratio bucket's size is given) and
    optional horizontal flips, redrawn each epoch."""

    resolution: int
    center_crop: bool
    random_flip: bool
    seed: int
    epoch: int = 0

    def view(self, role: str, index: int, width: int, height: int, size: tuple[int, int] | None = None) -> View:
        """The view of item ``index`` of ``role`` in the current epoch, for a resized ``width`` × ``height`` image
        cropped to ``size`` (width, height; default the square resolution)."""
        crop_w, crop_h = size or (self.resolution, self.resolution)
        rng = None
        if self.center_crop or (width == crop_w and height == crop_h):
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
        else:
            rng = random.Random(f"{self.seed}/{self.epoch}/{role}/{index}")
            top, left = rng.randint(0, height - crop_h), rng.randint(0, width - crop_w)
        if not self.random_flip:
            return View(top, left, False, crop_w, crop_h)
        rng = rng or random.Random(f"{self.seed}/{self.epoch}/{role}/{index}")
        return View(top, left, rng.random() < 0.5, crop_w, crop_h)

    def centre(self, width: int, height: int, size: tuple[int, int] | None = None) -> View:
        """The centred, unflipped view: the only one when views are fixed (what a latent cache encodes)."""
        crop_w, crop_h = size or (self.resolution, self.resolution)
        return View((height - crop_h) // 2, (width - crop_w) // 2, False, crop_w, crop_h)

    def apply(self, picture: Image.Image, view: View) -> torch.Tensor:
        """(3, view.height, view.width) float tensor in [0, 1] of ``picture`` seen through ``view``."""
        picture = TF.crop(picture, view.top, view.left, view.height, view.width)
        return TF.to_tensor(TF.hflip(picture) if view.flip else picture)
