"""The hint encoder of the OFT / ETHER / DeLoRA semantic-map → image experiments, and how it reaches the UNet.

``HintEncoder`` maps a colour map (B, 3, H, W) in [0, 1] to the shape of the UNet's first feature map:
eight 3×3 convolutions 3→16→16→32→32→96→96→256→C (C = the UNet's first block width, 320 for SD 1.5)
with SiLU between them; the second conv of each width pair after the first steps by 2, three times for
SD's ×8 VAE (H/8 = the latent size); the last conv starts at zero.

``inject_hint`` adds the encoder's output to the output of the UNet's ``conv_in`` through a forward hook
for as long as the context is open. A hook rather than a UNet subclass because it leaves the UNet what
it was — a stock diffusers ``UNet2DConditionModel`` that pipelines, adapters, DDP and checkpoints handle
as usual — and because the UNet's forward has no argument for a feature added after ``conv_in``. With the
last conv at zero, the hooked UNet computes exactly what the base UNet computes until training moves it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

HINT_WIDTHS = (16, 32, 96, 256)


class HintEncoder(nn.Module):
    """Colour map (B, in_channels, H, W) in [0, 1] → features (B, out_channels, H/d, W/d), d = ``downsampling``.

    ``downsampling`` must be 2**k with k ≤ len(widths) − 1 (the VAE's factor: 8 for SD, 2 for the tiny
    model); the first k width changes step by 2, the others by 1, so the layer count never changes.
    """

    def __init__(
        self, out_channels: int, downsampling: int = 8, in_channels: int = 3, widths: tuple[int, ...] = HINT_WIDTHS
    ) -> None:
        super().__init__()
        steps = round(math.log2(downsampling)) if downsampling >= 1 else -1
        if steps < 0 or 2**steps != downsampling or steps > len(widths) - 1:
            raise ValueError(f"downsampling must be a power of two up to {2 ** (len(widths) - 1)}, got {downsampling}")
        self.out_channels, self.downsampling, self.in_channels, self.widths = (
            out_channels,
            downsampling,
            in_channels,
            tuple(widths),
        )
        self.conv_in = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1)
        blocks = []
        for i in range(len(widths) - 1):
            blocks.append(nn.Conv2d(widths[i], widths[i], kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1, stride=2 if i < steps else 1))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def config(self) -> dict:
        """JSON-able constructor arguments (stored in the adapter file)."""
        return {
            "out_channels": self.out_channels,
            "downsampling": self.downsampling,
            "in_channels": self.in_channels,
            "widths": list(self.widths),
        }

    @classmethod
    def from_config(cls, config: dict) -> HintEncoder:
        return cls(
            int(config["out_channels"]),
            int(config.get("downsampling", 8)),
            int(config.get("in_channels", 3)),
            tuple(config.get("widths", HINT_WIDTHS)),
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        features = F.silu(self.conv_in(maps))
        for conv in self.blocks:
            features = F.silu(conv(features))
        return self.conv_out(features)


def unet_conv_in(unet: nn.Module) -> nn.Module:
    """The ``conv_in`` of a UNet, looking through DDP / compile wrappers (``.module``, ``._orig_mod``)."""
    while not hasattr(unet, "conv_in"):
        inner = getattr(unet, "module", None) or getattr(unet, "_orig_mod", None)
        if inner is None:
            raise TypeError(f"{type(unet).__name__} has no conv_in: not a diffusers UNet2DConditionModel")
        unet = inner
    return unet.conv_in


@contextlib.contextmanager
def inject_hint(unet: nn.Module, features: torch.Tensor) -> Iterator[None]:
    """While open, every forward of ``unet`` adds ``features`` (B, C, h, w) to the output of its ``conv_in``.

    A forward whose batch holds k copies of the B images (classifier-free guidance runs the unconditional
    and conditional halves as one batch of 2B) gets the features tiled k times, so the control reaches both
    branches. A shape that does not fit raises ``ValueError`` naming both shapes.
    """

    def add(module, inputs, output):
        hint = features
        if output.shape[0] != hint.shape[0]:
            if output.shape[0] % hint.shape[0]:
                raise ValueError(
                    f"hint features for {hint.shape[0]} images cannot be added to a UNet batch of {output.shape[0]}"
                )
            hint = hint.repeat(output.shape[0] // hint.shape[0], 1, 1, 1)
        if output.shape[1:] != hint.shape[1:]:
            raise ValueError(
                f"hint features of shape {tuple(hint.shape[1:])} do not fit the UNet's first feature map "
                f"{tuple(output.shape[1:])}: the map must have the image's size (latent size × the VAE "
                "factor) and the encoder the UNet's first block width"
            )
        return output + hint.to(output.dtype)

    handle = unet_conv_in(unet).register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
