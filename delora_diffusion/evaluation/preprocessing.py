"""Image preprocessing of the evaluation protocols: resize, optional centre crop, normalisation.

Written out here, rather than borrowed from the backbones' processors, because the protocols are defined by
what one script ran, and the libraries moved underneath them: transformers 5's ``ViTImageProcessor`` and
``CLIPImageProcessor`` resize with torchvision on tensors, while OFT's script (transformers 4) resized with
PIL, which gives different pixels. One small engine covers both protocols: PIL resizing (what transformers 4
and torchvision do on PIL images), then the centre-crop offset rule of the library the protocol used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
# How the top-left corner of a centre crop is placed when (size - crop) is odd:
# transformers' center_crop floors (size - crop) // 2; torchvision's CenterCrop uses int(round((size - crop) / 2)).
CROP_OFFSETS = ("floor", "round")


@dataclass(frozen=True)
class ImagePreprocess:
    """One protocol's way from an RGB ``PIL.Image`` to a normalised float32 tensor of shape (3, S, S).

    ``resize``: an int resizes the shorter side to that many pixels and the longer one to
    ``int(resize * long / short)`` (aspect kept); a ``(height, width)`` pair resizes to exactly that.
    ``crop``: side of the centre crop taken after resizing (None: no crop). Pixel values are scaled to
    [0, 1], then normalised per channel as ``(x - mean) / std``.
    """

    resize: int | tuple[int, int]
    interpolation: str
    crop: int | None
    crop_offset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.crop_offset not in CROP_OFFSETS:
            raise ValueError(f"crop_offset must be one of {CROP_OFFSETS}, got {self.crop_offset!r}")
        if self.crop is None and isinstance(self.resize, int):
            raise ValueError("a shorter-side resize needs a crop to give square model inputs")

    @property
    def output_size(self) -> int:
        """Side of the square tensor this produces, in pixels."""
        if self.crop is not None:
            return self.crop
        height, width = self.resize
        if height != width:
            raise ValueError(f"resize {self.resize} is not square")
        return height

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize step, for an input of ``width`` × ``height`` pixels."""
        if not isinstance(self.resize, int):
            return self.resize[1], self.resize[0]
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.resize * long / short)
        return (self.resize, new_long) if width <= height else (new_long, self.resize)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the centre crop in an image of ``width`` × ``height`` pixels."""
        crop = self.crop
        if crop is None:
            return 0, 0, width, height
        if crop > width or crop > height:
            raise ValueError(f"cannot centre-crop {crop}×{crop} from {width}×{height}")
        if self.crop_offset == "floor":
            top, left = (height - crop) // 2, (width - crop) // 2
        else:
            top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
        return left, top, left + crop, top + crop

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess an RGB image; returns float32 (3, S, S)."""
        import torch  # here, not at the top: the protocol table is read by delora-eval --help

        if image.mode != "RGB":
            image = image.convert("RGB")
        image = image.resize(self.resized_size(*image.size), INTERPOLATIONS[self.interpolation])
        image = image.crop(self.crop_box(*image.size))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (pixels - mean) / std

    def describe(self) -> dict:
        """JSON-ready description (recorded in results and in the embedding-cache key)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
