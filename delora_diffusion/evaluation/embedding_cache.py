"""On-disk cache of real-image embeddings, keyed by file content hash + backbone + protocol preprocessing.

The real photos of a subject are the same for every run that is compared, so their embeddings are computed
once. One folder per (backbone weights fingerprint, spec, protocol, preprocessing) holds one small
safetensors file per image content hash; ``key.json`` in the folder says what the key stands for.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..fileio import atomic_path, atomic_write_bytes

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "delora-diffusion" / "eval-embeddings"


class EmbeddingCache:
    """Embeddings of images under one key; ``root=None`` disables the cache (every lookup misses)."""

    def __init__(self, root: Path | None, key: dict):
        self.key = {"format": CACHE_FORMAT, **key}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:24]
        self.folder = None if root is None else Path(root) / digest
        self.hits = 0
        self.misses = 0

    def get(self, content_hash: str) -> torch.Tensor | None:
        """The cached (D,) embedding of the image with this sha256, or None."""
        if self.folder is not None:
            path = self.folder / f"{content_hash}.safetensors"
            if path.is_file():
                try:
                    embedding = load_file(str(path))["embedding"]
                    self.hits += 1
                    return embedding
                except (SafetensorError, KeyError, OSError):
                    pass  # a damaged entry is recomputed and overwritten
        self.misses += 1
        return None

    def put(self, content_hash: str, embedding: torch.Tensor) -> None:
        """Store a (D,) embedding; written to a temporary file and renamed, so readers never see half a file."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.is_file():
            atomic_write_bytes(key_file, json.dumps(self.key, indent=2, sort_keys=True).encode())
        with atomic_path(self.folder / f"{content_hash}.safetensors") as tmp:
            save_file({"embedding": embedding.detach().float().cpu().contiguous()}, str(tmp))
