"""Semantic-map → image training dataset over the pairs ``semantic_files.find_pairs`` found.

Crops and flips (``views.EpochViews``) are applied identically to the image and its map.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from .ade20k import PALETTE
from .dreambooth import load_image
from .semantic_files import SemanticDataError, SemanticPair
from .semantic_maps import MapError, read_color_map
from .views import EpochViews, View

# --- the dataset ------------------------------------------------------------------------------------


class SemanticDataset(Dataset):
    """Item i: ``{"pixel_values": (3, R, R) in [-1, 1] | "latent_dist": (2·C, R/f, R/f), "control_image":
    (3, R, R) in [0, 1], "prompt": str}`` — the image and its colour map seen through the same view.

    Images and maps are read when an item is requested (data sets like ADE20K do not fit in memory);
    the image is resized bilinearly, the map with nearest neighbours so its colours stay exact.
    """

    def __init__(
        self,
        pairs: list[SemanticPair],
        resolution: int,
        center_crop: bool,
        random_flip: bool,
        seed: int,
        palette=PALETTE,
    ) -> None:
        self.pairs = pairs
        self.resolution = resolution
        self.palette = palette
        self.views = EpochViews(resolution, center_crop, random_flip, seed)
        self.latent_cache: torch.Tensor | None = None  # (N, 2·C, R/f, R/f) posteriors, when views are fixed

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Called by the data loader each epoch: the random views depend on it."""
        self.views.epoch = epoch

    def view(self, index: int, width: int, height: int) -> View:
        """Crop and flip of item ``index`` in the current epoch, for a resized size of ``width`` × ``height``."""
        return self.views.view("semantic", index, width, height)

    def _resize(self, picture: Image.Image, nearest: bool) -> Image.Image:
        if nearest:
            return TF.resize(picture, self.resolution, interpolation=InterpolationMode.NEAREST)
        return TF.resize(picture, self.resolution, interpolation=InterpolationMode.BILINEAR, antialias=True)

    def _control(self, index: int) -> Image.Image:
        try:
            return self._resize(read_color_map(self.pairs[index].map, self.palette), nearest=True)
        except MapError as exc:
            raise SemanticDataError(str(exc)) from exc

    def _image(self, index: int, control: Image.Image) -> Image.Image:
        pair = self.pairs[index]
        image = self._resize(load_image(pair.image), nearest=False)
        if image.size != control.size:
            raise SemanticDataError(
                f"map {pair.map} and image {pair.image} have different sizes (after the "
                "image's EXIF rotation): a map must have its image's size"
            )
        return image

    def pixels(self, index: int) -> torch.Tensor:
        """(3, R, R) image in [-1, 1] through the item's current view (for encoding latents once)."""
        control = self._control(index)
        return self.views.apply(self._image(index, control), self.view(index, *control.size)) * 2.0 - 1.0

    def __getitem__(self, index: int) -> dict:
        control = self._control(index)
        view = self.view(index, *control.size)
        item = {"control_image": self.views.apply(control, view), "prompt": self.pairs[index].prompt}
        if self.latent_cache is not None:
            item["latent_dist"] = self.latent_cache[index]
        else:
            item["pixel_values"] = self.views.apply(self._image(index, control), view) * 2.0 - 1.0
        return item


def collate_semantic(items: list[dict]) -> dict:
    """``{"pixel_values" | "latent_dist": (B, ...), "control_image": (B, 3, R, R), "prompts": [str] * B}``."""
    key = "latent_dist" if "latent_dist" in items[0] else "pixel_values"
    return {
        key: torch.stack([item[key] for item in items]).contiguous(),
        "control_image": torch.stack([item["control_image"] for item in items]).contiguous(),
        "prompts": [item["prompt"] for item in items],
    }
