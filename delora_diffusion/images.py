"""Reading an image file as the 8-bit RGB picture a person sees: the one decoding rule of every command.

- EXIF orientation is applied (a phone photo stored sideways is used upright, in training and evaluation);
- 16-bit and 32-bit greyscale (``I;16``, ``I``) are scaled to 8 bits (PIL's ``convert("RGB")`` clips them,
  so a 16-bit PNG would read as pure white);
- transparency (RGBA, LA, palette with a transparent colour) is composited over a background (white by
  default) instead of dropped (dropping shows whatever colour the hidden pixels hold, usually black).

A leaf module: imports nothing of the toolkit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from .errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
WHITE = (255, 255, 255)


class ImageReadError(UserError):
    """A file that cannot be decoded as an image; the message names it."""


class ImageDataError(UserError):
    """A data folder or image that cannot be used for training; the message names it."""


def background_colour(text: str) -> tuple[int, int, int]:
    """An RGB triple from a colour name or ``#RRGGBB`` (argparse type of ``--alpha_background``)."""
    import argparse

    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a colour: {text!r} (a name such as white, or #RRGGBB)") from None


@dataclass(frozen=True)
class Decoded:
    """An image as used, and what decoding had to change (for one summary line per folder)."""

    image: Image.Image  # RGB, 8 bits per channel
    high_bit_depth: bool  # scaled down from 16/32-bit samples
    had_alpha: bool  # transparency composited over the background


def _to_8bit(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    return Image.fromarray(np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8), mode="L")


def decode_rgb(path: str | Path, background: tuple[int, int, int] = WHITE) -> Decoded:
    """Decode every pixel of ``path`` into an upright 8-bit RGB image; ``ImageReadError`` naming it otherwise."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()  # decodes every pixel, so a truncated file fails here
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path} ({exc}); remove or replace the file") from exc
    high = image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    if high:
        image = _to_8bit(image)
    alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        image = Image.alpha_composite(canvas, rgba)
    return Decoded(image.convert("RGB"), high, alpha)


def list_image_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(images, skipped): the image files directly in ``folder`` by suffix, sorted by name, and the entries
    named like images that are not files (folders called ``x.png``). Hidden and temporary files are left out."""
    images, skipped = [], []
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        (images if path.is_file() else skipped).append(path)
    return images, skipped
