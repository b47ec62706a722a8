"""What one finished trainer run measured, read from its folder: the weight-distance curve, λ, the bound.

Sources: ``metrics.jsonl`` (every logged step; ``weight_distance/*`` and ``lambda/<layer>`` at the
weight-distance steps) and ``adapter.safetensors`` (final λ per layer, and for DeLoRA the column
norms w_j = ‖W[:, j]‖ of the pretrained weights).

DeLoRA's bound ‖W_ft − W_0‖_F ≤ c·|λ|·max_j w_j per layer comes from ``adapters/delora.py``
(``bound_coefficient``).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..adapters import METHOD_TABLE, read_adapter
from ..adapters.delora import bound_coefficient
from ..training.metrics import read_metrics
from ..training.run_files import ADAPTER_FILE, METRICS_FILE

DISTANCE_PREFIX = "weight_distance/"
LAMBDA_PREFIX = "lambda/"
RUN_LEVEL_LAMBDA = ("lambda/mean", "lambda/min", "lambda/max")


def bound_coefficients(adapter_path: Path) -> dict[str, float]:
    """DeLoRA only: per layer, c·max_j w_j, so that the layer's bound is |λ| times it. Empty otherwise."""
    stored = read_adapter(adapter_path)
    if not METHOD_TABLE[stored.config.method].strength:
        return {}
    return {layer: bound_coefficient(tensors, stored.config.init) for layer, tensors in stored.layers.items()}


def final_lambdas(adapter_path: Path) -> dict[str, float]:
    """λ per layer of a DeLoRA adapter file; empty for other methods."""
    stored = read_adapter(adapter_path)
    return {
        layer: float(tensors["delora_lambda"].flatten()[0])
        for layer, tensors in stored.layers.items()
        if "delora_lambda" in tensors
    }


def distance_curve(records: list[dict], coefficients: dict[str, float]) -> list[dict]:
    """One entry per step that logged the weight distance: ``{"step", "total", "layers", "lambda",
    "bound_total"}`` (``bound_total`` = Σ_l c·|λ_l(step)|·max_j w_j, DeLoRA only, else None)."""
    curve = []
    for record in records:
        total = record.get(DISTANCE_PREFIX + "total")
        if total is None:
            continue
        layers = {
            k[len(DISTANCE_PREFIX) :]: v
            for k, v in record.items()
            if k.startswith(DISTANCE_PREFIX) and k != DISTANCE_PREFIX + "total"
        }
        lambdas = {
            k[len(LAMBDA_PREFIX) :]: v
            for k, v in record.items()
            if k.startswith(LAMBDA_PREFIX) and k not in RUN_LEVEL_LAMBDA
        }
        bound = None
        if coefficients and set(coefficients) <= set(lambdas):
            bound = sum(coefficients[layer] * abs(lambdas[layer]) for layer in coefficients)
        curve.append(
            {"step": record["step"], "total": total, "layers": layers, "lambda": lambdas, "bound_total": bound}
        )
    return curve


def _mean_tail(values: list[float], fraction: float = 0.1) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    tail = values[-max(1, int(len(values) * fraction)) :]
    return sum(tail) / len(tail)


def collect_run(run_dir: Path) -> dict:
    """The measurements of a finished run folder (raises ``FileNotFoundError``/``ValueError`` if incomplete)."""
    run_dir = Path(run_dir)
    adapter_path = run_dir / ADAPTER_FILE
    if not adapter_path.is_file():
        raise FileNotFoundError(f"{adapter_path}: the run wrote no adapter")
    records = read_metrics(run_dir / METRICS_FILE)
    if not records:
        raise ValueError(f"{run_dir / METRICS_FILE}: no logged steps")
    coefficients = bound_coefficients(adapter_path)
    curve = distance_curve(records, coefficients)
    if not curve:
        raise ValueError(f"{run_dir / METRICS_FILE}: no weight distance was logged")
    lambdas = final_lambdas(adapter_path)
    layer_bounds = {layer: coefficients[layer] * abs(lambdas[layer]) for layer in coefficients}
    final = curve[-1]
    return {
        "steps": records[-1]["step"],
        "final_loss": _mean_tail([r.get("loss") for r in records]),  # mean of the last 10% of steps
        "distance": final["total"],
        "distance_layers": final["layers"],
        "lambda": lambdas,
        "bound": sum(layer_bounds.values()) if layer_bounds else None,
        "bound_layers": layer_bounds or None,
        "curve": curve,
    }
