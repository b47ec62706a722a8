"""Reading images for evaluation (the toolkit's one decoding rule, ``images.py``), the all-black test, hashes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..images import ImageReadError, decode_rgb, list_image_files
from .errors import EvaluationInputError


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive, hidden files left out), sorted by name."""
    return list_image_files(folder)[0]


def load_rgb(path: Path) -> Image.Image:
    """Decode ``path`` as training does (``images.decode_rgb``: EXIF-upright, 8-bit RGB, transparency on
    white); an unreadable file raises ``EvaluationInputError`` naming it."""
    try:
        return decode_rgb(path).image
    except ImageReadError as exc:
        raise EvaluationInputError(str(exc)) from None


def is_black(image: Image.Image) -> bool:
    """True when every pixel is 0 in every channel (what the SD safety checker returns for flagged images)."""
    return all(high == 0 for _, high in image.getextrema())
