"""A ready-to-sample Stable Diffusion pipeline: base checkpoint + optional delora-diffusion adapter.

The adapter goes on ``pipe.unet`` with its configuration read from the file, so no method flag is
needed. The base weights run in the requested dtype while adapter tensors stay fp32 (the adapter
layers cast at their boundary), so fp16 generation does not round the learned update away.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..adapters import AdapterFile, detach, load_adapter, set_scale
from ..adapters import merge as merge_adapter
from ..fileio import file_sha256
from .schedulers import DEFAULT_SCHEDULER, set_scheduler

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class PipelineLoadError(OSError):
    """The base pipeline could not be loaded from the given path or hub id."""


@dataclass(frozen=True)
class LoadedAdapter:
    """What was put on the UNet: the file, its content hash (identifies it when the file moves), and settings."""

    path: str
    sha256: str
    method: str
    base_model: str | None  # as recorded in the file at training time
    scale: float
    merged: bool
    file: AdapterFile


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) is CUDA when available, else CPU; anything else must be a usable torch device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto`` (or None) is float16 on CUDA and float32 elsewhere (half precision is slow or absent on CPU)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _dtype_keyword() -> str:
    """Recent diffusers renamed ``torch_dtype`` to ``dtype`` (warning on the old name); older ones know only ``torch_dtype``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  present since the rename
    except ImportError:
        return "torch_dtype"
    return "dtype"


def apply_adapter(
    pipe, path: str | os.PathLike[str], scale: float = 1.0, merge: bool = False, base_model: str | None = None
) -> LoadedAdapter:
    """Load the adapter file onto ``pipe.unet`` and, when it holds text-encoder layers, ``pipe.text_encoder``
    (and SDXL's ``pipe.text_encoder_2``), replacing any adapter already there.

    ``scale`` s ≥ 0 makes every adapted layer act as W + s·(W' − W); ``merge`` folds the update into the
    weights (faster sampling, same images up to rounding). ``base_model`` is only compared with the one
    recorded in the file to warn about a likely mix-up; layer shapes are what is actually checked.
    Raises ``AdapterFileError`` naming the file when it is missing, not ours, or does not fit the UNet.
    """
    remove_adapter(pipe)
    loaded = load_adapter(
        pipe.unet,
        path,
        model_name=base_model,
        text_encoder=pipe.text_encoder,
        text_encoder_2=getattr(pipe, "text_encoder_2", None),
    )
    recorded = loaded.metadata.get("base_model")
    known = {str(recorded), str(loaded.metadata.get("base_model_resolved"))}
    given = {str(base_model), str(Path(base_model).resolve()) if base_model and Path(base_model).exists() else None}
    if base_model and recorded and not known & given:
        logger.warning("note: adapter %s was trained on %r, generating with %r", path, recorded, base_model)
    for model in _adaptable(pipe):  # a model without adapter layers is left as it is
        if scale != 1.0:
            set_scale(model, scale)
        if merge:
            merge_adapter(model)
    return LoadedAdapter(
        path=str(path),
        sha256=file_sha256(path),
        method=loaded.config.method,
        base_model=recorded,
        scale=float(scale),
        merged=merge,
        file=loaded,
    )


def remove_adapter(pipe) -> None:
    """Give ``pipe.unet`` and the text encoders their base weights back (unmerging first when merged)."""
    for model in _adaptable(pipe):
        detach(model)


def _adaptable(pipe) -> list:
    return [m for m in (pipe.unet, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m is not None]


def load_pipeline(
    pretrained_model_name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    variant: str | None = None,
    single_file_config: str | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = "auto",
    adapter: str | os.PathLike[str] | None = None,
    scale: float = 1.0,
    merge: bool = False,
    scheduler: str = DEFAULT_SCHEDULER,
    safety_checker: bool = True,
    unet=None,
    zero_terminal_snr: bool = False,
):
    """A ``StableDiffusionPipeline`` (``StableDiffusionXLPipeline`` for an SDXL base model) on ``device`` in
    ``dtype``, with ``scheduler`` and an optional adapter.

    ``zero_terminal_snr``: see ``schedulers.set_scheduler``.
    ``pretrained_model_name_or_path`` is a diffusers pipeline folder or hub id (``revision``/``variant``
    as in ``from_pretrained``) or a single-file checkpoint (converted once: ``models.single_file``, with
    ``single_file_config``). ``unet`` replaces the checkpoint's UNet (e.g. the one being trained; it is
    used as given, not cast). ``safety_checker=False`` drops the checker (it blacks out flagged images,
    which biases image metrics). The pipeline's own per-step progress bar is turned off.
    Raises ``PipelineLoadError`` when the checkpoint cannot be loaded.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from ..models.families import SDXL, looks_local, pipeline_class
    from ..models.single_file import resolve_base_model

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    name = str(pretrained_model_name_or_path)
    sdxl = pipeline_class(name, revision) == SDXL
    kwargs = {}
    if unet is not None:
        kwargs["unet"] = unet
    if not safety_checker and not sdxl:  # SDXL pipelines have no safety checker
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if looks_local(name) and not Path(name).expanduser().exists():
        raise PipelineLoadError(f"base model folder {name} does not exist")
    source = resolve_base_model(name, single_file_config)
    kwargs[_dtype_keyword()] = torch_dtype
    try:
        pipe = (StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline).from_pretrained(
            source, revision=revision, variant=variant, **kwargs
        )
    except (OSError, ValueError, TypeError) as exc:
        raise PipelineLoadError(
            f"could not load a Stable Diffusion pipeline from {name!r} (a diffusers pipeline folder with "
            f"model_index.json, or a hub id reachable from here): {exc}"
        ) from exc
    set_scheduler(pipe, scheduler, zero_terminal_snr)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch_device)
    if adapter is not None:
        apply_adapter(pipe, adapter, scale=scale, merge=merge, base_model=name)
    elif scale != 1.0 or merge:
        raise ValueError("scale and merge act on an adapter; pass adapter=... as well")
    return pipe
