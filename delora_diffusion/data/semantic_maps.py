"""Semantic maps as files: class-id annotations, colour maps, and palettes that link the two.

A map file is either a **class-id annotation** (a single-channel PNG: mode ``L``/``I``/``I;16``, as the
ADE20K benchmark ships them, 0 = "other", 1..K = the classes) or a **colour map** (anything else, read as
RGB, one palette colour per class, as ControlNet-style models take them). Training and generation feed
colour maps to the model, so annotations are coloured with the palette; evaluation needs class ids, so
colour maps are looked up in the palette. Both directions follow mmseg's ``reduce_zero_label``:
annotation value v becomes id v − 1 and "other" becomes ``IGNORE_INDEX``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError
from .ade20k import CLASS_NAMES, IGNORE_INDEX, OTHER_COLOR, PALETTE

MAP_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".webp")
ANNOTATION_MODES = ("L", "I", "I;16")


class MapError(UserError):
    """A map or palette file that cannot be used; the message names it."""


def open_map(path: str | Path) -> Image.Image:
    """Decode a map file fully, keeping its mode (so annotations stay single-channel)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise MapError(f"cannot read map {path} ({exc}); remove or replace the file") from exc


def is_annotation(image: Image.Image) -> bool:
    """True for a single-channel class-id annotation, False for a colour map."""
    return image.mode in ANNOTATION_MODES


def annotation_ids(values: np.ndarray, num_classes: int) -> np.ndarray:
    """Annotation values (0 = other, 1..K) → ids 0..K−1, with 0 and values above K → ``IGNORE_INDEX``."""
    values = values.astype(np.int64)
    ids = values - 1
    ids[(values == 0) | (values > num_classes)] = IGNORE_INDEX
    return ids


def colorize(ids: np.ndarray, palette=PALETTE) -> np.ndarray:
    """Class ids (H, W) → colour map (H, W, 3) uint8; ignored or unknown ids get ``OTHER_COLOR``."""
    table = np.array([*palette, OTHER_COLOR], dtype=np.uint8)
    index = np.where((ids >= 0) & (ids < len(palette)), ids, len(palette))
    return table[index]


def _color_keys(colors: np.ndarray) -> np.ndarray:
    colors = colors.astype(np.int64)
    return (colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]


def palette_lookup(rgb: np.ndarray, palette=PALETTE) -> np.ndarray:
    """Colour map (H, W, 3) uint8 → class ids (H, W) int64; colours not in the palette → ``IGNORE_INDEX``.

    A colour listed twice maps to its lower id.
    """
    keys = _color_keys(np.asarray(palette))
    order = np.argsort(keys, kind="stable")  # stable: the lower id of a shared colour comes first
    sorted_keys = keys[order]
    pixels = _color_keys(rgb)
    position = np.clip(np.searchsorted(sorted_keys, pixels, side="left"), 0, len(sorted_keys) - 1)
    found = sorted_keys[position] == pixels
    return np.where(found, order[position], IGNORE_INDEX).astype(np.int64)


def color_map(image: Image.Image, palette=PALETTE) -> Image.Image:
    """The RGB colour map the model sees: annotations are coloured with ``palette``, colour maps kept."""
    if is_annotation(image):
        return Image.fromarray(colorize(annotation_ids(np.asarray(image), len(palette)), palette))
    return image.convert("RGB")


def label_ids(image: Image.Image, palette=PALETTE) -> np.ndarray:
    """Class ids (H, W) int64 of a map, ``IGNORE_INDEX`` where "other" or an unknown colour."""
    if is_annotation(image):
        return annotation_ids(np.asarray(image), len(palette))
    return palette_lookup(np.asarray(image.convert("RGB")), palette)


def read_color_map(path: str | Path, palette=PALETTE) -> Image.Image:
    return color_map(open_map(path), palette)


def read_palette(path: str | Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """(class names, colours) of a palette file; the line or entry order gives the class ids.

    Formats: JSON, a list of ``[r, g, b]`` or of ``{"name": ..., "color": [r, g, b]}``; or text, one class
    per line as ``r g b [name]`` (commas allowed, ``#`` starts a comment).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError(f"cannot read palette file {path} ({exc})") from exc
    entries: list[tuple[str, list]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MapError(f"palette file {path} is not valid JSON ({exc.msg})") from exc
        if not isinstance(data, list):
            raise MapError(f"palette file {path}: expected a JSON list of [r, g, b] or {{name, color}} entries")
        for index, item in enumerate(data):
            if isinstance(item, dict):
                entries.append((str(item.get("name", f"class {index}")), item.get("color")))
            else:
                entries.append((f"class {index}", item))
    else:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].replace(",", " ").strip()
            if not line:
                continue
            parts = line.split(maxsplit=3)
            name = parts[3] if len(parts) > 3 else f"class {len(entries)}"
            entries.append((name, parts[:3] if len(parts) >= 3 else [f"line {number}"]))
    names, colors = [], []
    for index, (name, color) in enumerate(entries):
        try:
            rgb = tuple(int(c) for c in color)
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError
        except (TypeError, ValueError):
            raise MapError(f"palette file {path}: entry {index} ({color!r}) is not three integers 0..255") from None
        names.append(name)
        colors.append(rgb)
    if not colors:
        raise MapError(f"palette file {path} lists no colours")
    return tuple(names), tuple(colors)


def default_palette() -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """The ADE20K 150-class names and palette."""
    return CLASS_NAMES, PALETTE


def center_box(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): the largest centred region of a ``width`` × ``height`` map with the
    target's aspect ratio — the part of the map an image of the target size shows."""
    if width * target_height > height * target_width:  # wider than the target: trim the sides
        crop_w, crop_h = max(1, round(height * target_width / target_height)), height
    else:
        crop_w, crop_h = width, max(1, round(width * target_height / target_width))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def fit_map(
    image: Image.Image, width: int, height: int, palette=PALETTE
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The colour map an image of ``width`` × ``height`` is generated from: the centred region of the
    target's aspect ratio, resized with nearest neighbours (colours stay exact); and that region's box."""
    box = center_box(*image.size, width, height)
    fitted = color_map(image, palette).crop(box).resize((width, height), Image.NEAREST)
    return fitted, box
