"""delora-inspect-norms on the tiny model: per-layer column norms, per-block means, table, CSV and PNG."""

from __future__ import annotations

import csv

import pytest

from delora_diffusion.models.loading import load_unet
from delora_diffusion.studies.norms import column_norms, main, per_block


def test_column_norms_of_every_attention_projection(tiny_sd):
    unet = load_unet(str(tiny_sd))
    rows = column_norms(unet)
    attentions = [n for n, m in unet.named_modules() if n.endswith((".attn1", ".attn2"))]
    assert len(rows) == 4 * len(attentions)
    row = next(r for r in rows if r["layer"].endswith("attn2.to_k"))
    weight = unet.get_submodule(row["layer"]).weight
    assert row["in_features"] == weight.shape[1] == unet.config.cross_attention_dim
    assert row["mean_column_norm"] == pytest.approx(weight.norm(dim=0).mean().item(), rel=1e-6)
    assert row["attention"] == "cross" and row["projection"] == "to_k"

    blocks, series = per_block(rows)
    assert blocks == ["down_blocks.0", "mid_block", "up_blocks.1"]  # the path through the U
    in_block = [
        r["mean_column_norm"]
        for r in rows
        if r["block"] == "mid_block" and r["attention"] == "self" and r["projection"] == "to_q"
    ]
    assert series[("self", "to_q")]["mid_block"] == pytest.approx(sum(in_block) / len(in_block))


def test_command_prints_the_table_and_writes_png_and_csv(tiny_sd, tmp_path, capsys):
    out = tmp_path / "norms.png"
    assert main(["--model", str(tiny_sd), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| cross | to_k |" in table and "mid_block" in table
    assert out.read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 32 and {r["block"] for r in rows} == {"down_blocks.0", "mid_block", "up_blocks.1"}


def test_a_missing_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "n.png")])
    assert exit_info.value.code == 2 and "delora-inspect-norms: error: could not load a UNet" in capsys.readouterr().err
