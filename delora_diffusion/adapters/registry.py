"""Attach adapters to a model, find them again, and act on all of them at once.

The model is the state: adapted layers are ``AdapterLayer`` modules in its tree, so every function
here takes the model (e.g. a diffusers ``UNet2DConditionModel``) and needs no handle object.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .base import AdapterLayer
from .config import AdapterConfig, default_weight_decay
from .delora import DeLoRALinear
from .ether import ETHERLinear, ETHERPlusLinear
from .peft_methods import PeftLoRALinear

# each method's layer class, built as cls(base_linear, config)
LAYER_CLASSES: dict[str, Callable[[nn.Linear, AdapterConfig], AdapterLayer]] = {
    "delora": DeLoRALinear,
    "lora": PeftLoRALinear,
    "dora": PeftLoRALinear,
    "ether": ETHERLinear,
    "etherplus": ETHERPlusLinear,
}


def _matches(name: str, targets: list[str] | str) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_target_modules(model: nn.Module, targets: list[str] | str) -> list[str]:
    """Names of the ``nn.Linear`` modules selected by ``targets`` (suffix list or full-name regex)."""
    names = []
    for name, module in model.named_modules():
        if not name or not _matches(name, targets):
            continue
        if isinstance(module, AdapterLayer):
            raise ValueError(f"module {name} already carries a {module.method} adapter; detach it first")
        if isinstance(module, nn.Linear):
            names.append(name)
    return names


def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """The adapted layers of ``model`` by module name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLayer)}


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def attach(
    model: nn.Module, config: AdapterConfig, layer_names: Iterable[str] | None = None
) -> dict[str, AdapterLayer]:
    """Freeze ``model`` and wrap its target Linear layers with ``config.method``'s adapter.

    ``layer_names`` (exact module names) overrides ``config.target_modules``; loading uses it.
    Returns the adapted layers by name. Raises ``ValueError`` naming the problem when nothing matches.
    """
    if adapter_layers(model):
        raise ValueError("model already has adapter layers; call detach(model) before attaching another adapter")
    if layer_names is None:
        names = find_target_modules(model, config.target_modules)
        if not names:
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:5]
            raise ValueError(
                f"target_modules={config.target_modules!r} matches no nn.Linear in {type(model).__name__}; "
                f"Linear layers look like: {linears}"
            )
    else:
        names = list(layer_names)
    model.requires_grad_(False)
    cls = LAYER_CLASSES[config.method]
    for name in names:
        base = model.get_submodule(name)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"module {name} is a {type(base).__name__}, adapters wrap nn.Linear only")
        layer = cls(base, config)
        for group in layer.trainable_parameters().values():
            for p in group:
                p.requires_grad_(True)
        _replace(model, name, layer)
    return adapter_layers(model)


def detach(model: nn.Module, merge: bool = False) -> None:
    """Put the plain Linear layers back; with ``merge=True`` their weights keep the update."""
    for name, layer in adapter_layers(model).items():
        if merge:
            layer.merge()
            layer._premerge_weight = None  # the merged weight becomes the new base weight
        else:
            layer.unmerge()
        _replace(model, name, layer.base_layer)


def adapter_config(model: nn.Module) -> AdapterConfig:
    layers = adapter_layers(model)
    if not layers:
        raise ValueError("model has no adapter layers")
    return next(iter(layers.values())).config


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float | None = None,
    lambda_lr: float | None = None,
    lambda_weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: adapter directions and (DeLoRA) the strengths λ.

    ``weight_decay=None`` uses the method default (0 for ETHER/ETHER+, 1e-2 otherwise);
    ``lambda_lr=None`` uses ``lr``. Each group has a ``"name"`` key for logging.
    """
    config = adapter_config(model)
    params: dict[str, list[nn.Parameter]] = {"adapter": [], "lambda": []}
    for layer in adapter_layers(model).values():
        for role, group in layer.trainable_parameters().items():
            params[role].extend(group)
    wd = default_weight_decay(config.method) if weight_decay is None else weight_decay
    groups = [{"name": "adapter", "params": params["adapter"], "lr": lr, "weight_decay": wd}]
    if params["lambda"]:
        groups.append(
            {
                "name": "lambda",
                "params": params["lambda"],
                "lr": lr if lambda_lr is None else lambda_lr,
                "weight_decay": lambda_weight_decay,
            }
        )
    return groups


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for g in param_groups(model, lr=0.0) for p in g["params"])


def merge(model: nn.Module) -> None:
    for layer in adapter_layers(model).values():
        layer.merge()


def unmerge(model: nn.Module) -> None:
    for layer in adapter_layers(model).values():
        layer.unmerge()


def set_scale(model: nn.Module, scale: float) -> None:
    """Strength s ≥ 0 of every update (W + s·(W' − W)); unmerges first, since the merge used the old s."""
    if scale < 0:
        raise ValueError(f"adapter scale must be >= 0, got {scale}")
    for layer in adapter_layers(model).values():
        layer.unmerge()
        layer.scale = float(scale)


def set_enabled(model: nn.Module, enabled: bool) -> None:
    for layer in adapter_layers(model).values():
        if not enabled:
            layer.unmerge()
        layer.enabled = enabled


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[None]:
    """Run the base model inside the block (e.g. prior-preservation targets), then re-enable."""
    set_enabled(model, False)
    try:
        yield
    finally:
        set_enabled(model, True)


@torch.no_grad()
def delta_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """s·(W' − W) per adapted layer, fp32, out×in."""
    return {name: layer.delta_weight() for name, layer in adapter_layers(model).items()}


@torch.no_grad()
def weight_distances(model: nn.Module) -> dict[str, float]:
    """‖W_ft − W_0‖_F per adapted layer (the paper's robustness measure), computed from low-rank factors."""
    return {name: float(layer.update_norm()) for name, layer in adapter_layers(model).items()}


def cast_base(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast every floating tensor of ``model`` to ``dtype`` except the adapters' own (kept fp32).

    Use instead of ``model.to(dtype)`` for fp16/bf16 training: adapter parameters must stay fp32.
    """
    adapter_ids = {id(t) for layer in adapter_layers(model).values() for t in layer.adapter_tensors().values()}
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for tensor in store.values():
                if tensor is None or id(tensor) in adapter_ids or not tensor.is_floating_point():
                    continue
                tensor.data = tensor.data.to(dtype)
