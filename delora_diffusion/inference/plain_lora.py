"""Plain LoRA files (diffusers/PEFT or kohya keys, e.g. from other trainers) on a pipeline, each at its scale.

They are loaded by diffusers (``load_lora_weights`` knows both key styles) and fused into the base weights,
then PEFT's layers are removed: what remains is a plain pipeline whose weights include the LoRAs, so a
delora-diffusion adapter can be attached on top (it then acts on the fused weights, DeLoRA's column
norms included).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ..errors import UserError


class PlainLoraError(UserError):
    """A plain LoRA file diffusers cannot put on this pipeline; the message names it."""


@dataclass(frozen=True)
class PlainLora:
    path: str
    sha256: str
    scale: float

    def record(self) -> dict:
        """What the generated images' metadata says about it."""
        return {"file": self.path, "sha256": self.sha256, "scale": self.scale}


def check_finite(path: str) -> None:
    """Stop naming the first tensor of a LoRA file that holds NaN or inf (a diverged run): fused, it would
    turn every image black without an error."""
    import torch
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                if not torch.isfinite(handle.get_tensor(key)).all():
                    raise PlainLoraError(
                        f"--adapter_file {path}: tensor {key} holds NaN or inf values (a diverged run?); "
                        "every image would come out black"
                    )
    except (OSError, ValueError, RuntimeError) as exc:  # not a safetensors file: diffusers' loader says why
        if isinstance(exc, PlainLoraError):
            raise


def fuse_plain_loras(pipe, loras: list[PlainLora]) -> None:
    """Fuse ``loras`` into ``pipe``'s UNet (and text encoder, when a file holds text-encoder LoRAs) with
    W ← W + Σ_i scale_i · B_i A_i · alpha_i / r_i, and leave no LoRA layers behind."""
    if not loras:
        return
    names = []
    for index, lora in enumerate(loras):
        name = f"plain_lora_{index}"
        check_finite(lora.path)
        try:
            with warnings.catch_warnings():  # PEFT warns that a second adapter joins the first: that is the point
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                pipe.load_lora_weights(lora.path, adapter_name=name)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise PlainLoraError(
                f"--adapter_file {lora.path}: not a delora-diffusion adapter, and diffusers cannot load "
                f"it as a LoRA of this model ({str(exc).splitlines()[0][:300]})"
            ) from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    pipe.fuse_lora(adapter_names=names)
    pipe.unload_lora_weights()  # the fused weights stay; PEFT's wrappers go, so our adapter can attach
