"""Adapters for the nn.Linear layers of a diffusion UNet, all behind one interface.

DeLoRA's math: ``delora.py``; ETHER/ETHER+: ``ether.py``; LoRA/DoRA (PEFT): ``peft_methods.py``;
the shared layer interface: ``base.py``; attach/merge/scale over a model: ``registry.py``;
the adapter file: ``io.py``; plain-LoRA export: ``export.py``; every method's name, label, defaults and
papers' learning rates: ``methods.py``.
"""

from .base import AdapterLayer
from .config import DEFAULT_TARGETS, METHODS, TARGET_PRESETS, AdapterConfig, AdapterConfigError, default_weight_decay
from .export import export_lora, lora_state_dict
from .io import AdapterFile, AdapterFileError, check_fits, load_adapter, read_adapter, save_adapter
from .methods import METHOD_TABLE, PAPER_LAMBDA_LEARNING_RATE, Method, method
from .registry import (
    adapter_config,
    adapter_layers,
    attach,
    cast_base,
    delta_weights,
    detach,
    disabled,
    find_target_modules,
    merge,
    param_groups,
    set_enabled,
    set_scale,
    trainable_parameter_count,
    unmerge,
    weight_distances,
)

__all__ = [
    "AdapterConfig", "AdapterConfigError", "AdapterFile", "AdapterFileError", "AdapterLayer", "DEFAULT_TARGETS",
    "TARGET_PRESETS",
    "METHODS", "METHOD_TABLE", "Method", "PAPER_LAMBDA_LEARNING_RATE", "adapter_config", "adapter_layers",
    "attach", "cast_base", "check_fits", "default_weight_decay",
    "delta_weights", "detach", "disabled", "export_lora", "find_target_modules", "load_adapter",
    "lora_state_dict", "merge", "method", "param_groups", "read_adapter", "save_adapter", "set_enabled", "set_scale",
    "trainable_parameter_count", "unmerge", "weight_distances",
]
