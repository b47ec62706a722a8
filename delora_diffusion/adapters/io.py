"""The self-describing adapter file: one ``adapter.safetensors`` that needs no other flag to load.

Tensors are stored as ``<module name>.<tensor name>`` (fp32), the UNet's layers under their own names and
the text encoders' (``--train_text_encoder``) under ``text_encoder.<module name>`` (and SDXL's second under
``text_encoder_2.``). The header metadata holds
one JSON entry under the key ``delora_diffusion``: method, config, target list, per-layer shapes, base
model, package version, plus optional extra tensors (e.g. a hint encoder) under ``extra.<name>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .. import __version__
from ..errors import UserError
from ..fileio import atomic_path
from .base import AdapterLayer
from .config import AdapterConfig, AdapterConfigError
from .registry import adapter_config, adapter_layers, attach, detach

METADATA_KEY = "delora_diffusion"
FORMAT_VERSION = 1
EXTRA_PREFIX = "extra."
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")  # the pipelines' names; no UNet has top-level modules so named
# CLIP's layers are named "text_model.encoder.layers.N..." in checkpoints, diffusers, kohya and ComfyUI;
# transformers 5 dropped the "text_model." level in memory. Files use the checkpoint names.
CLIP_ROOT = "text_model."


def text_encoder_layer_name(module_name: str) -> str:
    """The name a text-encoder layer has in files (``text_model.encoder.layers.0.self_attn.q_proj``)."""
    return module_name if module_name.startswith(CLIP_ROOT) else CLIP_ROOT + module_name


def text_encoder_module_name(text_encoder: nn.Module, layer_name: str) -> str:
    """The module of ``text_encoder`` a file's layer name refers to, in this transformers version's naming."""
    if layer_name.startswith(CLIP_ROOT) and not hasattr(text_encoder, CLIP_ROOT[:-1]):
        return layer_name[len(CLIP_ROOT) :]
    return layer_name


def component_of(layer_name: str) -> str:
    """Which model a layer name of a file belongs to: "unet", "text_encoder" or "text_encoder_2"."""
    return next((name for name in TEXT_ENCODERS if layer_name.startswith(name + ".")), "unet")


def adapted_layers(model: nn.Module, text_encoders: dict[str, nn.Module] | None = None) -> dict[str, AdapterLayer]:
    """The adapted layers of a UNet and of the ``text_encoders`` (pipeline name -> model), by their names in files."""
    layers = dict(adapter_layers(model))
    for component, encoder in (text_encoders or {}).items():
        layers.update(
            {f"{component}.{text_encoder_layer_name(name)}": layer for name, layer in adapter_layers(encoder).items()}
        )
    return layers


class AdapterFileError(UserError):
    """An adapter file that cannot be read or does not fit the model."""


@dataclass
class AdapterFile:
    """A parsed adapter file. ``layers``: module name → {tensor name: tensor}."""

    path: Path
    config: AdapterConfig
    metadata: dict[str, Any]
    layers: dict[str, dict[str, torch.Tensor]]
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def shapes(self) -> dict[str, list[int]]:
        shapes: dict[str, list[int]] = self.metadata["shapes"]
        return shapes

    def targets_of(self, component: str) -> dict[str, str]:
        """The layers adapted in ``component`` ("unet", "text_encoder" or "text_encoder_2"): their name in that
        model (a text encoder's as in checkpoints, see ``text_encoder_module_name``) -> their name in the file."""
        skip = 0 if component == "unet" else len(component) + 1
        return {n[skip:]: n for n in self.metadata["targets"] if component_of(n) == component}


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str]
) -> None:
    """Write a safetensors file atomically (a crash never leaves half a file)."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def base_model_of(metadata: dict[str, Any]) -> str | None:
    """The base model an adapter file was trained on, usable from the current folder: as given when that
    still resolves here (a hub id, or a path relative to this folder), else the absolute path recorded."""
    given: str | None = metadata.get("base_model")
    resolved: str | None = metadata.get("base_model_resolved")
    if given and (Path(given).exists() or not resolved or not Path(resolved).exists()):
        return given
    return resolved


def save_adapter(
    model: nn.Module,
    path: str | os.PathLike[str],
    base_model: str | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_metadata: dict[str, Any] | None = None,
    text_encoders: dict[str, nn.Module] | None = None,
) -> Path:
    """Save the adapters of ``model`` (and of the ``text_encoders``, pipeline name -> model, and optional extra
    tensors) to one safetensors file.

    ``base_model`` is recorded as given and, when it names something on this disk, also as an absolute
    path, so the file still finds its base model from another folder (``base_model_of``).
    """
    if not adapter_layers(model):
        raise ValueError("model has no adapter layers to save")
    layers = adapted_layers(model, text_encoders)
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        for key, value in layer.adapter_state_dict().items():
            tensors[f"{name}.{key}"] = value.float()
    for key, value in (extra_tensors or {}).items():
        tensors[EXTRA_PREFIX + key] = value.float()
    meta = {
        "format_version": FORMAT_VERSION,
        "method": adapter_config(model).method,
        "config": adapter_config(model).to_dict(),
        "targets": list(layers),
        "shapes": {name: [layer.out_features, layer.in_features] for name, layer in layers.items()},
        "base_model": base_model,
        "base_model_resolved": str(Path(base_model).resolve())
        if base_model and Path(base_model).exists()
        else base_model,
        "version": __version__,
        "extra": extra_metadata or {},
    }
    atomic_save_safetensors(tensors, path, {METADATA_KEY: json.dumps(meta)})
    return Path(path)


def _parsed_metadata(path: Path, header: dict[str, str]) -> dict[str, Any]:
    if METADATA_KEY not in header:
        raise AdapterFileError(
            f"{path} has no '{METADATA_KEY}' metadata: it was not written by delora-diffusion "
            "(plain LoRA files load with diffusers' pipe.load_lora_weights)"
        )
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise AdapterFileError(f"{path}: malformed '{METADATA_KEY}' metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise AdapterFileError(f"{path}: malformed '{METADATA_KEY}' metadata (not a JSON object)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterFileError(
            f"{path} uses adapter format {meta['format_version']}; this delora-diffusion reads up to "
            f"{FORMAT_VERSION}, please upgrade"
        )
    return meta


def _open(path: Path, tensors: bool) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors if asked) of a safetensors file; ``AdapterFileError`` naming it otherwise."""
    if not path.is_file():
        raise AdapterFileError(f"adapter file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, ({k: f.get_tensor(k) for k in f.keys()} if tensors else {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterFileError(f"{path} is not a readable safetensors file ({exc})") from exc


def is_delora_adapter(path: str | os.PathLike[str]) -> bool:
    """Whether a safetensors file was written by delora-diffusion (else: a plain LoRA or something else),
    from its header alone; ``AdapterFileError`` when it is missing or not safetensors."""
    return METADATA_KEY in _open(Path(path), tensors=False)[0]


def read_adapter_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An adapter file's metadata (method, config, targets, extra), from its header alone: no tensor is read."""
    path = Path(path)
    return _parsed_metadata(path, _open(path, tensors=False)[0])


def read_adapter(path: str | os.PathLike[str]) -> AdapterFile:
    """Parse an adapter file; raise ``AdapterFileError`` naming the file for anything unexpected."""
    path = Path(path)
    header, tensors = _open(path, tensors=True)
    meta = _parsed_metadata(path, header)
    try:
        config = AdapterConfig.from_dict(meta["config"])
        targets, shapes = meta["targets"], meta["shapes"]
    except (KeyError, TypeError, AdapterConfigError) as exc:
        raise AdapterFileError(f"{path}: malformed '{METADATA_KEY}' metadata ({exc})") from exc
    layers: dict[str, dict[str, torch.Tensor]] = {name: {} for name in targets}
    extra: dict[str, torch.Tensor] = {}
    # Longest names first so "a.b.c" is never mistaken for layer "a.b"'s tensor "c".
    by_length = sorted(targets, key=len, reverse=True)
    for key, value in tensors.items():
        if key.startswith(EXTRA_PREFIX):
            extra[key[len(EXTRA_PREFIX) :]] = value
            continue
        owner = next((n for n in by_length if key.startswith(n + ".")), None)
        if owner is None:
            raise AdapterFileError(f"{path}: tensor {key} belongs to no listed target layer")
        layers[owner][key[len(owner) + 1 :]] = value
    if set(shapes) != set(targets):
        raise AdapterFileError(f"{path}: metadata lists shapes for other layers than its targets")
    # A diverged run's NaN/inf would otherwise render black images and exit 0.
    bad = [key for key, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise AdapterFileError(
            f"{path}: {len(bad)} tensor(s) hold NaN or inf values, first {bad[0]} "
            f"(the run that wrote it diverged; use an earlier checkpoint)"
        )
    return AdapterFile(path=path, config=config, metadata=meta, layers=layers, extra_tensors=extra)


def check_fits(model: nn.Module, adapter: AdapterFile, model_name: str | None = None, component: str = "unet") -> None:
    """Raise ``AdapterFileError`` naming the first target layer of ``component`` missing from ``model`` or of
    another shape, the base model the adapter was trained on and ``model_name`` (what ``model`` was loaded
    from), when known."""
    here = f"this {type(model).__name__}" + (f" (of {model_name!r})" if model_name else "")
    for name, stored in adapter.targets_of(component).items():
        name = name if component == "unet" else text_encoder_module_name(model, name)
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise AdapterFileError(
                f"{adapter.path}: layer {name} does not exist in {here}; the adapter was trained on "
                f"{adapter.metadata.get('base_model')!r}: wrong base model?"
            ) from None
        if isinstance(module, AdapterLayer):
            module = module.base_layer
        if not isinstance(module, nn.Linear):
            raise AdapterFileError(
                f"{adapter.path}: layer {name} is a {type(module).__name__} in {here}, not the "
                f"nn.Linear the adapter was trained on ({adapter.metadata.get('base_model')!r}): "
                "wrong base model?"
            )
        expected = list(adapter.shapes[stored])
        actual = [module.out_features, module.in_features]
        if actual != expected:
            raise AdapterFileError(
                f"{adapter.path}: layer {name} has shape {actual} (out, in) in {here} but {expected} in the "
                f"adapter, trained on {adapter.metadata.get('base_model')!r}: wrong base model?"
            )


def load_adapter(
    model: nn.Module,
    path: str | os.PathLike[str],
    model_name: str | None = None,
    text_encoder: nn.Module | None = None,
    text_encoder_2: nn.Module | None = None,
) -> AdapterFile:
    """Attach the adapter stored in ``path`` to ``model`` (a UNet) and, when the file holds text-encoder layers,
    to ``text_encoder`` (and SDXL's ``text_encoder_2``); load its tensors; returns the parsed file.
    ``model_name`` (what ``model`` was loaded from) is named in a mismatch error."""
    adapter = read_adapter(path)
    models = {"unet": model}
    for component, encoder in zip(TEXT_ENCODERS, (text_encoder, text_encoder_2)):
        if adapter.targets_of(component):
            if encoder is None:
                raise AdapterFileError(
                    f"{path} also adapts the pipeline's {component} (trained with "
                    f"--train_text_encoder): pass {component}=pipe.{component} too"
                )
            models[component] = encoder
    for component, module in models.items():
        check_fits(module, adapter, model_name, component)
    try:
        for component, module in models.items():
            targets = {
                name if component == "unet" else text_encoder_module_name(module, name): stored
                for name, stored in adapter.targets_of(component).items()
            }
            layers = attach(module, adapter.config, layer_names=list(targets))
            for name, layer in layers.items():
                layer.load_adapter_state_dict(adapter.layers[targets[name]], targets[name])
    except ValueError as exc:
        for module in models.values():  # leave the models as they were
            if adapter_layers(module):
                detach(module)
        raise AdapterFileError(f"{path}: {exc}") from exc
    return adapter
