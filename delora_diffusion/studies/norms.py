"""``delora-inspect-norms``: mean column norm of the UNet's attention projections per block (paper Fig. 4).

The column norms w_j = ‖W[:, j]‖ of the pretrained weights differ between blocks and projections;
DeLoRA multiplies its update by diag(w) so that a given λ means a comparable relative change in every
layer. This plots mean_j w_j of every attention projection (to_q, to_k, to_v, to_out.0; self- and
cross-attention), averaged within each UNet block. No training, no adapter.

    delora-inspect-norms --model stable-diffusion-v1-5/stable-diffusion-v1-5 --out outputs/norms/sd15.png
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import defaultdict
from pathlib import Path

from ..fileio import atomic_write_text
from ..plotting import pyplot, save_png

PROG = "delora-inspect-norms"
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
ATTENTION_KINDS = {"attn1": "self", "attn2": "cross"}


def block_of(module_name: str) -> str:
    """``down_blocks.1.attentions.0.transformer_blocks.0.attn2`` → ``down_blocks.1``; ``mid_block...`` → ``mid_block``."""
    parts = module_name.split(".")
    return ".".join(parts[:2]) if parts[0] in ("down_blocks", "up_blocks") else parts[0]


def column_norms(unet) -> list[dict]:
    """One row per attention projection of a ``torch.nn.Module`` UNet, in module order: ``{"layer", "block",
    "attention", "projection", "in_features", "out_features", "mean_column_norm", "max_column_norm"}``
    (norms over W's output dim, fp32)."""
    import torch  # here: --help answers without loading torch

    rows = []
    modules = dict(unet.named_modules())
    for name, module in modules.items():
        kind = ATTENTION_KINDS.get(name.rsplit(".", 1)[-1])
        if kind is None or not hasattr(module, "to_q"):
            continue
        for projection in PROJECTIONS:
            layer = modules.get(f"{name}.{projection}")
            if not isinstance(layer, torch.nn.Linear):
                continue
            norms = layer.weight.detach().float().norm(dim=0)
            rows.append(
                {
                    "layer": f"{name}.{projection}",
                    "block": block_of(name),
                    "attention": kind,
                    "projection": projection,
                    "in_features": layer.in_features,
                    "out_features": layer.out_features,
                    "mean_column_norm": norms.mean().item(),
                    "max_column_norm": norms.max().item(),
                }
            )
    return rows


def _u_order(block: str) -> tuple[int, int]:
    """Down blocks, then the mid block, then up blocks: the path an input takes through the U."""
    kind, _, index = block.partition(".")
    return ({"down_blocks": 0, "mid_block": 1, "up_blocks": 2}.get(kind, 3), int(index) if index.isdigit() else 0)


def per_block(rows: list[dict]) -> tuple[list[str], dict[tuple[str, str], dict[str, float]]]:
    """(blocks from input to output, {(attention, projection): {block: mean of mean_column_norm}})."""
    blocks = sorted(dict.fromkeys(r["block"] for r in rows), key=_u_order)
    sums: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        sums[(r["attention"], r["projection"])][r["block"]].append(r["mean_column_norm"])
    return blocks, {key: {b: sum(v) / len(v) for b, v in by_block.items()} for key, by_block in sums.items()}


def markdown_table(blocks: list[str], series: dict) -> str:
    lines = ["| attention | projection | " + " | ".join(blocks) + " |", "| --- | --- |" + " ---: |" * len(blocks)]
    for (attention, projection), values in series.items():
        lines.append(
            f"| {attention} | {projection} | "
            + " | ".join(f"{values[b]:.3f}" if b in values else "–" for b in blocks)
            + " |"
        )
    return "\n".join(lines)


def rows_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def plot(blocks: list[str], series: dict, title: str, path: Path) -> Path:
    plt = pyplot()
    colors = dict(zip(PROJECTIONS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(blocks) + 2), 4.2))
    x = range(len(blocks))
    for (attention, projection), values in series.items():
        ax.plot(
            [i for i, b in zip(x, blocks) if b in values],
            [values[b] for b in blocks if b in values],
            marker="o",
            color=colors[projection],
            linestyle="-" if attention == "self" else "--",
            label=f"{attention}-attn {projection}",
        )
    ax.set_xticks(list(x))
    ax.set_xticklabels(blocks, rotation=30, ha="right")
    ax.set_ylabel("mean column norm  mean_j ‖W[:, j]‖")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_png(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="ID_OR_PATH",
        help="diffusers pipeline folder or hub id (its unet/), or a UNet folder",
    )
    parser.add_argument("--revision", help="hub revision")
    parser.add_argument("--variant", help="weight variant, e.g. fp16")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/norms/attention_column_norms.png"),
        help="PNG to write; the per-layer CSV goes beside it (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    from ..models.loading import load_unet

    try:
        unet = load_unet(args.model, revision=args.revision, variant=args.variant)
    except OSError as exc:
        parser.error(str(exc))
    rows = column_norms(unet)
    if not rows:
        parser.error(f"{args.model}: the UNet has no attention projections (to_q/to_k/to_v/to_out.0)")
    blocks, series = per_block(rows)
    plot(blocks, series, f"Attention projections of {args.model}", args.out)
    atomic_write_text(args.out.with_suffix(".csv"), rows_csv(rows))
    print(markdown_table(blocks, series))
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
