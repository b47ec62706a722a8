"""Results of ``delora-eval semantic`` as CSV (summary, per class, per image), markdown, and a per-class plot;
several runs side by side (``delora-eval compare``).

The JSON file is ``fileio.write_json_atomic``'s, like the DreamBooth evaluator's.
"""

from __future__ import annotations

from pathlib import Path

from ..plotting import labelled_scatter, pyplot, save_png
from .errors import EvaluationInputError
from .report import _fmt, write_table_csv

CSV_COLUMNS = (
    "level",
    "map",
    "seed",
    "file",
    "class_id",
    "class_name",
    "iou",
    "acc",
    "gt_pixels",
    "pred_pixels",
    "tp_pixels",
    "pixel_accuracy",
    "valid_pixels",
    "mIoU",
    "mAcc",
    "aAcc",
    "fid",
    "n_images",
)


def csv_rows(results: dict) -> list[dict]:
    """The summary row, then one row per class present in the ground truth or the predictions, then per image."""
    summary = {"level": "summary", "n_images": results["counts"]["scored_images"], **results["summary"]}
    rows = [summary]
    segmentation = results["segmentation"]
    if segmentation:
        for row in segmentation["per_class"]:
            if row["gt_pixels"] or row["pred_pixels"]:
                rows.append(
                    {
                        "level": "class",
                        "class_id": row["id"],
                        "class_name": row["name"],
                        **{k: row[k] for k in ("iou", "acc", "gt_pixels", "pred_pixels", "tp_pixels")},
                    }
                )
        rows += [{"level": "image", **row} for row in segmentation["per_image"]]
    return [{column: row.get(column) for column in CSV_COLUMNS} for row in rows]


def write_csv(results: dict, path: Path) -> Path:
    return write_table_csv(csv_rows(results), CSV_COLUMNS, path)


def markdown_summary(results: dict, top: int = 10) -> str:
    """Header naming the models, the summary table, and the ``top`` most frequent ground-truth classes."""
    counts, summary, segmentation, fid = results["counts"], results["summary"], results["segmentation"], results["fid"]
    parts = [
        f"{counts['scored_images']} images of {counts['maps']} maps scored, {counts['black_skipped']} black skipped"
    ]
    if segmentation:
        parts.append(f"segmentation `{segmentation['model']['spec']}`, palette {segmentation['palette']}")
    if fid:
        parts.append(f"FID features `{fid['extractor']['spec']}` vs {fid['n_real']} real images")
    lines = [
        f"**{results['name']}** — " + "; ".join(parts),
        "",
        "| run | mIoU | mAcc | aAcc | FID |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| {results['name']} | {_fmt(summary['mIoU'])} | {_fmt(summary['mAcc'])} | {_fmt(summary['aAcc'])} | "
        f"{_fmt(summary['fid'], 2)} |",
    ]
    if segmentation:
        present = sorted(
            (row for row in segmentation["per_class"] if row["gt_pixels"]), key=lambda row: -row["gt_pixels"]
        )[:top]
        lines += [
            "",
            f"Most frequent ground-truth classes ({segmentation['classes_with_acc']} present, "
            f"{segmentation['ignored_pixels']} pixels ignored):",
            "",
            "| class | ground-truth pixels | IoU | Acc |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {row['name']} | {row['gt_pixels']} | {_fmt(row['iou'])} | {_fmt(row['acc'])} |" for row in present
        ]
    return "\n".join(lines)


def plot_run(results: dict, path: Path) -> Path:
    """IoU and accuracy of every class present in the ground truth (most frequent first), means dashed."""
    plt = pyplot()
    segmentation = results["segmentation"]
    rows = sorted(
        (row for row in (segmentation or {}).get("per_class", []) if row["gt_pixels"]),
        key=lambda row: -row["gt_pixels"],
    )
    names = [row["name"] for row in rows]
    figure, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.3 * len(names) + 2), 7), sharex=True)
    for axis, key, mean_key, title in ((axes[0], "iou", "mIoU", "IoU"), (axes[1], "acc", "mAcc", "Acc")):
        axis.bar(
            range(len(names)), [row[key] if row[key] is not None else float("nan") for row in rows], color="#4c72b0"
        )
        mean = results["summary"][mean_key]
        if mean is not None:
            axis.axhline(mean, color="#c44e52", linestyle="--", label=f"{mean_key} {mean:.3f}")
            axis.legend(loc="upper right", fontsize=8)
        axis.set_ylabel(title)
        axis.set_ylim(0, 1)
    axes[-1].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    fid = results["summary"]["fid"]
    axes[0].set_title(
        f"{results['name']}: per-class segmentation consistency" + (f" (FID {fid:.2f})" if fid is not None else "")
    )
    figure.tight_layout()
    return save_png(figure, path)


def _identity(results: dict) -> tuple:
    segmentation, fid = results["segmentation"] or {}, results["fid"] or {}
    model = segmentation.get("model", {})
    return (
        model.get("spec"),
        model.get("fingerprint"),
        segmentation.get("palette"),
        (fid.get("extractor") or {}).get("spec"),
    )


def check_comparable(runs: list[tuple[str, dict]]) -> None:
    """Runs scored with another segmentation model, palette or FID extractor are not comparable."""
    first_name, first = runs[0]
    for name, results in runs[1:]:
        if _identity(results) != _identity(first):
            model, fingerprint, palette, fid = _identity(results)
            model0, fingerprint0, palette0, fid0 = _identity(first)
            raise EvaluationInputError(
                f"{name} was scored with segmentation model {model!r} ({fingerprint}), palette {palette!r}, FID "
                f"features {fid!r}; {first_name} with {model0!r} ({fingerprint0}), {palette0!r}, {fid0!r}: not "
                "comparable (pass --allow_mixed to show anyway)"
            )


def compare_table(runs: list[tuple[str, dict]], per_subject: bool = False) -> str:
    """Side-by-side markdown table; ``per_subject``: also the IoU of every class present in any run."""
    lines = ["| run | images | black | mIoU | mAcc | aAcc | FID |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, results in runs:
        summary, counts = results["summary"], results["counts"]
        lines.append(
            f"| {name} | {counts['scored_images']} | {counts['black_skipped']} | {_fmt(summary['mIoU'])} | "
            f"{_fmt(summary['mAcc'])} | {_fmt(summary['aAcc'])} | {_fmt(summary['fid'], 2)} |"
        )
    if per_subject:
        by_run = [
            {row["name"]: row for row in (results["segmentation"] or {}).get("per_class", [])} for _, results in runs
        ]
        present = sorted({name for rows in by_run for name, row in rows.items() if row["gt_pixels"]})
        lines += [
            "",
            "IoU per class:",
            "",
            "| class | " + " | ".join(name for name, _ in runs) + " |",
            "| --- |" + " ---: |" * len(runs),
        ]
        for cls in present:
            lines.append(
                f"| {cls} | " + " | ".join(_fmt(rows[cls]["iou"]) if cls in rows else "" for rows in by_run) + " |"
            )
    return "\n".join(lines)


def plot_compare(runs: list[tuple[str, dict]], path: Path) -> Path:
    """mIoU (following the map) against FID (image quality), one labelled point per run."""
    points = [
        (name, r["summary"]["fid"], r["summary"]["mIoU"])
        for name, r in runs
        if r["summary"]["mIoU"] is not None and r["summary"]["fid"] is not None
    ]
    return labelled_scatter(points, "FID (lower is better)", "mIoU", path)
