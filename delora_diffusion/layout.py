"""The generated-images contract that inference writes and evaluation reads: where images go and what
``metadata.jsonl`` says about each.

``OUT/<subject>/<prompt_index:02d>/<seed>.png`` plus ``OUT/<subject>/metadata.jsonl``, one JSON object
per image (``file`` relative to ``OUT/<subject>/``). The evaluator reads exactly this. Both files are
written through a temporary file and a rename, so an interrupted run never leaves half an image or
half a metadata file behind, and resuming can trust what it finds.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import UserError
from .fileio import atomic_write_bytes, json_lines

METADATA_FILE = "metadata.jsonl"

# Fields that decide the pixels of an image: a record on disk that differs from the planned one in any
# of these was made with other settings and must not be mixed silently into the same folder.
SETTINGS_FIELDS = (
    "prompt",
    "negative_prompt",
    "seed",
    "base_model",
    "revision",
    "variant",
    "adapter_sha256",
    "scale",
    "loras",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "zero_terminal_snr",
    "height",
    "width",
    "dtype",
)

_SUBJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class LayoutError(UserError):
    """An output folder or metadata file that does not follow the contract."""


def check_subject_name(subject: str) -> str:
    """The subject becomes a folder name: letters, digits, ``_ . -`` only, so it cannot escape ``OUT``."""
    if not _SUBJECT_NAME.match(subject or ""):
        raise LayoutError(f"subject name {subject!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    return subject


def image_file(prompt_index: int, seed: int) -> str:
    """Path of one image relative to ``OUT/<subject>/`` (the ``file`` field of its record)."""
    return f"{prompt_index:02d}/{seed}.png"


def record_key(record: dict[str, Any]) -> tuple[int, int]:
    return int(record["prompt_index"]), int(record["seed"])


def read_metadata(subject_dir: str | os.PathLike[str]) -> dict[tuple[int, int], dict[str, Any]]:
    """Records of ``subject_dir/metadata.jsonl`` by (prompt_index, seed); empty when the file is absent."""
    path = Path(subject_dir) / METADATA_FILE
    if not path.is_file():
        return {}
    records: dict[tuple[int, int], dict[str, Any]] = {}
    advice = "; move the file away or pick another --output_dir"
    for where, record in json_lines(path, LayoutError, "a metadata record", advice):
        try:
            records[record_key(record)] = record
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutError(f"{where}: not a metadata record with prompt_index and seed ({exc}){advice}") from exc
    return records


def write_metadata(subject_dir: str | os.PathLike[str], records: dict[tuple[int, int], dict[str, Any]]) -> Path:
    """Rewrite ``metadata.jsonl`` whole (sorted by prompt index, then seed): small, and never half-written."""
    path = Path(subject_dir) / METADATA_FILE
    lines = [json.dumps(records[key], ensure_ascii=False) + "\n" for key in sorted(records)]
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
    return path


def is_intact_image(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a complete image file (a kept image on rerun): its chunks and checksums are
    read, the pixels are not decoded (about a millisecond). A 0-byte or truncated file is not intact."""
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # noqa: BLE001  (PIL raises many types for broken files; any of them means "redo it")
        return False


# diffusers scheduler names as AUTOMATIC1111 prints its samplers
_A1111_SAMPLERS = {"dpmsolver++": "DPM++ 2M", "ddim": "DDIM", "euler": "Euler", "euler_a": "Euler a", "pndm": "PLMS"}


def a1111_parameters(record: dict[str, Any]) -> str:
    """The ``parameters`` text AUTOMATIC1111 writes and shows (ComfyUI and image viewers read it too):
    the prompt, ``Negative prompt: ...``, then ``Steps: N, Sampler: ..., CFG scale: ..., Seed: ...`` etc."""
    lines = [record.get("prompt") or ""]
    if record.get("negative_prompt"):
        lines.append(f"Negative prompt: {record['negative_prompt']}")
    fields = [
        ("Steps", record.get("num_inference_steps")),
        ("Sampler", _A1111_SAMPLERS.get(str(record.get("scheduler")), record.get("scheduler"))),
        ("CFG scale", record.get("guidance_scale")),
        ("Seed", record.get("seed")),
        ("Size", f"{record['width']}x{record['height']}" if record.get("width") and record.get("height") else None),
        ("Model", Path(str(record["base_model"])).name if record.get("base_model") else None),
        (
            "Adapter",
            f"{Path(str(record['adapter'])).name}:{record.get('scale', 1.0):g}" if record.get("adapter") else None,
        ),
        (
            "Loras",
            ", ".join(f"{Path(str(lora['file'])).stem}:{lora['scale']:g}" for lora in record["loras"])
            if record.get("loras")
            else None,
        ),
    ]
    lines.append(", ".join(f"{key}: {value}" for key, value in fields if value is not None))
    return "\n".join(lines)


def write_image(path: str | os.PathLike[str], image: Image.Image, record: dict[str, Any] | None = None) -> Path:
    """Save a PNG atomically; ``record`` is embedded as PNG text chunks so a lone file stays traceable: all of
    it as JSON (``delora_diffusion``), and the A1111-style ``parameters`` when it records a prompt."""
    info = PngInfo()
    if record is not None:
        info.add_text("delora_diffusion", json.dumps(record, ensure_ascii=False))
        if "prompt" in record:
            info.add_text("parameters", a1111_parameters(record))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def settings_mismatch(existing: dict[str, Any], planned: dict[str, Any]) -> str | None:
    """The first settings field on which two records of the same image differ, as ``field: old -> new``."""
    for name in SETTINGS_FIELDS:
        if existing.get(name) != planned.get(name):
            return f"{name}: {existing.get(name)!r} -> {planned.get(name)!r}"
    return None
