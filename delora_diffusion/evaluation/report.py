"""Results files and tables: JSON (everything), CSV (one row per prompt, subject and summary), markdown, plots."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..fileio import atomic_write_text
from ..plotting import labelled_scatter, pyplot, save_png
from .errors import EvaluationInputError
from .protocols import DREAMBOOTH_METRICS as METRICS
from .protocols import DREAMBOOTH_RESULTS_FORMAT as RESULTS_FORMAT

METRIC_TITLES = {"dino": "DINO", "clip_i": "CLIP-I", "clip_t": "CLIP-T"}
CSV_COLUMNS = (
    "level",
    "subject",
    "prompt_index",
    "clip_t_prompt",
    "n_images",
    "n_black",
    "n_real",
    "n_pairs",
    *METRICS,
)
SUMMARY_LABELS = {"mean_over_subjects": "mean over subjects", "pooled": "pooled over all pairs (OFT eval.py)"}


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def read_results(path: Path, formats: tuple[str, ...] = (RESULTS_FORMAT,)) -> dict:
    """A results file written by ``delora-eval`` in one of ``formats``; anything else is an error naming the file."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationInputError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationInputError(f"{path}: not a JSON results file ({exc})") from None
    if not isinstance(results, dict) or results.get("format") not in formats:
        expected = " or ".join(repr(f) for f in formats)
        raise EvaluationInputError(f"{path}: not a delora-eval results file (expected format {expected})")
    return results


def csv_rows(results: dict) -> list[dict]:
    """Rows of the CSV: every (subject, prompt), every subject, then the two summaries; ``level`` labels them."""
    rows = [{"level": "prompt", **row} for row in results["per_prompt"]]
    rows += [{"level": "subject", **row} for row in results["per_subject"]]
    summary = results["mean_over_subjects"]
    rows.append({"level": "mean_over_subjects", "subject": f"{summary['n_subjects']} subjects", **summary})
    pooled = results["pooled"]
    rows.append(
        {
            "level": "pooled",
            "subject": "all",
            "n_images": pooled["n_images"],
            "n_pairs": pooled["n_pairs"],
            **{m: pooled[m] for m in METRICS},
        }
    )
    return [{column: row.get(column) for column in CSV_COLUMNS} for row in rows]


def write_table_csv(rows: list[dict], columns: tuple[str, ...], path: Path) -> Path:
    """Rows as CSV (floats at full precision, None empty), written atomically; returns the path."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(Path(path), buffer.getvalue())
    return Path(path)


def write_csv(results: dict, path: Path) -> Path:
    return write_table_csv(csv_rows(results), CSV_COLUMNS, path)


def markdown_summary(results: dict) -> str:
    """Per-subject table plus the two labelled summaries, with a header naming protocol and backbones."""
    backbones = results["backbones"]
    counts = results["counts"]
    lines = [
        f"**{results['name']}** — protocol `{results['protocol']}`, DINO `{backbones['dino']['spec']}`, "
        f"CLIP `{backbones['clip']['spec']}`, CLIP-T prompt {results['clip_t_prompt'].replace('_', ' ')}; "
        f"{counts['scored_images']} images scored, {counts['black_skipped']} black skipped, "
        f"{counts['real_images']} real images",
        "",
        "| subject | class | images | black | real | DINO | CLIP-I | CLIP-T |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["per_subject"]:
        lines.append(
            f"| {row['subject']} | {row['class_noun'] or ''} | {row['n_images']} | {row['n_black']} | "
            f"{row['n_real']} | " + " | ".join(_fmt(row[m]) for m in METRICS) + " |"
        )
    for key, label in SUMMARY_LABELS.items():
        summary = results[key]
        lines.append(
            f"| **{label}** | | {counts['scored_images']} | {counts['black_skipped']} | "
            f"{counts['real_images']} | " + " | ".join(f"**{_fmt(summary[m])}**" for m in METRICS) + " |"
        )
    return "\n".join(lines)


def _run_identity(results: dict) -> tuple:
    return (
        results["protocol"],
        results["backbones"]["dino"]["spec"],
        results["backbones"]["clip"]["spec"],
        results["clip_t_prompt"],
    )


def check_comparable(runs: list[tuple[str, dict]]) -> None:
    """Runs scored with different protocols, backbones or CLIP-T prompts are not comparable: error naming them."""
    first_name, first = runs[0]
    for name, results in runs[1:]:
        if _run_identity(results) != _run_identity(first):
            raise EvaluationInputError(
                f"{name} was scored with {_describe_identity(results)}, {first_name} with {_describe_identity(first)}; "
                "numbers from different protocols or backbones are not comparable (pass --allow_mixed to show anyway)"
            )


def _describe_identity(results: dict) -> str:
    protocol, dino, clip, prompt = _run_identity(results)
    return f"protocol {protocol!r}, DINO {dino!r}, CLIP {clip!r}, CLIP-T prompt {prompt!r}"


def compare_table(runs: list[tuple[str, dict]], per_subject: bool = False) -> str:
    """Side-by-side markdown table of several runs: both summaries, optionally per subject."""
    lines = [
        "| run | protocol | subjects | images | black | DINO | CLIP-I | CLIP-T | DINO (pooled) | CLIP-I (pooled) "
        "| CLIP-T (pooled) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, results in runs:
        mean, pooled, counts = results["mean_over_subjects"], results["pooled"], results["counts"]
        lines.append(
            f"| {name} | {results['protocol']} | {mean['n_subjects']} | {counts['scored_images']} | "
            f"{counts['black_skipped']} | "
            + " | ".join(_fmt(mean[m]) for m in METRICS)
            + " | "
            + " | ".join(_fmt(pooled[m]) for m in METRICS)
            + " |"
        )
    lines += [
        "",
        "DINO, CLIP-I, CLIP-T: mean over subjects. (pooled): mean over all (generated, real) pairs / all "
        "images of all subjects, as OFT's eval.py reports.",
    ]
    if per_subject:
        subjects = sorted({row["subject"] for _, results in runs for row in results["per_subject"]})
        for metric in METRICS:
            lines += [
                "",
                f"{METRIC_TITLES[metric]} per subject:",
                "",
                "| subject | " + " | ".join(name for name, _ in runs) + " |",
                "| --- |" + " ---: |" * len(runs),
            ]
            for subject in subjects:
                cells = []
                for _, results in runs:
                    row = next((r for r in results["per_subject"] if r["subject"] == subject), None)
                    cells.append(_fmt(row[metric]) if row else "")
                lines.append(f"| {subject} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_rows(results: dict) -> tuple[list[str], list[dict], dict, str]:
    """(bar labels, their rows, the row of means, what the means are) of ``plot_run``: subjects, or the
    prompts of a single subject."""
    if len(results["per_subject"]) == 1:
        rows = [row for row in results.get("per_prompt", []) if row["n_images"]]
        names = [
            f"{row['prompt_index']:02d} {row.get('clip_t_prompt') or row.get('prompt') or ''}"[:48] for row in rows
        ]
        return names, rows, results["per_subject"][0], "subject mean"
    rows = results["per_subject"]
    return [row["subject"] for row in rows], rows, results["mean_over_subjects"], "mean over subjects"


def plot_run(results: dict, path: Path) -> Path:
    """DINO, CLIP-I and CLIP-T (one panel each) per subject with the mean over subjects dashed; for a single
    subject, per prompt with the subject's mean dashed (three bars alone would compare nothing)."""
    plt = pyplot()
    names, rows, means, what = bar_rows(results)
    figure, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.35 * len(names) + 2), 8), sharex=True, layout="constrained")
    for axis, metric in zip(axes, METRICS):
        values = [row[metric] if row[metric] is not None else float("nan") for row in rows]
        axis.bar(range(len(names)), values, color="#4c72b0")
        mean = means[metric]
        if mean is not None:
            axis.axhline(mean, color="#c44e52", linestyle="--", label=f"{what} {mean:.3f}")
            axis.legend(loc="lower right", fontsize=8)
        axis.set_ylabel(METRIC_TITLES[metric])
    axes[-1].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    subject = f", {results['per_subject'][0]['subject']} per prompt" if len(results["per_subject"]) == 1 else ""
    axes[0].set_title(f"{results['name']} (protocol {results['protocol']}{subject})")
    return save_png(figure, path)


def plot_compare(runs: list[tuple[str, dict]], path: Path) -> Path:
    """DINO (subject fidelity) against CLIP-T (prompt fidelity), one labelled point per run."""
    means = [(name, results["mean_over_subjects"]) for name, results in runs]
    points = [(name, m["clip_t"], m["dino"]) for name, m in means if m["dino"] is not None and m["clip_t"] is not None]
    return labelled_scatter(
        points,
        "CLIP-T (mean over subjects)",
        "DINO (mean over subjects)",
        path,
        title=f"protocol {runs[0][1]['protocol']}",
    )
