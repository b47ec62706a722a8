"""The character-level CLIP tokenizer files of the tiny random models (text encoder and CLIP judge)."""

from __future__ import annotations

import json
import string
from pathlib import Path


def write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """A character-level CLIP BPE vocabulary: every printable ASCII character, word-final or not."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    symbols = string.ascii_lowercase + string.digits + string.punctuation
    for ch in symbols:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n")
    return vocab_file, merges_file
