"""The hint encoder, its injection after conv_in, the ControlNet option, and the control module in the adapter file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from delora_diffusion.adapters import AdapterConfig, attach, read_adapter, save_adapter
from delora_diffusion.models.control import (
    ControlFileError,
    ControlledUNet,
    build_control,
    control_metadata,
    load_control,
)
from delora_diffusion.models.hint_encoder import HintEncoder, inject_hint
from delora_diffusion.models.loading import load_unet


@pytest.fixture(scope="module")
def unet(tiny_sd):
    torch.manual_seed(0)
    return load_unet(str(tiny_sd)).eval()


def unet_inputs(batch: int = 2, side: int = 16):
    generator = torch.Generator().manual_seed(1)
    return (
        torch.randn(batch, 4, side, side, generator=generator),
        torch.tensor([10, 500][:batch]),
        torch.randn(batch, 77, 32, generator=generator),
    )


def test_hint_encoder_is_the_papers_eight_convs():
    encoder = HintEncoder(320)  # SD 1.5: C = 320, ×8 VAE
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 16),
        (16, 16),
        (16, 32),
        (32, 32),
        (32, 96),
        (96, 96),
        (96, 256),
        (256, 320),
    ]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert torch.count_nonzero(convs[-1].weight) == 0 and torch.count_nonzero(convs[-1].bias) == 0
    features = encoder(torch.rand(2, 3, 64, 48))
    assert features.shape == (2, 320, 8, 6) and torch.count_nonzero(features) == 0
    # A ×2 VAE (the tiny model) keeps the eight convs and steps by 2 once.
    tiny = HintEncoder(32, downsampling=2)
    assert [c.stride[0] for c in tiny.modules() if isinstance(c, nn.Conv2d)] == [1, 1, 2, 1, 1, 1, 1, 1]
    assert HintEncoder.from_config(tiny.config).config == tiny.config
    with pytest.raises(ValueError, match="power of two"):
        HintEncoder(32, downsampling=3)


def test_zero_initialised_hint_leaves_the_unet_exactly_as_the_base(unet):
    sample, timestep, states = unet_inputs()
    encoder = HintEncoder(unet.config.block_out_channels[0], downsampling=2)
    maps = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        base = unet(sample, timestep, states).sample
        controlled = ControlledUNet(unet, "hint", encoder)(sample, timestep, states, maps)[0]
        assert torch.equal(controlled, base)
        nn.init.normal_(encoder.conv_out.weight, std=0.1)  # a trained encoder does change the output
        changed = ControlledUNet(unet, "hint", encoder)(sample, timestep, states, maps)[0]
    assert not torch.allclose(changed, base)
    assert torch.equal(unet(sample, timestep, states).sample, base)  # the hook is gone after the call


def test_hint_reaches_both_guidance_branches_and_rejects_wrong_shapes(unet):
    sample, timestep, states = unet_inputs()
    features = torch.randn(1, 32, 16, 16)  # one image; the batch of 2 is its unconditional + conditional copy
    with torch.no_grad():
        plain = unet.conv_in(sample)
        with inject_hint(unet, features):
            injected = unet.conv_in(sample)
    assert torch.allclose(injected, plain + features.repeat(2, 1, 1, 1))
    with (
        pytest.raises(ValueError, match="do not fit the UNet's first feature map"),
        torch.no_grad(),
        inject_hint(unet, torch.zeros(2, 32, 8, 8)),
    ):
        unet(sample, timestep, states)


def test_controlnet_starts_as_the_base_model(unet):
    sample, timestep, states = unet_inputs()
    controlnet = build_control("controlnet", unet, downsampling=2).eval()
    with torch.no_grad():
        base = unet(sample, timestep, states).sample
        controlled = ControlledUNet(unet, "controlnet", controlnet)(sample, timestep, states, torch.rand(2, 3, 32, 32))[
            0
        ]
    assert torch.equal(controlled, base)


@pytest.mark.parametrize("kind", ["hint", "controlnet"])
def test_control_module_round_trips_through_the_adapter_file(kind, tiny_sd, tmp_path):
    model = load_unet(str(tiny_sd))
    control = build_control(kind, model, downsampling=2)
    for parameter in control.parameters():  # "trained" weights, so zeros cannot pass by accident
        parameter.data.normal_()
    attach(model, AdapterConfig(method="delora", rank=2))
    name = "hint_encoder" if kind == "hint" else "controlnet"
    path = save_adapter(
        model,
        tmp_path / "a.safetensors",
        base_model=str(tiny_sd),
        extra_tensors={f"{name}.{k}": v for k, v in control.state_dict().items()},
        extra_metadata={"control": control_metadata(kind, control)},
    )
    loaded_kind, loaded = load_control(read_adapter(path))
    assert loaded_kind == kind and type(loaded) is type(control)
    for key, value in control.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    plain = save_adapter(model, tmp_path / "plain.safetensors")
    with pytest.raises(ControlFileError, match="no semantic-map control module"):
        load_control(read_adapter(plain))
