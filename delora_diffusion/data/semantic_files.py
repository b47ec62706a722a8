"""Semantic-map → image data on disk: (image, map, caption) triples found by file stem (no torch: the
flag parsers and ``generate.py semantic`` read it too; the training dataset is ``semantic.py``).

Two layouts (``find_pairs``), both overridable folder by folder:

- ``ade20k``, the ADEChallengeData2016 tree the OFT / ETHER / DeLoRA S2I experiments train on:
  ``ROOT/images/<split>/*.jpg``, ``ROOT/annotations/<split>/*.png`` (class-id annotations or colour
  maps) and a caption file with one caption per image, as the BLIP caption files of those papers
  (``ROOT/prompt_<split>_blip.json``, JSON lines ``{"source": ..., "target": ..., "prompt": ...}``);
- ``generic``: ``ROOT/images/``, ``ROOT/maps/`` and ``ROOT/captions.jsonl``
  (``{"file_name": "0001.jpg", "text": "..."}`` per line).

An image without a map, a map without an image, or a pair of different sizes stops the run with an error
naming the files; an image without a caption trains with the empty prompt and is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..fileio import json_lines
from ..images import IMAGE_SUFFIXES as IMAGE_EXTENSIONS
from ..images import ImageDataError
from .semantic_maps import MAP_EXTENSIONS

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
        raise SemanticDataError(
            f"{where}: expected a file name (one of {', '.join(FILE_KEYS)}) and a caption "
            f"(one of {', '.join(TEXT_KEYS)}), got keys {sorted(record)}"
        )
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
    for where, record in json_lines(
        path, SemanticDataError, "JSON", "; expected JSON lines or one JSON document", text=text
    ):
        stem, caption = _record_caption(record, where)
        captions[stem] = caption
    return captions


# --- finding pairs ----------------------------------------------------------------------------------


def _files_by_stem(folder: Path, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise SemanticDataError(
            f"{what} {folder} does not exist" if not folder.exists() else f"{what} {folder} is not a folder"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.stem in found:
            raise SemanticDataError(
                f"{what} {folder} has two files for {path.stem!r}: {found[path.stem].name} and {path.name}; keep one"
            )
        found[path.stem] = path
    return found


def _default_captions(root: Path, layout: str, split: str) -> Path | None:
    if layout == "generic":
        candidates = [root / "captions.jsonl", root / "captions.json"]
    else:
        candidates = [
            root / f"prompt_{split}_blip.json",
            root / "captions" / f"{split}.jsonl",
            root / "captions" / f"{split}.json",
            root / f"captions_{split}.jsonl",
            root / f"captions_{split}.json",
            root / "captions.jsonl",
        ]
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


def find_pairs(
    root: str | Path,
    layout: str = "auto",
    split: str = DEFAULT_SPLIT,
    images_dir: str | Path | None = None,
    maps_dir: str | Path | None = None,
    captions_file: str | Path | None = None,
) -> SemanticData:
    """Match images, maps and captions of a data folder by file stem (see the module docstring).

    ``images_dir``/``maps_dir``/``captions_file`` override the layout's folders (relative to ``root``
    unless absolute). Checks every pair's sizes from the file headers, so a mismatch fails before training.
    """
    root = Path(root)
    if not root.is_dir():
        raise SemanticDataError(
            f"--data_dir {root} does not exist" if not root.exists() else f"--data_dir {root} is not a folder"
        )
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
    captions_path = (
        _resolve(root, captions_file, root) if captions_file is not None else _default_captions(root, layout, split)
    )

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
        raise SemanticDataError(
            f"map {map_file} is {map_size[0]}×{map_size[1]} but its image {image} is "
            f"{image_size[0]}×{image_size[1]}: a map must have its image's size"
        )
