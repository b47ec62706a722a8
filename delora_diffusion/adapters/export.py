"""Exact export of any adapter to plain LoRA files that other tools load.

Every method's update is low rank (DeLoRA residual 2r, zero_b r, ETHER n, ETHER+ ≤ 4 per block), so
its ``lora_factors`` B (out×k), A (k×in) with W' − W = B A are written as LoRA down/up weights with
scale 1, in closed form (no SVD, no approximation):

- ``diffusers``: PEFT keys ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` (``text_encoder.<module>``,
  ``text_encoder_2.<module>`` for text-encoder adapters) for ``pipe.load_lora_weights(file)``; DoRA adds
  ``lora_magnitude_vector`` (PEFT's own DoRA format).
- ``kohya``: ``lora_unet_<module with _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha`` (= k), the text
  encoder's under ``lora_te_`` (SDXL's two: ``lora_te1_``, ``lora_te2_``): what kohya's sd-scripts writes and
  ComfyUI / A1111 load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .formats import FORMATS
from .io import atomic_save_safetensors, text_encoder_layer_name
from .peft_methods import PeftLoRALinear
from .registry import adapter_layers

KOHYA_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
KOHYA_SDXL_TEXT_PREFIXES = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}  # kohya numbers two encoders


@torch.no_grad()
def lora_state_dict(
    model: nn.Module, fmt: str = "diffusers", prefix: str = "unet", kohya_prefix: str | None = None
) -> dict[str, torch.Tensor]:
    """LoRA tensors reproducing the current update (at the current scale) of every adapted layer of ``model``,
    the ``prefix`` component ("unet", "text_encoder" or "text_encoder_2"; ``kohya_prefix`` overrides its kohya
    prefix)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out: dict[str, torch.Tensor] = {}
    for name, layer in adapter_layers(model).items():
        name = name if prefix == "unet" else text_encoder_layer_name(name)
        if isinstance(layer, PeftLoRALinear) and layer.use_dora:
            if fmt != "diffusers":
                raise ValueError(
                    "DoRA exports to --format diffusers only: kohya/LyCORIS DoRA files normalise another axis"
                )
            if layer.scale != 1.0:
                raise ValueError("DoRA export needs scale 1: a scaled DoRA update is not DoRA-shaped")
            tensors = layer.adapter_tensors()
            A = tensors["lora_A"].float()
            B = tensors["lora_B"].float() * layer.lora_scaling
            out[f"{prefix}.{name}.lora_magnitude_vector"] = tensors["magnitude"].float()
        else:
            B, A = layer.lora_factors()
            B = B * layer.scale
        if fmt == "diffusers":
            out[f"{prefix}.{name}.lora_A.weight"] = A.contiguous()
            out[f"{prefix}.{name}.lora_B.weight"] = B.contiguous()
        else:
            key = (kohya_prefix or KOHYA_PREFIXES[prefix]) + name.replace(".", "_")
            out[f"{key}.lora_down.weight"] = A.contiguous()
            out[f"{key}.lora_up.weight"] = B.contiguous()
            out[f"{key}.alpha"] = torch.tensor(float(A.shape[0]))  # alpha = rank: scale 1
    return out


def export_lora(
    model: nn.Module,
    out_path: str | os.PathLike[str],
    fmt: str = "diffusers",
    text_encoders: dict[str, nn.Module] | None = None,
) -> Path:
    """Write ``lora_state_dict`` of ``model`` (the UNet) and of the adapted ``text_encoders`` (pipeline name ->
    model) to ``out_path`` (safetensors, atomically)."""
    tensors = lora_state_dict(model, fmt)
    adapted = {name: encoder for name, encoder in (text_encoders or {}).items() if adapter_layers(encoder)}
    for name, encoder in adapted.items():
        tensors.update(
            lora_state_dict(encoder, fmt, name, KOHYA_SDXL_TEXT_PREFIXES[name] if len(adapted) > 1 else None)
        )
    atomic_save_safetensors(tensors, out_path, {"format": "pt", "exported_by": "delora-diffusion"})
    return Path(out_path)
