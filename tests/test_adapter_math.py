"""The methods' formulas, checked against direct dense computations and against PEFT."""

from __future__ import annotations

import math

import pytest
import torch
from adapter_helpers import perturb
from torch import nn

from delora_diffusion.adapters import AdapterConfig, adapter_layers, attach, param_groups
from delora_diffusion.adapters.delora import DeLoRALinear
from delora_diffusion.adapters.ether import ETHERLinear, ETHERPlusLinear


def dense_delora(layer: DeLoRALinear) -> torch.Tensor:
    """ΔW written out term by term from the paper's definition."""
    lam, r = layer.delora_lambda.item(), layer.rank
    w = layer.base_layer.weight.detach().norm(dim=0)

    def normalized_sum(A, B):
        return sum(torch.outer(B[:, i], A[i]) / (B[:, i].norm() * A[i].norm()) for i in range(r))

    delta = normalized_sum(layer.lora_A.detach(), layer.lora_B.detach())
    if layer.residual:
        delta = delta - normalized_sum(layer.lora_A0, layer.lora_B0)
    return lam / r * delta * w[None, :]


def make_delora(init: str, out=24, inp=16, r=4, lam=3.0) -> DeLoRALinear:
    torch.manual_seed(0)
    return DeLoRALinear(nn.Linear(inp, out), AdapterConfig(method="delora", rank=r, init=init, lambda_init=lam))


@pytest.mark.parametrize("init", ["residual", "zero_b"])
def test_delora_update_is_zero_at_init(init):
    layer = make_delora(init)
    x = torch.randn(7, 16)
    assert torch.equal(layer(x), layer.base_layer(x)) or torch.allclose(layer(x), layer.base_layer(x), atol=1e-6)
    assert layer.delta_weight().abs().max().item() < 1e-6
    if init == "residual":
        assert layer.lora_B.abs().sum() > 0  # residual init: B is random, the frozen copy cancels it


@pytest.mark.parametrize("init", ["residual", "zero_b"])
def test_delora_matches_dense_formula(init):
    layer = make_delora(init)
    with torch.no_grad():
        layer.lora_A.add_(0.3 * torch.randn_like(layer.lora_A))
        layer.lora_B.add_(0.3 * torch.randn_like(layer.lora_B))
        layer.delora_lambda.fill_(2.5)
    expected = dense_delora(layer)
    torch.testing.assert_close(layer.delta_weight(), expected, rtol=1e-5, atol=1e-6)
    x = torch.randn(4, 9, 16)
    base = layer.base_layer
    torch.testing.assert_close(layer(x), x @ (base.weight + expected).T + base.bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.update_norm(), expected.norm(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lr", [1e-4, 1e-5])
def test_delora_update_norm_keeps_its_precision_for_small_updates(lr):
    """One Adam step at a small rate: the trained and frozen terms nearly cancel; the norm must not."""
    torch.manual_seed(0)
    layer = DeLoRALinear(nn.Linear(320, 320), AdapterConfig(method="delora", rank=4, lambda_init=15.0))
    optimizer = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
    layer(torch.randn(8, 320)).square().mean().backward()
    optimizer.step()
    double = layer.double()  # the paper's formula, every term in float64
    true_norm = dense_delora(double).norm().item()
    assert true_norm > 0
    layer.float()
    assert layer.update_norm().item() == pytest.approx(true_norm, rel=1e-4)  # float32 Gram: 0.7 % and 4 % off


def test_delora_frozen_copies_are_clones_and_stay_frozen():
    """Guards against the reference code's bug: A0/B0 aliased to A/B keep ΔW = 0 for ever."""
    layer = make_delora("residual")
    A0, B0 = layer.lora_A0.clone(), layer.lora_B0.clone()
    assert layer.lora_A0.data_ptr() != layer.lora_A.data_ptr()
    assert layer.lora_B0.data_ptr() != layer.lora_B.data_ptr()
    opt = torch.optim.AdamW([layer.lora_A, layer.lora_B, layer.delora_lambda], lr=1e-2)
    x, target = torch.randn(32, 16), torch.randn(32, 24)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    assert torch.equal(layer.lora_A0, A0) and torch.equal(layer.lora_B0, B0)
    assert not torch.equal(layer.lora_A, A0) and not torch.equal(layer.lora_B, B0)
    assert layer.delta_weight().norm() > 1e-3  # training actually moved the weights
    assert "lora_A0" not in dict(layer.named_parameters())


@pytest.mark.parametrize("init,factor", [("residual", 2.0), ("zero_b", 1.0)])
def test_delora_update_stays_bounded_at_huge_learning_rate(init, factor):
    layer = make_delora(init, lam=2.0)
    opt = torch.optim.SGD([layer.lora_A, layer.lora_B], lr=1e3)  # absurd LR: LoRA would explode
    x, target = torch.randn(64, 16), 100 * torch.randn(64, 24)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    bound = factor * layer.delora_lambda.abs().item() * layer.w_norm.max().item()
    norm = layer.delta_weight().norm().item()
    assert 0 < norm <= bound * (1 + 1e-5), (norm, bound)


def test_delora_equals_peft_delora_layer():
    from peft import DeloraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base = nn.Linear(16, 24)
    ours = DeLoRALinear(base, AdapterConfig(method="delora", rank=4, init="zero_b", lambda_init=7.0))
    holder = nn.Module()
    holder.layer = nn.Linear(16, 24)
    holder.layer.load_state_dict(base.state_dict())
    inject_adapter_in_model(DeloraConfig(r=4, delora_lambda=7, target_modules=["layer"]), holder)
    theirs = holder.layer
    with torch.no_grad():
        ours.lora_B.normal_()  # both start at B = 0; give B a value so the comparison is not trivial
        theirs.delora_A["default"].copy_(ours.lora_A)
        theirs.delora_B["default"].copy_(ours.lora_B)
        theirs.delora_lambda["default"].copy_(ours.delora_lambda)
        theirs.delora_w_norm["default"].copy_(ours.w_norm)
    x = torch.randn(5, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.delta_weight(), theirs.get_delta_weight("default"), rtol=1e-6, atol=1e-7)


def test_delora_lambda_has_its_own_parameter_group():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16))
    attach(model, AdapterConfig(method="delora", rank=2, target_modules=r"\d"))
    groups = {g["name"]: g for g in param_groups(model, lr=2e-2, lambda_lr=1e-3, lambda_weight_decay=0.5)}
    assert groups["lambda"]["lr"] == 1e-3 and groups["lambda"]["weight_decay"] == 0.5
    assert len(groups["lambda"]["params"]) == 2 and all(p.shape == (1,) for p in groups["lambda"]["params"])
    assert groups["adapter"]["lr"] == 2e-2 and len(groups["adapter"]["params"]) == 4


def test_delora_computes_in_fp32_under_autocast():
    layer = make_delora("zero_b")
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        y.float().sum().backward()
    assert layer.lora_A.grad.dtype == torch.float32 and layer.delora_lambda.grad.dtype == torch.float32
    # The adapter branch alone is fp32-exact; only the frozen matmul runs in bf16.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        branch = layer(x).float() - layer.base_layer(x).float()
    exact = x @ layer.delta_weight().T
    assert (branch - exact).abs().max() < 0.05 * exact.abs().max()


def block_diag_reflection(u: torch.Tensor) -> torch.Tensor:
    blocks = [torch.eye(len(v)) - 2 * torch.outer(v, v) / v.dot(v) for v in u]
    return torch.block_diag(*blocks)


def test_ether_reflections_are_orthogonal_and_act_on_input_chunks():
    torch.manual_seed(0)
    layer = ETHERLinear(nn.Linear(16, 24), AdapterConfig(method="ether", ether_blocks=4))
    u = layer.ether_u.detach()
    H = block_diag_reflection(u)
    torch.testing.assert_close(H @ H.T, torch.eye(16), atol=1e-5, rtol=0)
    for k in range(4):
        Hk = H[4 * k : 4 * k + 4, 4 * k : 4 * k + 4]
        assert math.isclose((Hk - torch.eye(4)).norm().item(), 2.0, rel_tol=1e-5)
    W, b = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
    torch.testing.assert_close(layer.delta_weight(), W @ H - W, atol=1e-5, rtol=1e-5)
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), x @ (W @ H).T + b, atol=1e-5, rtol=1e-5)
    assert layer.delta_weight().abs().max() > 1e-3  # ETHER does not start at the base model (paper's init)


@pytest.mark.parametrize("one_sided", [False, True])
def test_etherplus_is_identity_at_init_and_matches_dense_form(one_sided):
    torch.manual_seed(0)
    layer = ETHERPlusLinear(nn.Linear(16, 24), AdapterConfig(method="etherplus", ether_blocks=4, one_sided=one_sided))
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), layer.base_layer(x), atol=1e-6, rtol=0)
    assert layer.update_norm() < 1e-5
    perturb(layer, std=0.5)

    def h_plus(u, v):
        blocks = [torch.eye(len(a)) - torch.outer(a, a) / a.dot(a) + torch.outer(c, c) / c.dot(c) for a, c in zip(u, v)]
        return torch.block_diag(*blocks)

    W, b = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
    expected = W @ h_plus(layer.ether_u.detach(), layer.ether_v.detach())
    if not one_sided:
        expected = h_plus(layer.ether_p.detach(), layer.ether_q.detach()) @ expected
    torch.testing.assert_close(layer.delta_weight(), expected - W, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x), x @ expected.T + b, atol=1e-5, rtol=1e-5)
    rank = torch.linalg.matrix_rank(expected - W).item()
    assert rank <= (2 if one_sided else 4) * 4


@pytest.mark.parametrize("one_sided", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_etherplus_at_a_scale_on_a_half_precision_base_takes_fp32_activations(one_sided, dtype):
    """What autocast delivers (fp32 activations, fp16/bf16 frozen weights), with --scale != 1."""
    from delora_diffusion.adapters import cast_base, set_scale

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24))
    attach(model, AdapterConfig(method="etherplus", ether_blocks=4, one_sided=one_sided, target_modules=["0"]))
    layer = adapter_layers(model)["0"]
    perturb(layer, std=0.5)
    delta = layer.delta_weight()
    cast_base(model, dtype)
    set_scale(model, 0.5)
    x = torch.randn(3, 16)
    W, b = layer.base_layer.weight.float(), layer.base_layer.bias.float()
    torch.testing.assert_close(model(x).float(), x @ (W + 0.5 * delta).T + b, atol=3e-2, rtol=3e-2)


def test_ether_block_count_must_divide_the_layer():
    with pytest.raises(ValueError, match="ether_blocks=5"):
        ETHERLinear(nn.Linear(16, 24), AdapterConfig(method="ether", ether_blocks=5))
    with pytest.raises(ValueError, match="output"):
        ETHERPlusLinear(nn.Linear(16, 18), AdapterConfig(method="etherplus", ether_blocks=4))


def test_ether_methods_default_to_no_weight_decay():
    for method, wd in [("ether", 0.0), ("etherplus", 0.0), ("lora", 1e-2), ("delora", 1e-2)]:
        model = nn.Sequential(nn.Linear(16, 16))
        attach(model, AdapterConfig(method=method, rank=2, target_modules=["0"]))
        assert param_groups(model, lr=1.0)[0]["weight_decay"] == wd
        assert len(adapter_layers(model)) == 1
