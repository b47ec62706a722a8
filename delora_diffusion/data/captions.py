"""Per-image captions of a training folder, and the per-step caption changes of kohya-style training.

Captions come from ``metadata.jsonl`` in the folder (the Hugging Face imagefolder convention: one
``{"file_name": ..., "text": ...}`` per line) or else from a text file beside each image (``dog1.jpg`` →
``dog1.txt``, ``--caption_extension``). An image without one trains with the fallback prompt
(``--instance_prompt``). Per step, a caption may be dropped (the empty prompt, ``--caption_dropout_rate``) and
its comma-separated tags shuffled after the first ``--keep_tokens`` (``--shuffle_caption``); both are drawn
from (seed, epoch, index) only, so a resumed run sees the same captions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..fileio import json_lines

METADATA_FILE = "metadata.jsonl"


class CaptionError(UserError):
    """A caption file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Captions:
    """One caption per image (None: the fallback prompt) and where they came from."""

    texts: list[str | None]
    source: str  # "metadata.jsonl", "*.txt files" or "none"

    @property
    def found(self) -> int:
        return sum(text is not None for text in self.texts)


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: editors on Windows start files with a byte-order mark, which would become stray tokens
        return path.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionError(f"cannot read caption file {path} ({exc})") from exc


def _caption_text(path: Path) -> str:
    text = _read_text(path)
    if not text:
        raise CaptionError(
            f"caption file {path} is empty: write its caption, or delete the file to train the image with the "
            "instance prompt (--caption_dropout_rate trains on empty prompts on purpose)"
        )
    return text


def _metadata_captions(index: Path, images: list[Path]) -> dict[str, str]:
    by_name = {path.name: path for path in images}
    captions: dict[str, str] = {}
    seen_at: dict[str, str] = {}
    lines = json_lines(
        index, CaptionError, 'JSON; expected {"file_name": "...", "text": "..."} per line', text=_read_text(index)
    )
    for where, record in lines:
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("file_name"), str)
            or not isinstance(record.get("text"), str)
        ):
            raise CaptionError(f"{where}: expected string fields file_name and text, got {json.dumps(record)[:80]}")
        name = Path(record["file_name"]).name
        if name not in by_name:
            raise CaptionError(f"{where}: {record['file_name']} is not an image of {index.parent}")
        if name in seen_at:
            raise CaptionError(f"{where}: {name} already has a caption at {seen_at[name]}; keep one line per image")
        if not record["text"].strip():
            raise CaptionError(
                f"{where}: the caption of {name} is empty; write one, or drop the line to train the image with the "
                "instance prompt"
            )
        captions[name], seen_at[name] = record["text"].strip(), where
    return captions


def read_captions(folder: str | Path, images: list[Path], extension: str = ".txt") -> Captions:
    """The captions of ``images`` (files of ``folder``): ``metadata.jsonl`` when the folder has one, else
    ``<image stem><extension>`` beside each image."""
    folder = Path(folder)
    index = folder / METADATA_FILE
    if index.is_file():
        captions = _metadata_captions(index, images)
        return Captions([captions.get(path.name) for path in images], METADATA_FILE)
    texts = [
        _caption_text(path.with_suffix(extension)) if path.with_suffix(extension).is_file() else None for path in images
    ]
    return Captions(texts, f"*{extension} files" if any(t is not None for t in texts) else "none")


@dataclass(frozen=True)
class CaptionPolicy:
    """How a caption changes per step (``dropout_rate`` in [0, 1], ``keep_tokens`` ≥ 0 leading tags)."""

    dropout_rate: float = 0.0
    shuffle: bool = False
    keep_tokens: int = 0

    @property
    def varies(self) -> bool:
        """Whether a caption can differ between steps (so its text embedding cannot be encoded once)."""
        return self.dropout_rate > 0 or self.shuffle

    def apply(self, caption: str, seed: int, epoch: int, index: int) -> str:
        """The caption item ``index`` trains with in ``epoch``."""
        if not self.varies:
            return caption
        rng = random.Random(f"{seed}/{epoch}/caption/{index}")
        if self.dropout_rate > 0 and rng.random() < self.dropout_rate:
            return ""
        if not self.shuffle:
            return caption
        tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
        kept, rest = tags[: self.keep_tokens], tags[self.keep_tokens :]
        rng.shuffle(rest)
        return ", ".join(kept + rest)
