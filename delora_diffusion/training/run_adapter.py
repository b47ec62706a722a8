"""A run's adapter file: written with its plain-LoRA exports at every checkpoint and at the end of training,
read back into the model on resume. Models here are unwrapped (no DDP/accelerate wrappers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from ..adapters import export_lora, read_adapter, save_adapter
from ..adapters.formats import FORMAT_FILES
from ..adapters.io import adapted_layers
from .checkpoint import CheckpointError
from .task import TrainingTask


def write_run_adapter(
    path: Path,
    unet: nn.Module,
    extras: dict[str, nn.Module],
    text_encoders: dict[str, nn.Module],
    args: argparse.Namespace,
    task: TrainingTask,
    global_step: int,
    exports: bool = True,
) -> dict[str, Path]:
    """The adapter file at ``path`` (the UNet's layers, the adapted ``text_encoders``', the task's own modules as
    extra tensors ``<name>.<key>``) and, with ``exports``, the plain-LoRA files beside it (label -> path)."""
    extra = {f"{name}.{key}": value for name, module in extras.items() for key, value in module.state_dict().items()}
    recorded = {"base_model_revision": args.revision} if getattr(args, "revision", None) else {}
    if getattr(args, "zero_terminal_snr", False):  # generate.py warns when sampling without it
        recorded["zero_terminal_snr"] = True
    save_adapter(
        unet,
        path,
        base_model=args.pretrained_model_name_or_path,
        extra_tensors=extra or None,
        extra_metadata={"trainer": task.name, "global_step": global_step, **recorded, **task.adapter_metadata()},
        text_encoders=text_encoders,
    )
    if not exports:
        return {}
    return write_exports(path.parent, unet, extras, getattr(args, "export_kohya", False), text_encoders)


def write_exports(
    folder: Path,
    unet: nn.Module,
    extras: dict[str, nn.Module],
    kohya: bool,
    text_encoders: dict[str, nn.Module] | None = None,
) -> dict[str, Path]:
    """The exact plain-LoRA files other tools load, beside an adapter file (final or checkpoint).

    ``pytorch_lora_weights.safetensors`` is what stock ``pipe.load_lora_weights(folder)`` reads; with
    ``kohya`` also ``lora_kohya.safetensors``. None for tasks with modules of their own (``extras``: a plain
    LoRA of the UNet would drop them).
    """
    if extras:
        return {}
    files = {"diffusers LoRA": export_lora(unet, folder / FORMAT_FILES["diffusers"], "diffusers", text_encoders)}
    if kohya:
        files["kohya LoRA"] = export_lora(unet, folder / FORMAT_FILES["kohya"], "kohya", text_encoders)
    else:  # one from an earlier run would no longer match this adapter
        (folder / FORMAT_FILES["kohya"]).unlink(missing_ok=True)
    return files


def read_run_adapter(
    path: Path, unet: nn.Module, extras: dict[str, nn.Module], text_encoders: dict[str, nn.Module], method: str
) -> None:
    """Load the adapter (and extra modules) saved at ``path`` into the run's models; an adapter of another
    method or on other layers is a ``CheckpointError``."""
    stored = read_adapter(path)
    own = adapted_layers(unet, text_encoders)
    if stored.config.method != method or set(stored.layers) != set(own):
        raise CheckpointError(
            f"{path} holds a {stored.config.method} adapter on {len(stored.layers)} layers; "
            f"this run trains {method} on {len(own)} layers: resume with the same adapter flags "
            "(--train_text_encoder included)"
        )
    for name, layer in own.items():
        layer.load_adapter_state_dict(stored.layers[name], name)
    for name, module in extras.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in stored.extra_tensors.items() if k.startswith(prefix)})
