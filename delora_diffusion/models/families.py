"""Which kind of pipeline a base model is, found before anything loads, and the kinds the toolkit runs.

Read from ``model_index.json`` (a diffusers folder, or a hub id's file: from the cache when offline) or from
the tensor names of a single-file checkpoint (``single_file.py`` converts it), so an
unsupported family stops with one line naming the class found instead of a traceback from deep inside
diffusers after minutes of loading. SD 1.x and 2.x (epsilon or v-prediction) are ``StableDiffusionPipeline``,
SDXL ``StableDiffusionXLPipeline`` (DreamBooth only: the semantic-map ControlNet is built for SD's UNet).
No torch here: the commands call it before their heavy imports.
"""

from __future__ import annotations

import json
from pathlib import Path

SD, SDXL = "StableDiffusionPipeline", "StableDiffusionXLPipeline"
SUPPORTED = {SD: "Stable Diffusion 1.x / 2.x (epsilon or v-prediction)", SDXL: "SDXL"}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
SINGLE_FILE_SUFFIX = ".safetensors"
# A tensor-name prefix each family's original single-file checkpoints have and the others lack.
FAMILY_PREFIXES = [("conditioner.embedders.1.model.", SDXL, "sdxl"),
                   ("cond_stage_model.model.", SD, "sd2"),  # SD 2.x: the OpenCLIP text encoder
                   ("cond_stage_model.transformer.", SD, "sd1")]


class ModelFamilyError(ValueError):
    """The base model is of a kind delora-diffusion does not run; the message names what was found."""


def _supported(families: tuple[str, ...]) -> str:
    return ", ".join(f"{name} ({SUPPORTED[name]})" for name in families)


def is_single_file(name_or_path: str) -> bool:
    path = Path(str(name_or_path)).expanduser()
    return path.suffix.lower() == SINGLE_FILE_SUFFIX and path.is_file()


def single_file_kind(path: str | Path) -> tuple[str, str]:
    """(pipeline class, version: sd1, sd2 or sdxl) of an original-format single-file checkpoint, from the tensor
    names in its header (nothing loaded); ``ModelFamilyError`` naming the file when they fit no family here."""
    try:
        with open(path, "rb") as f:  # safetensors: an 8-byte length, then a JSON header naming every tensor
            size = int.from_bytes(f.read(8), "little")
            names = list(json.loads(f.read(size)))
    except (OSError, ValueError, OverflowError) as exc:
        raise ModelFamilyError(f"{path} is not a readable safetensors file ({exc})") from exc
    if not any(n.startswith("model.diffusion_model.") for n in names):
        raise ModelFamilyError(f"{path} holds no Stable Diffusion UNet (no model.diffusion_model.* tensors): give a "
                               "whole-pipeline checkpoint (UNet, VAE and text encoders in one file)")
    for prefix, family, version in FAMILY_PREFIXES:
        if any(n.startswith(prefix) for n in names):
            return family, version
    raise ModelFamilyError(f"{path}: no SD 1.x, SD 2.x or SDXL text encoder in it; delora-diffusion runs "
                           f"{_supported(tuple(SUPPORTED))}")


def pipeline_class(name_or_path: str, revision: str | None = None) -> str | None:
    """The ``_class_name`` of the base model's ``model_index.json`` (of a single file: the class it converts to);
    None when it cannot be read (a bare UNet folder, a hub id not cached offline: the loader then says what
    is missing)."""
    path = Path(name_or_path).expanduser()
    if is_single_file(name_or_path):
        return single_file_kind(path)[0]
    if path.is_dir():
        index = path / "model_index.json"
    elif path.exists():
        return None
    else:
        try:
            from huggingface_hub import hf_hub_download

            index = Path(hf_hub_download(str(name_or_path), "model_index.json", revision=revision))
        except Exception:  # offline and not cached, no such repository, no network: the loader reports it
            return None
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def check_base_model(name_or_path: str, flag: str = "--pretrained_model_name_or_path",
                     revision: str | None = None, families: tuple[str, ...] = tuple(SUPPORTED)) -> str | None:
    """Stop early (``ModelFamilyError``) for a base model delora-diffusion cannot run: a pickle, or a pipeline
    class (of a folder, hub id or single file) other than ``families``. Returns the class found (or None)."""
    path = Path(str(name_or_path)).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelFamilyError(f"{flag} {name_or_path}: a pickled checkpoint can run arbitrary code when it is "
                               "loaded; delora-diffusion reads safetensors only (convert it to a diffusers folder "
                               "with diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py)")
    found = pipeline_class(str(name_or_path), revision)
    if found is not None and found not in families:
        what = "this command" if found in SUPPORTED else "delora-diffusion"
        raise ModelFamilyError(f"{flag} {name_or_path} is a {found}; {what} runs {_supported(families)}")
    return found
