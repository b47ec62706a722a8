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

from ..errors import UserError

SD, SDXL = "StableDiffusionPipeline", "StableDiffusionXLPipeline"
SUPPORTED = {SD: "Stable Diffusion 1.x / 2.x (epsilon or v-prediction)", SDXL: "SDXL"}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
SINGLE_FILE_SUFFIX = ".safetensors"
# A tensor-name prefix each family's original single-file checkpoints have and the others lack.
FAMILY_PREFIXES = [
    ("conditioner.embedders.1.model.", SDXL, "sdxl"),
    ("cond_stage_model.model.", SD, "sd2"),  # SD 2.x: the OpenCLIP text encoder
    ("cond_stage_model.transformer.", SD, "sd1"),
]


class ModelFamilyError(UserError):
    """The base model is of a kind delora-diffusion does not run; the message names what was found."""


class ModelUnavailableError(ModelFamilyError):
    """A model named by a flag is neither on this disk nor to be had from the hub; the message says why."""


def _supported(families: tuple[str, ...]) -> str:
    return ", ".join(f"{name} ({SUPPORTED[name]})" for name in families)


def looks_local(name_or_path: str) -> bool:
    """Whether a name can only be a local path: a hub id is "name" or "owner/name"."""
    name = str(name_or_path)
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def is_single_file(name_or_path: str) -> bool:
    path = Path(str(name_or_path)).expanduser()
    return path.suffix.lower() == SINGLE_FILE_SUFFIX and path.is_file()


MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on a header


def single_file_kind(path: str | Path) -> tuple[str, str]:
    """(pipeline class, version: sd1, sd2 or sdxl) of an original-format single-file checkpoint, from the tensor
    names in its header (nothing loaded); ``ModelFamilyError`` naming the file when they fit no family here."""
    try:
        with open(path, "rb") as f:  # safetensors: an 8-byte length, then a JSON header naming every tensor
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= min(MAX_HEADER_BYTES, Path(path).stat().st_size - 8):  # garbage: a huge "length"
                raise ValueError(f"its first 8 bytes give a header of {size} bytes, which cannot be")
            names = list(json.loads(f.read(size)))
    except (OSError, ValueError, OverflowError) as exc:
        raise ModelFamilyError(f"{path} is not a readable safetensors file ({exc})") from exc
    if not any(n.startswith("model.diffusion_model.") for n in names):
        raise ModelFamilyError(
            f"{path} holds no Stable Diffusion UNet (no model.diffusion_model.* tensors): give a "
            "whole-pipeline checkpoint (UNet, VAE and text encoders in one file)"
        )
    for prefix, family, version in FAMILY_PREFIXES:
        if any(n.startswith(prefix) for n in names):
            return family, version
    raise ModelFamilyError(
        f"{path}: no SD 1.x, SD 2.x or SDXL text encoder in it; delora-diffusion runs {_supported(tuple(SUPPORTED))}"
    )


def _hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """A hub model's ``filename`` (from the cache when offline), None when the repository has no such file
    (a bare UNet has no ``model_index.json``) or the hub answers with another error (the loader reports it);
    ``ModelUnavailableError`` when the model cannot be had at all: a name that is neither a local path nor a
    hub id, no such repository, no such revision, or offline (or no network) with nothing of it cached."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except HFValidationError as exc:
        raise ModelUnavailableError(f"{repo_id}: no such file or folder here, and not a hub id (owner/name)") from exc
    except RevisionNotFoundError as exc:
        raise ModelUnavailableError(f"{repo_id}: the hub repository has no revision {revision!r}") from exc
    except RepositoryNotFoundError as exc:  # gated and private repositories answer so without a token
        raise ModelUnavailableError(
            f"{repo_id}: no such file or folder here, and no hub repository of that name (if it is private or gated, "
            "accept its terms on the hub and log in with `hf auth login`)"
        ) from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        cached = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
        if cached.is_dir():  # something of it is cached (a bare UNet repository has no model_index.json)
            return None
        why = "the hub is off (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise ModelUnavailableError(
            f"{repo_id}: no such folder here, and not in the Hugging Face cache ({constants.HF_HUB_CACHE}) while "
            f"{why}: download it once with `hf download {repo_id}`, or give a local folder"
        ) from exc
    except EntryNotFoundError:
        return None
    except Exception:  # the hub's other answers (a server error, a timeout): the loader says what is missing
        return None


def pipeline_class(name_or_path: str, revision: str | None = None) -> str | None:
    """The ``_class_name`` of the base model's ``model_index.json`` (of a single file: the class it converts to);
    None when there is none to read (a bare UNet folder or repository: the loader then says what is missing);
    ``ModelUnavailableError`` for a hub id that cannot be had (``_hub_file``)."""
    path = Path(name_or_path).expanduser()
    if is_single_file(name_or_path):
        return single_file_kind(path)[0]
    if path.is_dir():
        index = path / "model_index.json"
    elif path.exists() or looks_local(name_or_path):  # a missing local folder: the loader names it
        return None
    else:
        index = _hub_file(str(name_or_path), "model_index.json", revision)
        if index is None:
            return None
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def check_base_model(
    name_or_path: str,
    flag: str = "--pretrained_model_name_or_path",
    revision: str | None = None,
    families: tuple[str, ...] = tuple(SUPPORTED),
) -> str | None:
    """Stop early (``ModelFamilyError``) for a base model delora-diffusion cannot run: a pickle, or a pipeline
    class (of a folder, hub id or single file) other than ``families``. Returns the class found (or None)."""
    path = Path(str(name_or_path)).expanduser()
    if looks_local(name_or_path) and not path.exists():
        raise ModelUnavailableError(f"{flag}: base model folder {name_or_path} does not exist")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelFamilyError(
            f"{flag} {name_or_path}: a pickled checkpoint can run arbitrary code when it is "
            "loaded; delora-diffusion reads safetensors only (convert it to a diffusers folder "
            "with diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py)"
        )
    try:
        found = pipeline_class(str(name_or_path), revision)
    except ModelUnavailableError as exc:
        raise ModelUnavailableError(f"{flag} {exc}") from exc
    if found is not None and found not in families:
        what = "this command" if found in SUPPORTED else "delora-diffusion"
        raise ModelFamilyError(f"{flag} {name_or_path} is a {found}; {what} runs {_supported(families)}")
    return found


SINGLE_FILE_CONFIG_HELP = (
    "with a single-file .safetensors base model: a diffusers folder or hub id whose configs "
    "describe it (default: the built-in SD 1.x, 2.x (768 px, v-prediction) and SDXL configs)"
)
# The flags besides the base model that name a folder or hub id, and the file each must hold.
OTHER_MODEL_FLAGS = (("single_file_config", "model_index.json"), ("pretrained_vae_model_name_or_path", "config.json"))


def check_other_models(args) -> None:
    """Stop early (``ModelUnavailableError`` naming the flag) when a model other than the base (a VAE, a config
    folder) is neither on this disk nor to be had from the hub: offline, it would fail only once loaded."""
    for name, filename in OTHER_MODEL_FLAGS:
        value = getattr(args, name, None)
        if not value or Path(str(value)).expanduser().exists():
            continue
        if looks_local(value):
            raise ModelUnavailableError(f"--{name}: folder {value} does not exist")
        try:
            _hub_file(str(value), filename)
        except ModelUnavailableError as exc:
            raise ModelUnavailableError(f"--{name} {exc}") from exc
