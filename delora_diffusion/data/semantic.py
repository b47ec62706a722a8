"""Semantic-map → image training data: (image, map, caption) triples found by file stem.

Two layouts (``find_pairs``), both overridable folder by folder:

- ``ade20k``, the ADEChallengeData2016 tree the OFT / ETHER / DeLoRA S2I experiments train on:
  ``ROOT/images/<split>/*.jpg``, ``ROOT/annotations/<split>/*.png`` (class-id annotations or colour
  maps) and a caption file with one caption per image, as the BLIP caption files of those papers
  (``ROOT/prompt_<split>_blip.json``, JSON lines ``{"source": ..., "target": ..., "prompt": ...}``);
- ``generic``: ``ROOT/images/``, ``ROOT/maps/`` and ``ROOT/captions.jsonl``
  (``{"file_name": "0001.jpg", "text": "..."}`` per line).

An image without a map, a map without an image, or a pair of different sizes stops the run with an error
naming the files; an image without a caption trains with the empty prompt and is counted. Crops and flips
are functions of (seed, epoch, item), applied identically to the image and its map.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from .ade20k import PALETTE
from .dreambooth import IMAGE_EXTENSIONS, ImageDataError, View, load_image
from .semantic_maps import MAP_EXTENSIONS, MapError, read_color_map

LAYOUTS = ("auto", "ade20k", "generic")
DEFAULT_SPLIT = "training"
FILE_KEYS = ("file_name", "image", "target", "file", "source")  # what names the image in a caption record
TEXT_KEYS = ("text", "caption", "prompt")


class SemanticDataError(ImageDataError):
    """A data folder, caption file or image/map pair that cannot be used; the message names it."""


@dataclass(frozen=True)
class SemanticPair:
    stem: str
    image: Path
    map: Path
    caption: str | None  # None: no caption found (trained with the empty prompt)

    @property
    def prompt(self) -> str:
        return self.caption or ""


@dataclass
class SemanticData:
    """What ``find_pairs`` found: the pairs (sorted by stem) and where they came from."""

    pairs: list[SemanticPair]
    images_dir: Path
    maps_dir: Path
    captions_file: Path | None
    layout: str

    @property
    def missing_captions(self) -> int:
        return sum(pair.caption is None for pair in self.pairs)


# --- captions ---------------------------------------------------------------------------------------

def _record_caption(record, where: str) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise SemanticDataError(f"{where}: expected a JSON object with a file name and a caption, got {record!r}")
    name = next((record[k] for k in FILE_KEYS if isinstance(record.get(k), str)), None)
    text = next((record[k] for k in TEXT_KEYS if isinstance(record.get(k), str)), None)
    if name is None or text is None:
        raise SemanticDataError(f"{where}: expected a file name (one of {', '.join(FILE_KEYS)}) and a caption "
                                f"(one of {', '.join(TEXT_KEYS)}), got keys {sorted(record)}")
    return Path(name).stem, text


def read_captions(path: str | Path) -> dict[str, str]:
    """Caption per file stem from a JSON or JSON-lines caption file.

    Accepted: JSON lines of objects (a file name under ``file_name``/``image``/``target``/``file``/``source``,
    the caption under ``text``/``caption``/``prompt``), whatever the suffix (the BLIP ``.json`` files are
    JSON lines); a JSON list of such objects; or a JSON object ``{file name or stem: caption}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SemanticDataError(f"caption file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SemanticDataError(f"cannot read caption file {path} ({exc})") from exc
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    captions: dict[str, str] = {}
    if isinstance(whole, dict) and any(k in whole for k in FILE_KEYS) and any(k in whole for k in TEXT_KEYS):
        whole = [whole]  # a JSON-lines file of one record
    if isinstance(whole, dict):
        for name, caption in whole.items():
            if not isinstance(caption, str):
                raise SemanticDataError(f"{path}: the caption of {name!r} is not a string")
            captions[Path(name).stem] = caption
        return captions
    if isinstance(whole, list):
        for index, record in enumerate(whole):
            stem, caption = _record_caption(record, f"{path}: entry {index}")
            captions[stem] = caption
        return captions
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SemanticDataError(f"{path}:{number}: not JSON ({exc.msg}); expected JSON lines or one JSON "
                                    "document") from None
        stem, caption = _record_caption(record, f"{path}:{number}")
        captions[stem] = caption
    return captions


# --- finding pairs ----------------------------------------------------------------------------------

def _files_by_stem(folder: Path, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise SemanticDataError(f"{what} {folder} does not exist" if not folder.exists() else
                                f"{what} {folder} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.stem in found:
            raise SemanticDataError(f"{what} {folder} has two files for {path.stem!r}: {found[path.stem].name} and "
                                    f"{path.name}; keep one")
        found[path.stem] = path
    return found


def _default_captions(root: Path, layout: str, split: str) -> Path | None:
    if layout == "generic":
        candidates = [root / "captions.jsonl", root / "captions.json"]
    else:
        candidates = [root / f"prompt_{split}_blip.json", root / "captions" / f"{split}.jsonl",
                      root / "captions" / f"{split}.json", root / f"captions_{split}.jsonl",
                      root / f"captions_{split}.json", root / "captions.jsonl"]
    return next((p for p in candidates if p.is_file()), None)


def _resolve(root: Path, given: str | Path | None, default: Path) -> Path:
    if given is None:
        return default
    given = Path(given)
    return given if given.is_absolute() or given.exists() else root / given


def detect_layout(root: Path) -> str:
    if (root / "annotations").is_dir():
        return "ade20k"
    if (root / "maps").is_dir():
        return "generic"
    raise SemanticDataError(
        f"--data_dir {root}: no maps found: expected {root}/maps/ (generic layout: images/, maps/, captions.jsonl) "
        f"or {root}/annotations/<split>/ (ADE20K layout: images/<split>/, annotations/<split>/, captions); "
        "or name the folders with --images_dir and --maps_dir"
    )


def find_pairs(root: str | Path, layout: str = "auto", split: str = DEFAULT_SPLIT,
               images_dir: str | Path | None = None, maps_dir: str | Path | None = None,
               captions_file: str | Path | None = None) -> SemanticData:
    """Match images, maps and captions of a data folder by file stem (see the module docstring).

    ``images_dir``/``maps_dir``/``captions_file`` override the layout's folders (relative to ``root``
    unless absolute). Checks every pair's sizes from the file headers, so a mismatch fails before training.
    """
    root = Path(root)
    if not root.is_dir():
        raise SemanticDataError(f"--data_dir {root} does not exist" if not root.exists() else
                                f"--data_dir {root} is not a folder")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        layout = "generic" if maps_dir is not None and images_dir is not None else detect_layout(root)
    if layout == "ade20k":
        default_images, default_maps = root / "images" / split, root / "annotations" / split
    else:
        default_images, default_maps = root / "images", root / "maps"
    images_path = _resolve(root, images_dir, default_images)
    maps_path = _resolve(root, maps_dir, default_maps)
    captions_path = (_resolve(root, captions_file, root) if captions_file is not None
                     else _default_captions(root, layout, split))

    images = _files_by_stem(images_path, IMAGE_EXTENSIONS, "images folder")
    maps = _files_by_stem(maps_path, tuple(dict.fromkeys(MAP_EXTENSIONS + IMAGE_EXTENSIONS)), "maps folder")
    if not images:
        raise SemanticDataError(f"images folder {images_path} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    for stem, path in images.items():
        if stem not in maps:
            raise SemanticDataError(f"image {path} has no map: expected {maps_path}/{stem}.png")
    for stem, path in maps.items():
        if stem not in images:
            raise SemanticDataError(f"map {path} has no image: expected {images_path}/{stem}.jpg (or .png, .webp)")
    captions = read_captions(captions_path) if captions_path is not None else {}
    pairs = []
    for stem in sorted(images):
        check_same_size(images[stem], maps[stem])
        pairs.append(SemanticPair(stem, images[stem], maps[stem], captions.get(stem)))
    return SemanticData(pairs, images_path, maps_path, captions_path, layout)


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed: EXIF rotations by 90° swap the stored sizes (read from the header only)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
            return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise SemanticDataError(f"cannot read {path} ({exc}); remove or replace the file") from exc


def check_same_size(image: Path, map_file: Path) -> None:
    image_size, map_size = _header_size(image), _header_size(map_file)
    if image_size != map_size:
        raise SemanticDataError(f"map {map_file} is {map_size[0]}×{map_size[1]} but its image {image} is "
                                f"{image_size[0]}×{image_size[1]}: a map must have its image's size")


# --- the dataset ------------------------------------------------------------------------------------

class SemanticDataset(Dataset):
    """Item i: ``{"pixel_values": (3, R, R) in [-1, 1] | "latent_dist": (2·C, R/f, R/f), "control_image":
    (3, R, R) in [0, 1], "prompt": str}`` — the image and its colour map seen through the same view.

    Images and maps are read when an item is requested (data sets like ADE20K do not fit in memory);
    the image is resized bilinearly, the map with nearest neighbours so its colours stay exact.
    """

    def __init__(self, pairs: list[SemanticPair], resolution: int, center_crop: bool, random_flip: bool,
                 seed: int, palette=PALETTE) -> None:
        self.pairs = pairs
        self.resolution = resolution
        self.center_crop = center_crop
        self.random_flip = random_flip
        self.seed = seed
        self.palette = palette
        self.epoch = 0
        self.latent_cache: torch.Tensor | None = None  # (N, 2·C, R/f, R/f) posteriors, when views are fixed

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Called by the data loader each epoch: the random views depend on it."""
        self.epoch = epoch

    @property
    def fixed_views(self) -> bool:
        """True when an item looks the same every epoch (centre crop, no flip): its latents can be cached."""
        return self.center_crop and not self.random_flip

    def view(self, index: int, width: int, height: int) -> View:
        """Crop and flip of item ``index`` in the current epoch, for a resized size of ``width`` × ``height``."""
        size = self.resolution
        rng = random.Random(f"{self.seed}/{self.epoch}/semantic/{index}")
        if self.center_crop:
            top, left = (height - size) // 2, (width - size) // 2
        else:
            top, left = rng.randint(0, height - size), rng.randint(0, width - size)
        return View(top, left, self.random_flip and rng.random() < 0.5)

    def _resize(self, picture: Image.Image, nearest: bool) -> Image.Image:
        if nearest:
            return TF.resize(picture, self.resolution, interpolation=InterpolationMode.NEAREST)
        return TF.resize(picture, self.resolution, interpolation=InterpolationMode.BILINEAR, antialias=True)

    def _crop(self, picture: Image.Image, view: View) -> torch.Tensor:
        picture = TF.crop(picture, view.top, view.left, self.resolution, self.resolution)
        return TF.to_tensor(TF.hflip(picture) if view.flip else picture)

    def _control(self, index: int) -> Image.Image:
        try:
            return self._resize(read_color_map(self.pairs[index].map, self.palette), nearest=True)
        except MapError as exc:
            raise SemanticDataError(str(exc)) from exc

    def _image(self, index: int, control: Image.Image) -> Image.Image:
        pair = self.pairs[index]
        image = self._resize(load_image(pair.image), nearest=False)
        if image.size != control.size:
            raise SemanticDataError(f"map {pair.map} and image {pair.image} have different sizes (after the "
                                    "image's EXIF rotation): a map must have its image's size")
        return image

    def pixels(self, index: int) -> torch.Tensor:
        """(3, R, R) image in [-1, 1] through the item's current view (for encoding latents once)."""
        control = self._control(index)
        return self._crop(self._image(index, control), self.view(index, *control.size)) * 2.0 - 1.0

    def __getitem__(self, index: int) -> dict:
        control = self._control(index)
        view = self.view(index, *control.size)
        item = {"control_image": self._crop(control, view), "prompt": self.pairs[index].prompt}
        if self.latent_cache is not None:
            item["latent_dist"] = self.latent_cache[index]
        else:
            item["pixel_values"] = self._crop(self._image(index, control), view) * 2.0 - 1.0
        return item


def collate_semantic(items: list[dict]) -> dict:
    """``{"pixel_values" | "latent_dist": (B, ...), "control_image": (B, 3, R, R), "prompts": [str] * B}``."""
    key = "latent_dist" if "latent_dist" in items[0] else "pixel_values"
    return {key: torch.stack([item[key] for item in items]).contiguous(),
            "control_image": torch.stack([item["control_image"] for item in items]).contiguous(),
            "prompts": [item["prompt"] for item in items]}
