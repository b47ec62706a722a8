"""Reading images for evaluation: RGB decoding with clear errors, the all-black test, content hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import EvaluationInputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: Path) -> Image.Image:
    """Decode ``path`` fully as RGB; an unreadable file raises ``EvaluationInputError`` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise EvaluationInputError(f"{path}: cannot read image ({exc})") from None


def is_black(image: Image.Image) -> bool:
    """True when every pixel is 0 in every channel (what the SD safety checker returns for flagged images)."""
    return all(high == 0 for _, high in image.getextrema())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
