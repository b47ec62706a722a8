"""Adapters for the nn.Linear layers of a diffusion UNet, all behind one interface.

DeLoRA's math: ``delora.py``; ETHER/ETHER+: ``ether.py``; LoRA/DoRA (PEFT): ``peft_methods.py``;
the shared layer interface: ``base.py``; attach/merge/scale over a model: ``registry.py``;
the adapter file: ``io.py``; plain-LoRA export: ``export.py``; every method's name, label, defaults and
papers' learning rates: ``methods.py``.
"""

import lazy_loader

# Names resolve on first use, so light commands (--help, flag errors) never import torch.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": ["AdapterLayer"],
        "config": [
            "DEFAULT_TARGETS",
            "METHODS",
            "TARGET_PRESETS",
            "AdapterConfig",
            "AdapterConfigError",
            "adapter_fields",
            "default_weight_decay",
        ],
        "export": ["export_lora", "lora_state_dict"],
        "io": ["AdapterFile", "AdapterFileError", "check_fits", "load_adapter", "read_adapter", "save_adapter"],
        "methods": ["METHOD_TABLE", "PAPER_LAMBDA_LEARNING_RATE", "Method", "method"],
        "registry": [
            "adapter_config",
            "adapter_layers",
            "attach",
            "cast_base",
            "delta_weights",
            "detach",
            "disabled",
            "find_target_modules",
            "merge",
            "param_groups",
            "set_enabled",
            "set_scale",
            "trainable_parameter_count",
            "unmerge",
            "weight_distances",
        ],
    },
)
