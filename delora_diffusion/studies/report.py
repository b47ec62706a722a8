"""``delora-sweep report SWEEP_DIR``: summary tables (markdown, CSV) and plots of a sweep's finished points.

Reads ``SWEEP/sweep.json`` and every ``SWEEP/<point>/result.json``; writes ``SWEEP/report/``:
``summary.md``, ``summary.csv``, ``distance_vs_lr.png`` (paper Fig. 2 right), ``metric_vs_lr.png`` when
points were evaluated (Fig. 2 left), ``distance_vs_step.png`` (Fig. 3 in prolonged mode),
``metric_vs_step.png`` when several checkpoints were evaluated, and ``image_grid.png`` (each run's
images, a row per learning-rate factor and a column per method). Works on a sweep that is still running: it reports what has finished.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from ..errors import UserError
from ..evaluation.report import METRIC_TITLES
from ..fileio import atomic_write_text
from . import plots
from .evaluate import METRIC_KEYS, reported_eval_step
from .points import RESULT_FILE

PROG = "delora-sweep report"
CSV_COLUMNS = (
    "point",
    "method",
    "lr_factor",
    "learning_rate",
    "lambda_learning_rate",
    "seed",
    "status",
    "steps",
    "distance",
    "bound",
    "lambda_mean",
    "final_loss",
    "wall_seconds",
    "eval_step",
    *METRIC_KEYS,
    "error",
)


class ReportError(UserError):
    """A folder that is not a sweep, or holds no results; the message names it."""


def load_sweep(sweep_dir: Path) -> tuple[dict, list[dict]]:
    """(``sweep.json`` content, the results of its points in grid order; points never started are left out)."""
    sweep_dir = Path(sweep_dir)
    info_path = sweep_dir / "sweep.json"
    if not info_path.is_file():
        raise ReportError(f"{sweep_dir}: not a sweep folder (no sweep.json; run delora-sweep --output_dir {sweep_dir})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    results = []
    for name in info["points"]:
        path = sweep_dir / name / RESULT_FILE
        if path.is_file():
            results.append(json.loads(path.read_text(encoding="utf-8")))
    if not results:
        raise ReportError(f"{sweep_dir}: no point has started yet")
    return info, results


def csv_row(result: dict) -> dict:
    lambdas = list((result.get("lambda") or {}).values())
    step = reported_eval_step(result)
    scores = result["evaluations"][step] if step else {}
    row = {key: result.get(key) for key in CSV_COLUMNS}
    row.update(
        lambda_mean=sum(lambdas) / len(lambdas) if lambdas else None,
        eval_step=step,
        **{k: scores.get(k) for k in METRIC_KEYS},
    )
    return row


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def distance_table(info: dict, results: list[dict]) -> dict[str, dict[float, list[float]]]:
    """method → LR factor → final distances of the finished seeds."""
    table: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.get("status") == "done":
            table[r["method"]][r["lr_factor"]].append(r["distance"])
    return table


def summary_markdown(info: dict, results: list[dict]) -> str:
    factors = info["lr_factors"]
    table = distance_table(info, results)
    bounds: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.get("status") == "done" and r.get("bound") is not None:
            bounds[r["method"]][r["lr_factor"]].append(r["bound"])
    done = sum(r.get("status") == "done" for r in results)
    lines = [
        f"## Sweep: {info['mode']} mode, {done} of {len(info['points'])} points finished",
        "",
        "Final ‖W_ft − W_0‖_F summed over adapted layers (mean over seeds), per method and learning-rate factor "
        "(base rates: " + ", ".join(f"{m} {lr:g}" for m, lr in info["base_learning_rates"].items()) + ").",
        "",
        "| method | " + " | ".join(f"×{f:g}" for f in factors) + " |",
        "| --- |" + " ---: |" * len(factors),
    ]
    for method in info["methods"]:
        cells = [_fmt(_mean(table[method].get(f))) for f in factors]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
        if method in bounds:
            cells = [_fmt(_mean(bounds[method].get(f))) for f in factors]
            lines.append(f"| {method} bound Σ c·abs(λ)·max‖W[:, j]‖ | " + " | ".join(cells) + " |")
    if bounds:
        lines += [
            "",
            "Bound: Σ over layers of c·|λ|·max_j ‖W[:, j]‖ (DeLoRA; c = 2 with the residual init, 1 with "
            "zero_b), with the final λ of each layer.",
        ]
    lines += [
        "",
        "| point | lr | steps | ‖W_ft − W_0‖_F | bound | mean λ | final loss | "
        + " | ".join(METRIC_TITLES[k] for k in METRIC_KEYS)
        + " | wall s | status |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | " + "---: | " * len(METRIC_KEYS) + "---: | --- |",
    ]
    for r in results:
        row = csv_row(r)
        status = r.get("status", "?") if r.get("status") == "done" else f"{r.get('status')}: {r.get('error', '')}"
        lines.append(
            f"| {r['point']} | {_fmt(row['learning_rate'], '.3g')} | {_fmt(row['steps'])} | "
            f"{_fmt(row['distance'])} | {_fmt(row['bound'])} | {_fmt(row['lambda_mean'])} | "
            f"{_fmt(row['final_loss'])} | "
            + " | ".join(_fmt(row[k], ".4f") for k in METRIC_KEYS)
            + f" | {_fmt(row['wall_seconds'], '.0f')} | {status.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def summary_csv(results: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: ("" if v is None else v) for k, v in csv_row(r).items()})
    return buffer.getvalue()


def write_report(sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write the tables and plots; returns the files written."""
    sweep_dir = Path(sweep_dir)
    info, results = load_sweep(sweep_dir)
    out_dir = Path(out_dir) if out_dir else sweep_dir / "report"
    written = []
    for name, text in (("summary.md", summary_markdown(info, results)), ("summary.csv", summary_csv(results))):
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    written += plots.write_plots(sweep_dir, info, results, out_dir)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("sweep_dir", type=Path, help="the folder given to delora-sweep as --output_dir")
    parser.add_argument("--out", type=Path, help="report folder (default: SWEEP_DIR/report)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.sweep_dir, args.out)
    except (ReportError, OSError, json.JSONDecodeError) as exc:
        parser.error(str(exc))
    print((args.out or args.sweep_dir / "report").joinpath("summary.md").read_text(encoding="utf-8"))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
