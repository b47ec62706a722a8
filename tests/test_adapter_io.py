"""The self-describing adapter file: round trip, metadata, and the errors users meet."""

from __future__ import annotations

import json

import pytest
import torch
from adapter_helpers import ALL_METHODS, ToyAttention, ToyModel, perturb, toy_inputs
from safetensors import safe_open
from safetensors.torch import save_file

from delora_diffusion import __version__
from delora_diffusion.adapters import (
    AdapterConfig,
    AdapterFileError,
    adapter_layers,
    attach,
    load_adapter,
    read_adapter,
    save_adapter,
)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_save_load_gives_identical_outputs(method, tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    attach(model, AdapterConfig(method=method, rank=3, init="residual", lambda_init=4.0))
    perturb(model)
    path = save_adapter(model, tmp_path / "adapter.safetensors", base_model="toy/base")
    torch.manual_seed(0)
    fresh = ToyModel()  # the same base weights
    torch.manual_seed(123)  # another adapter init, which the file must fully overwrite
    loaded = load_adapter(fresh, path)
    x, ctx = toy_inputs()
    torch.testing.assert_close(fresh(x, ctx), model(x, ctx), rtol=0, atol=0)
    assert loaded.config.method == method and loaded.metadata["base_model"] == "toy/base"
    assert sorted(adapter_layers(fresh)) == sorted(adapter_layers(model))


def test_metadata_describes_the_adapter(tmp_path):
    model = ToyModel()
    attach(model, AdapterConfig(method="delora", rank=2, lambda_init=9.0))
    path = save_adapter(model, tmp_path / "a.safetensors", base_model="stable-diffusion-v1-5/stable-diffusion-v1-5")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["delora_diffusion"])
        keys = set(f.keys())
    assert meta["method"] == "delora" and meta["config"]["rank"] == 2 and meta["config"]["lambda_init"] == 9.0
    assert meta["version"] == __version__ and meta["base_model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert meta["shapes"]["attn1.to_k"] == [16, 24]
    assert "attn1.to_q.lora_A" in keys and "attn1.to_q.w_norm" in keys and "attn1.to_q.lora_A0" in keys
    assert not any("base_layer" in k for k in keys)
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_extra_tensors_round_trip(tmp_path):
    model = ToyModel()
    attach(model, AdapterConfig(method="ether"))
    hint = {"conv.weight": torch.randn(3, 3)}
    save_adapter(model, tmp_path / "a.safetensors", extra_tensors=hint, extra_metadata={"control": "hint"})
    parsed = read_adapter(tmp_path / "a.safetensors")
    torch.testing.assert_close(parsed.extra_tensors["conv.weight"], hint["conv.weight"])
    assert parsed.metadata["extra"] == {"control": "hint"}


def test_loading_into_a_model_with_other_shapes_names_the_layer(tmp_path):
    model = ToyModel()
    attach(model, AdapterConfig(method="lora", rank=2))
    save_adapter(model, tmp_path / "a.safetensors", base_model="toy/base")
    other = ToyModel()
    other.attn2 = ToyAttention(dim=16, context_dim=40)  # attn2.to_k/to_v now take 40 inputs
    with pytest.raises(AdapterFileError, match=r"layer attn2\.to_k has shape \[16, 40\].*\[16, 24\].*toy/base"):
        load_adapter(other, tmp_path / "a.safetensors")
    assert not adapter_layers(other)  # nothing half-attached


def test_loading_into_a_model_missing_a_layer(tmp_path):
    model = ToyModel()
    attach(model, AdapterConfig(method="lora", rank=2))
    save_adapter(model, tmp_path / "a.safetensors")
    other = ToyModel()
    del other.attn2
    with pytest.raises(AdapterFileError, match=r"layer attn2\.to_q does not exist"):
        load_adapter(other, tmp_path / "a.safetensors")


def test_not_a_safetensors_file(tmp_path):
    bad = tmp_path / "adapter.safetensors"
    bad.write_bytes(b"\x80\x04this is a pickle, not safetensors")
    with pytest.raises(AdapterFileError, match="adapter.safetensors is not a readable safetensors file"):
        read_adapter(bad)
    with pytest.raises(AdapterFileError, match="does not exist"):
        read_adapter(tmp_path / "missing.safetensors")


def test_truncated_file(tmp_path):
    model = ToyModel()
    attach(model, AdapterConfig(method="delora", rank=2))
    path = save_adapter(model, tmp_path / "a.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AdapterFileError, match="not a readable safetensors file"):
        load_adapter(ToyModel(), path)


def test_an_adapter_holding_nan_or_inf_is_refused_naming_file_and_tensor(tmp_path):
    model = ToyModel()
    attach(model, AdapterConfig(method="lora", rank=2))
    path = save_adapter(model, tmp_path / "a.safetensors")
    with safe_open(str(path), "pt") as handle:
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    key = sorted(tensors)[-1]
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(AdapterFileError, match=f"{path.name}: 1 tensor.*NaN or inf.*{key}"):
        load_adapter(ToyModel(), path)


def test_foreign_safetensors_file(tmp_path):
    foreign = tmp_path / "lora.safetensors"
    save_file({"unet.x.lora_A.weight": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(AdapterFileError, match="not written by delora-diffusion.*load_lora_weights"):
        read_adapter(foreign)
    bad_meta = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(bad_meta), metadata={"delora_diffusion": "{not json"})
    with pytest.raises(AdapterFileError, match="malformed"):
        read_adapter(bad_meta)
    future = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, str(future), metadata={"delora_diffusion": json.dumps({"format_version": 99})})
    with pytest.raises(AdapterFileError, match="upgrade"):
        read_adapter(future)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from delora_diffusion.fileio import atomic_write_text

    atomic_write_text(tmp_path / "x.json", "{}")
    model = ToyModel()
    attach(model, AdapterConfig(method="lora", rank=2))
    save_adapter(model, tmp_path / "adapter.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("x.json", "adapter.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
