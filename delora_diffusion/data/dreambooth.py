"""DreamBooth training data: subject images with their prompt, optionally paired with class images.

Images are read once (by ``images.decode_rgb``: upright, 8-bit RGB, transparency on white; then the short
side resized to the resolution) so that a corrupt file stops the run before training with an error naming
it. Crops and flips: ``views.EpochViews``; with aspect-ratio buckets (``buckets.py``) an item is resized to
cover its bucket and cropped to it, its class image to the same bucket so the joint batch stacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from ..images import IMAGE_SUFFIXES as IMAGE_EXTENSIONS
from ..images import WHITE, ImageDataError, ImageReadError, decode_rgb, list_image_files
from .buckets import BucketSpec, Size, covering_size, nearest_bucket
from .captions import CaptionError, CaptionPolicy, read_captions
from .views import EpochViews, View

INSTANCE, CLASS = "instance", "class"
SMALL_SHARE = 0.5  # an image whose short side is under half the resolution is upscaled more than 2x: say so


def list_images(folder: str | Path, what: str = "image folder") -> list[Path]:
    """The images of ``folder`` (by extension, hidden and temporary files skipped), sorted by name."""
    return _listing(folder, what)[0]


def _listing(folder: str | Path, what: str) -> tuple[list[Path], list[Path]]:
    folder = Path(folder)
    if not folder.exists():
        raise ImageDataError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise ImageDataError(f"{what} {folder} is not a folder")
    return list_image_files(folder)


def load_image(path: str | Path) -> Image.Image:
    """Decode ``path`` fully as upright 8-bit RGB (``images.decode_rgb``); ``ImageDataError`` naming it otherwise."""
    try:
        return decode_rgb(path).image
    except ImageReadError as exc:
        raise ImageDataError(str(exc)) from exc


def _colour_name(rgb: tuple[int, int, int]) -> str:
    return "white" if tuple(rgb) == WHITE else "#{:02x}{:02x}{:02x}".format(*rgb)


def _names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


@dataclass
class ImageSet:
    """The images of one role (instance or class), resized so their short side is ``resolution``."""

    folder: Path
    prompt: str
    paths: list[Path]
    images: list[Image.Image | None]
    resolution: int
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) after resizing

    notes: list[str] = field(default_factory=list)  # what loading changed or skipped, said once per folder
    captions: list[str | None] = field(default_factory=list)  # per image; None (or empty list): ``prompt``
    caption_source: str = "none"
    interpolation: str = "bilinear"  # --image_interpolation_mode, also of the resize to a bucket
    original_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) as decoded: SDXL's input
    caption_note: str | None = None  # which captions train (every run says it; not a warning)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        prompt: str,
        resolution: int,
        what: str,
        limit: int | None = None,
        background: tuple[int, int, int] = WHITE,
        caption_extension: str | None = None,
        interpolation: str = "bilinear",
    ) -> ImageSet:
        """The images of ``folder`` (the first ``limit``), transparency composited on ``background`` (RGB);
        with ``caption_extension``, their captions (``captions.read_captions``), ``prompt`` being the fallback.
        Resized with ``interpolation`` (bilinear, bicubic, lanczos or nearest) to a short side of ``resolution``."""
        paths, skipped = _listing(folder, what)
        if not paths:
            raise ImageDataError(f"{what} {folder} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths = paths[:limit] if limit else paths
        captions, source = [], "none"
        if caption_extension is not None:
            try:
                found = read_captions(folder, paths, caption_extension)
            except CaptionError as exc:
                raise ImageDataError(str(exc)) from exc
            captions, source = found.texts, found.source
        decoded = []
        for path in paths:
            try:
                decoded.append(decode_rgb(path, background))
            except ImageReadError as exc:
                raise ImageDataError(str(exc)) from exc
        notes = []
        for found, says in (
            (skipped, "named like images but not files, skipped"),
            (
                [p for p, d in zip(paths, decoded) if d.had_alpha],
                f"with transparency, composited on {_colour_name(background)}",
            ),
            ([p for p, d in zip(paths, decoded) if d.high_bit_depth], "16/32-bit, scaled to 8 bits"),
            (
                [p for p, d in zip(paths, decoded) if min(d.image.size) < SMALL_SHARE * resolution],
                f"under {SMALL_SHARE:g}× the resolution {resolution} px, upscaled",
            ),
        ):
            if found:
                notes.append(f"{what} {folder}: {len(found)} {says}: {_names(found)}")
        caption_note = None
        if caption_extension is not None:  # said every run: which captions trained
            count = sum(c is not None for c in captions)
            if not count:
                caption_note = (
                    f"{what} {folder}: no captions ({source}; metadata.jsonl or *{caption_extension} "
                    f"beside the images): every image trains with “{prompt}”"
                )
            else:
                rest = f"; the others train with “{prompt}”" if count < len(paths) else ""
                caption_note = f"{what} {folder}: captions from {source} for {count} of {len(paths)} images{rest}"
        mode = InterpolationMode[interpolation.upper()]
        images = [TF.resize(d.image, resolution, interpolation=mode, antialias=True) for d in decoded]
        return cls(
            Path(folder),
            prompt,
            paths,
            images,
            resolution,
            [im.size for im in images],
            notes,
            captions,
            source,
            interpolation,
            [d.image.size for d in decoded],
            caption_note,
        )

    def prompt_of(self, index: int) -> str:
        """Image ``index``'s caption, or the set's prompt when it has none."""
        caption = self.captions[index] if self.captions else None
        return self.prompt if caption is None else caption

    def __len__(self) -> int:
        return len(self.paths)

    def release_images(self) -> None:
        """Drop the decoded images once their latents are cached."""
        self.images = [None] * len(self.paths)


class DreamBoothDataset(Dataset):
    """Item i pairs instance image i mod n_instance with class image i mod n_class (DreamBooth's pairing).

    An item is ``{"instance": example, "class": example}`` (``"class"`` only with class images), an
    example being ``{"prompt": str, "time_ids": (6,), "pixel_values": (3, H, W) in [-1, 1]}`` or, once
    latents are cached, with ``"latent_dist": (2·C, H/f, W/f)`` (the VAE posterior's mean and log-variance)
    instead of pixels; H = W = R, or with ``buckets`` the size of the bucket nearest the item's instance
    image. ``time_ids`` are SDXL's size conditioning (``time_ids``).
    """

    def __init__(
        self,
        instance: ImageSet,
        class_images: ImageSet | None,
        resolution: int,
        center_crop: bool,
        random_flip: bool,
        seed: int,
        captions: CaptionPolicy | None = None,
        buckets: BucketSpec | None = None,
    ) -> None:
        self.sets = {INSTANCE: instance}
        if class_images is not None:
            self.sets[CLASS] = class_images
        self.resolution = resolution
        self.views = EpochViews(resolution, center_crop, random_flip, seed)
        self.captions = captions or CaptionPolicy()  # per-step changes of the instance captions
        self.buckets = buckets
        self.item_sizes: list[Size] = [(resolution, resolution)] * len(self)  # (width, height) each item trains at
        if buckets is not None:
            sizes = buckets.sizes()
            self.item_sizes = [nearest_bucket(*instance.sizes[i % len(instance)], sizes) for i in range(len(self))]
        self._resized: dict[tuple[str, int, Size], Image.Image] = {}
        self.latent_cache: dict[tuple[str, int, Size], torch.Tensor] | None = None  # (role, image, size) -> posterior

    def __len__(self) -> int:
        return max(len(s) for s in self.sets.values())

    def set_epoch(self, epoch: int) -> None:
        """Called by the data loader each epoch: the random views depend on it."""
        self.views.epoch = epoch

    def item_crops(self) -> list[tuple[str, int, Size]]:
        """Every distinct (role, image index, crop size) an item trains with, in item order."""
        return list(
            dict.fromkeys(
                (role, index % len(images), self.item_sizes[index])
                for index in range(len(self))
                for role, images in self.sets.items()
            )
        )

    def fresh_encode_reason(self) -> str | None:
        """Why an image's pixels can differ between steps (so latents cannot be cached), or None."""
        if self.views.random_flip:
            return "--random_flip flips images at random"
        if not self.views.center_crop:
            uneven = list(
                dict.fromkeys(
                    self.sets[role].paths[i].name
                    for role, i, size in self.item_crops()
                    if covering_size(*self.sets[role].sizes[i], size) != size
                )
            )
            if uneven:
                shown = ", ".join(uneven[:3]) + (" ..." if len(uneven) > 3 else "")
                shape = "not of their bucket's shape" if self.buckets else "non-square"
                return f"random crops of {len(uneven)} {shape} image(s) ({shown}); pass --center_crop to cache"
        return None

    def view(self, role: str, index: int) -> View:
        """The crop and flip of item ``index``'s ``role`` image in the current epoch."""
        size = self.item_sizes[index]
        width, height = covering_size(*self.sets[role].sizes[index % len(self.sets[role])], size)
        return self.views.view(role, index, width, height, size)

    def pixels(self, role: str, image_index: int, view: View) -> torch.Tensor:
        """(3, view.height, view.width) float tensor in [-1, 1] of one image seen through ``view``."""
        return self.views.apply(self._covering(role, image_index, (view.width, view.height)), view) * 2.0 - 1.0

    def _covering(self, role: str, image_index: int, size: Size) -> Image.Image:
        """The image resized to cover ``size`` (itself without buckets: its short side is the resolution)."""
        images = self.sets[role]
        image = images.images[image_index]
        if image is None:
            raise RuntimeError("images were released after caching their latents")
        covering = covering_size(*image.size, size)
        if covering == image.size:
            return image
        key = (role, image_index, size)
        if key not in self._resized:  # a few per image (one per bucket it meets): kept, not redone each step
            mode = InterpolationMode[images.interpolation.upper()]
            self._resized[key] = TF.resize(image, [covering[1], covering[0]], interpolation=mode, antialias=True)
        return self._resized[key]

    def time_ids(self, role: str, image_index: int, view: View) -> torch.Tensor:
        """SDXL's size conditioning of one example, in pixels: (original height, original width, crop top, crop
        left, crop height, crop width), the crop measured in the resized (and, when flipped, flipped) image."""
        images = self.sets[role]
        width, height = images.original_sizes[image_index]
        covered = covering_size(*images.sizes[image_index], (view.width, view.height))
        left = covered[0] - view.left - view.width if view.flip else view.left
        return torch.tensor([height, width, view.top, left, view.height, view.width], dtype=torch.float32)

    def fixed_view(self, role: str, image_index: int, size: Size | None = None) -> View:
        """The only view of an image at crop ``size`` (default the square resolution) when
        ``fresh_encode_reason()`` is None (centre crop, no flip)."""
        size = size or (self.resolution, self.resolution)
        return self.views.centre(*covering_size(*self.sets[role].sizes[image_index], size), size)

    def release_images(self) -> None:
        """Drop the decoded images once their latents are cached."""
        for images in self.sets.values():
            images.release_images()
        self._resized.clear()

    def prompt(self, role: str, index: int) -> str:
        """The prompt item ``index``'s ``role`` image trains with in the current epoch."""
        images = self.sets[role]
        prompt = images.prompt_of(index % len(images))
        if role != INSTANCE:
            return prompt
        return self.captions.apply(prompt, self.views.seed, self.views.epoch, index)

    def fixed_prompts(self) -> list[str]:
        """Every prompt an item can get when captions are not shuffled (the empty one too with dropout)."""
        prompts = [images.prompt_of(i) for images in self.sets.values() for i in range(len(images))]
        return list(dict.fromkeys(prompts + ([""] if self.captions.dropout_rate > 0 else [])))

    def __getitem__(self, index: int) -> dict[str, dict]:
        item = {}
        for role, images in self.sets.items():
            image_index = index % len(images)
            view = self.view(role, index)
            example = {"prompt": self.prompt(role, index), "time_ids": self.time_ids(role, image_index, view)}
            if self.latent_cache is not None:
                example["latent_dist"] = self.latent_cache[role, image_index, self.item_sizes[index]]
            else:
                example["pixel_values"] = self.pixels(role, image_index, view)
            item[role] = example
        return item


def collate_dreambooth(items: list[dict[str, dict]]) -> dict:
    """Instance examples first, then class examples (as in DreamBooth's joint batch).

    Returns ``{"pixel_values" | "latent_dist": (B, ...), "prompts": [str] * B, "time_ids": (B, 6),
    "is_prior": (B,) bool}``.
    """
    examples = [item[INSTANCE] for item in items] + [item[CLASS] for item in items if CLASS in item]
    is_prior = torch.tensor([False] * len(items) + [True] * (len(examples) - len(items)))
    key = "latent_dist" if "latent_dist" in examples[0] else "pixel_values"
    return {
        key: torch.stack([e[key] for e in examples]).contiguous(),
        "prompts": [e["prompt"] for e in examples],
        "time_ids": torch.stack([e["time_ids"] for e in examples]),
        "is_prior": is_prior,
    }
