"""Semantic-map control of a UNet: the light hint encoder or a full diffusers ``ControlNetModel``.

``build_control`` makes the module for a UNet, ``ControlledUNet`` runs the UNet under it with the
denoiser signature the training loss calls, and ``control_metadata`` / ``load_control`` put the module
into the adapter file and take it out again (its configuration in the metadata, its weights as extra
tensors ``<module>.<parameter>``), so one file holds everything a semantic-map adapter needs.

- ``hint`` (default): ``HintEncoder`` output added after ``conv_in`` (``hint_encoder.py``); 1.1M
  parameters for SD 1.5 besides the adapter.
- ``controlnet``: ``ControlNetModel.from_unet`` — a trainable copy of the UNet's encoder fed the map
  through its own conditioning embedding, adding residuals to the UNet's skip connections through zero
  convolutions (Zhang et al., 2023); ~360M parameters for SD 1.5.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import UserError
from .control_kinds import CONTROLS, MODULE_NAMES
from .hint_encoder import HINT_WIDTHS, HintEncoder, inject_hint


class ControlFileError(UserError):
    """An adapter file whose control module is missing or does not load; the message names the file."""


def build_control(kind: str, unet: nn.Module, downsampling: int) -> nn.Module:
    """A fresh control module for ``unet``; ``downsampling`` is the VAE's factor (8 for SD).

    Both start as the identity on the base model: the hint encoder's last conv and the ControlNet's
    zero convolutions are zero. The ControlNet's encoder starts as a copy of the UNet's.
    """
    if kind == "hint":
        return HintEncoder(int(unet.config.block_out_channels[0]), downsampling)
    if kind == "controlnet":
        from diffusers import ControlNetModel

        steps = int(round(math.log2(downsampling)))
        # SD's ControlNet embeds the map with widths (16, 32, 96, 256) and three stride-2 steps (×8); a VAE
        # with a smaller factor keeps the first widths so the embedding still lands on the latent grid.
        return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_WIDTHS[: steps + 1])
    raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")


def control_config(kind: str, module: nn.Module) -> dict:
    if kind == "hint":
        return module.config
    return {key: value for key, value in dict(module.config).items() if not key.startswith("_")}


def control_from_config(kind: str, config: dict) -> nn.Module:
    if kind == "hint":
        return HintEncoder.from_config(config)
    if kind == "controlnet":
        from diffusers import ControlNetModel

        return ControlNetModel.from_config(config)
    raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")


def control_metadata(kind: str, module: nn.Module) -> dict:
    """The ``control`` entry of the adapter file's metadata."""
    return {"type": kind, "module": MODULE_NAMES[kind], "config": control_config(kind, module)}


def load_control(adapter_file) -> tuple[str, nn.Module]:
    """(kind, module with its trained weights) from a parsed adapter file (``adapters.read_adapter``)."""
    path = adapter_file.path
    entry = adapter_file.metadata.get("extra", {}).get("control")
    if not isinstance(entry, dict) or entry.get("type") not in CONTROLS:
        raise ControlFileError(
            f"{path} holds no semantic-map control module (it was not trained with "
            "train_semantic.py); use generate.py without the semantic subcommand"
        )
    kind, name = entry["type"], entry.get("module", MODULE_NAMES[entry["type"]])
    try:
        module = control_from_config(kind, entry["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ControlFileError(f"{path}: the {kind} configuration in its metadata is unusable ({exc})") from exc
    prefix = f"{name}."
    state = {key[len(prefix) :]: value for key, value in adapter_file.extra_tensors.items() if key.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ControlFileError(f"{path}: the {name} tensors do not match its configuration ({exc})") from exc
    return kind, module.eval()


@contextlib.contextmanager
def residuals_as(controlnet: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """While open, the ControlNet's residuals come out in ``dtype`` (a trained fp32 ControlNet beside a
    half-precision UNet inside diffusers' pipeline, which adds them as they come)."""

    def cast(module, inputs, output):
        if isinstance(output, tuple) and len(output) == 2:
            down, mid = output
            return [d.to(dtype) for d in down], mid.to(dtype)
        output.down_block_res_samples = [d.to(dtype) for d in output.down_block_res_samples]
        output.mid_block_res_sample = output.mid_block_res_sample.to(dtype)
        return output

    handle = controlnet.register_forward_hook(cast)
    try:
        yield
    finally:
        handle.remove()


class ControlledUNet:
    """Calls ``unet`` under ``control`` with the denoiser signature of the training loss.

    ``unet``/``control`` may be DDP-wrapped (the prepared training modules); ``scale`` multiplies the
    control's contribution (hint features, ControlNet residuals).
    """

    def __init__(self, unet, kind: str, control, scale: float = 1.0) -> None:
        if kind not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")
        self.unet, self.kind, self.control, self.scale = unet, kind, control, scale

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        control_image: torch.Tensor,
        return_dict: bool = False,
    ):
        """``sample`` (B, C, h, w) noisy latents; ``control_image`` (B, 3, h·f, w·f) colour maps in [0, 1]."""
        if self.kind == "hint":
            features = self.control(control_image) * self.scale
            with inject_hint(self.unet, features):
                return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=return_dict)
        down, mid = self.control(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=control_image,
            conditioning_scale=self.scale,
            return_dict=False,
        )
        # The trained ControlNet is fp32; under mixed precision the frozen UNet's activations are not, and
        # an fp32 residual would carry fp32 into its half-precision normalisation layers.
        down, mid = [d.to(sample.dtype) for d in down], mid.to(sample.dtype)
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=return_dict,
        )
