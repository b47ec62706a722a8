"""Aspect-ratio buckets (kohya's ``--enable_bucket``): crop sizes of about ``resolution``² pixels in many shapes.

Each image trains at the bucket whose aspect ratio is nearest its own, so a portrait photo keeps its
head and feet instead of losing them to a square crop. Pure geometry, no torch: the batch sampler
that keeps every batch inside one bucket is ``training.determinism.BucketBatchSampler``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Size = tuple[int, int]  # (width, height) in pixels


@dataclass(frozen=True)
class BucketSpec:
    """``--resolution``, ``--min_bucket_reso``, ``--max_bucket_reso``, ``--bucket_reso_steps`` (pixels)."""

    resolution: int
    min_reso: int
    max_reso: int
    step: int

    def problem(self) -> str | None:
        """Why these flags make no buckets, or None."""
        if self.step < 8 or self.step % 8:
            return f"--bucket_reso_steps must be a positive multiple of 8 (the VAE's factor), got {self.step}"
        for flag, value in (("min_bucket_reso", self.min_reso), ("max_bucket_reso", self.max_reso)):
            if value % self.step:
                return f"--{flag} {value} must be a multiple of --bucket_reso_steps {self.step}"
        if not self.min_reso <= self.resolution <= self.max_reso:
            return (
                f"--resolution {self.resolution} must lie between --min_bucket_reso {self.min_reso} and "
                f"--max_bucket_reso {self.max_reso}"
            )
        return None

    def sizes(self) -> list[Size]:
        """Every bucket, sorted: the largest square of at most resolution² pixels, and for each width w from
        min to max (in steps) the tallest height within max with w·h ≤ resolution², both orientations."""
        area = self.resolution**2
        side = math.isqrt(area) // self.step * self.step
        found = {(side, side)}
        for width in range(self.min_reso, self.max_reso + 1, self.step):
            height = min(self.max_reso, area // width // self.step * self.step)
            if height >= self.min_reso:
                found |= {(width, height), (height, width)}
        return sorted(found)

    def describe(self) -> str:
        return f"buckets {self.min_reso}-{self.max_reso} px in steps of {self.step}, about {self.resolution}² px"


def nearest_bucket(width: int, height: int, sizes: list[Size]) -> Size:
    """The bucket whose aspect ratio is nearest ``width`` / ``height``, on a log scale (so 2:1 and 1:2 are
    equally far from square); ties go to the larger bucket."""
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: (abs(math.log(s[0] / s[1]) - ratio), -s[0] * s[1]))


def covering_size(width: int, height: int, size: Size) -> Size:
    """``width`` × ``height`` scaled (aspect kept) to the smallest size that covers ``size``: then cropped to it."""
    scale = max(size[0] / width, size[1] / height)
    return max(size[0], round(width * scale)), max(size[1], round(height * scale))
