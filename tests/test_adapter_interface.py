"""The shared interface, the same for every method: attach, merge/unmerge, scale, enable, detach, dtype."""

from __future__ import annotations

import pytest
import torch
from adapter_helpers import ALL_METHODS, ToyModel, perturb, toy_inputs
from torch import nn

from delora_diffusion.adapters import (
    AdapterConfig,
    AdapterConfigError,
    adapter_layers,
    attach,
    cast_base,
    delta_weights,
    detach,
    disabled,
    find_target_modules,
    merge,
    set_enabled,
    set_scale,
    unmerge,
    weight_distances,
)


def adapted_toy(method: str, **kw) -> ToyModel:
    torch.manual_seed(0)
    model = ToyModel()
    attach(model, AdapterConfig(method=method, rank=4, ether_blocks=4, **kw))
    perturb(model)
    return model


def test_default_targets_are_the_attention_projections():
    model = ToyModel()
    layers = attach(model, AdapterConfig(method="lora", rank=2))
    assert sorted(layers) == sorted(f"attn{i}.{p}" for i in (1, 2) for p in ("to_q", "to_k", "to_v", "to_out.0"))
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora" not in n)


def test_targets_by_regex_and_clear_errors():
    model = ToyModel()
    assert find_target_modules(model, r"attn1\.to_(q|k)") == ["attn1.to_q", "attn1.to_k"]
    with pytest.raises(ValueError, match="matches no nn.Linear"):
        attach(model, AdapterConfig(method="delora", target_modules=["nope"]))
    attach(model, AdapterConfig(method="delora", rank=2))
    with pytest.raises(ValueError, match="already has adapter"):
        attach(model, AdapterConfig(method="lora", rank=2))
    with pytest.raises(AdapterConfigError, match="method must be one of"):
        AdapterConfig(method="loha")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_merge_unmerge_round_trip_and_forward_agree(method):
    model = adapted_toy(method)
    x, ctx = toy_inputs()
    weights = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    y = model(x, ctx)
    merge(model)
    assert all(layer.merged for layer in adapter_layers(model).values())
    torch.testing.assert_close(model(x, ctx), y, rtol=1e-5, atol=1e-5)
    unmerge(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            ref = weights[name]
            assert (module.weight - ref).norm() <= 1e-6 * ref.norm()
    torch.testing.assert_close(model(x, ctx), y, rtol=0, atol=0)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_scale_multiplies_the_update(method):
    model = adapted_toy(method)
    x, ctx = toy_inputs()
    deltas = delta_weights(model)
    set_scale(model, 0.0)
    with disabled(model):
        y_base = model(x, ctx)
    torch.testing.assert_close(model(x, ctx), y_base, rtol=0, atol=1e-6)
    set_scale(model, 0.5)
    for name, layer in adapter_layers(model).items():
        torch.testing.assert_close(layer.delta_weight(), 0.5 * deltas[name], rtol=1e-5, atol=1e-6)
        xi = torch.randn(2, layer.in_features)
        base = layer.base_layer
        bias = 0 if base.bias is None else base.bias
        expected = xi @ (base.weight + 0.5 * deltas[name]).T + bias
        torch.testing.assert_close(layer(xi), expected, rtol=1e-5, atol=1e-5)
    y_half = model(x, ctx)
    merge(model)  # merging bakes in the current scale
    torch.testing.assert_close(model(x, ctx), y_half, rtol=1e-5, atol=1e-5)
    set_scale(model, 2.0)  # changing the scale unmerges first
    assert not any(layer.merged for layer in adapter_layers(model).values())
    distances = weight_distances(model)
    for name, d in distances.items():
        assert d == pytest.approx(2.0 * deltas[name].norm().item(), rel=1e-4)
    with pytest.raises(ValueError, match=">= 0"):
        set_scale(model, -1)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_disable_enable_and_detach(method):
    model = adapted_toy(method)
    x, ctx = toy_inputs()
    torch.manual_seed(0)
    plain = ToyModel()
    y_plain, y_adapted = plain(x, ctx), model(x, ctx)
    assert not torch.allclose(y_plain, y_adapted)
    set_enabled(model, False)
    torch.testing.assert_close(model(x, ctx), y_plain, rtol=0, atol=0)
    set_enabled(model, True)
    torch.testing.assert_close(model(x, ctx), y_adapted, rtol=0, atol=0)
    merge(model)
    detach(model, merge=True)
    assert not adapter_layers(model)
    assert type(model.attn1.to_q) is nn.Linear
    torch.testing.assert_close(model(x, ctx), y_adapted, rtol=1e-5, atol=1e-5)


def test_detach_without_merge_restores_the_base_model():
    model = adapted_toy("delora")
    x, ctx = toy_inputs()
    torch.manual_seed(0)
    y_plain = ToyModel()(x, ctx)
    merge(model)
    detach(model)
    torch.testing.assert_close(model(x, ctx), y_plain, rtol=0, atol=0)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_cast_base_keeps_adapter_fp32_and_trains_under_bf16_autocast(method):
    model = adapted_toy(method)
    cast_base(model, torch.bfloat16)
    for name, layer in adapter_layers(model).items():
        assert layer.base_layer.weight.dtype == torch.bfloat16
        assert all(t.dtype == torch.float32 for t in layer.adapter_tensors().values()), name
    x, ctx = toy_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x.bfloat16(), ctx.bfloat16()).float().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
