"""The sweep report's figures (matplotlib, PNG): distance and metrics against LR factor and step, image grids."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..adapters import METHOD_TABLE
from ..evaluation.report import METRIC_TITLES
from ..plotting import pyplot, save_png
from .evaluate import FINAL, METRIC_KEYS, reported_eval_step

METHOD_COLORS = {
    "delora": "tab:blue",
    "lora": "tab:red",
    "dora": "tab:orange",
    "ether": "tab:purple",
    "etherplus": "tab:green",
}
METHOD_LABELS = {name: row.label for name, row in METHOD_TABLE.items()}


def _by_method_factor(results: list[dict], value) -> dict[str, dict[float, list[float]]]:
    table: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.get("status") == "done":
            v = value(r)
            if v is not None:
                table[r["method"]][r["lr_factor"]].append(v)
    return table


def _factor_axis(ax, factors: list[float]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(factors)
    ax.set_xticklabels([f"×{f:g}" for f in factors])
    ax.set_xlabel("learning-rate factor (× the method's base rate)")
    ax.grid(True, which="major", alpha=0.3)


def _line(ax, table: dict[float, list[float]], **style) -> None:
    factors = sorted(table)
    means = [sum(table[f]) / len(table[f]) for f in factors]
    low = [m - min(table[f]) for f, m in zip(factors, means)]
    high = [max(table[f]) - m for f, m in zip(factors, means)]
    ax.errorbar(factors, means, yerr=[low, high] if any(low + high) else None, capsize=3, **style)


def distance_vs_lr(info: dict, results: list[dict], path: Path) -> Path | None:
    """Paper Fig. 2 (right): final ‖W_ft − W_0‖_F per method against the LR factor, DeLoRA's bound dashed."""
    distances = _by_method_factor(results, lambda r: r.get("distance"))
    if not distances:
        return None
    bounds = _by_method_factor(results, lambda r: r.get("bound"))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for method in info["methods"]:
        if method not in distances:
            continue
        color, label = METHOD_COLORS.get(method), METHOD_LABELS.get(method, method)
        _line(ax, distances[method], color=color, marker="o", label=label)
        if method in bounds:
            _line(
                ax, bounds[method], color=color, linestyle="--", marker=None, label=f"{label} bound 2|λ|·max‖W[:, j]‖"
            )
    ax.set_yscale("log")
    _factor_axis(ax, info["lr_factors"])
    ax.set_ylabel("‖W_ft − W_0‖_F (sum over layers)")
    steps = sorted({r.get("steps") for r in results if r.get("status") == "done"})
    ax.set_title(f"Weight distance after {'/'.join(map(str, steps))} steps")
    ax.legend(fontsize=8)
    return save_png(fig, path, dpi=110)


def metric_vs_lr(info: dict, results: list[dict], path: Path) -> Path | None:
    """Paper Fig. 2 (left): DreamBooth metrics per method against the LR factor."""
    tables = {k: _by_method_factor(results, lambda r, k=k: _score(r, k)) for k in METRIC_KEYS}
    tables = {k: t for k, t in tables.items() if t}
    if not tables:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tables), figsize=(4.4 * len(tables), 3.8), squeeze=False, layout="constrained")
    for ax, (metric, table) in zip(axes[0], tables.items()):
        for method in info["methods"]:
            if method in table:
                _line(
                    ax,
                    table[method],
                    color=METHOD_COLORS.get(method),
                    marker="o",
                    label=METHOD_LABELS.get(method, method),
                )
        _factor_axis(ax, info["lr_factors"])
        ax.set_ylabel(METRIC_TITLES[metric])
    axes[0][0].legend(fontsize=8)
    fig.suptitle("DreamBooth metrics against the learning rate")
    return save_png(fig, path, dpi=110)


def _score(result: dict, metric: str) -> float | None:
    step = reported_eval_step(result)
    return result["evaluations"][step].get(metric) if step else None


def distance_vs_step(info: dict, results: list[dict], path: Path) -> Path | None:
    """Paper Fig. 3 (prolonged mode): ‖W_ft − W_0‖_F against the step, one panel per method, a curve per
    LR factor (first seed), DeLoRA's bound dashed."""
    done = [r for r in results if r.get("status") == "done" and r.get("curve")]
    if not done:
        return None
    first_seed = min(r["seed"] for r in done)
    methods = [m for m in info["methods"] if any(r["method"] == m for r in done)]
    plt = pyplot()
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    factors = info["lr_factors"]
    fig, axes = plt.subplots(
        1, len(methods), figsize=(4.4 * len(methods), 3.8), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, method in zip(axes[0], methods):
        for r in (r for r in done if r["method"] == method and r["seed"] == first_seed):
            # viridis without its last, pale-yellow stretch: the largest factor stays visible on white
            color = (
                cmap(0.85 * factors.index(r["lr_factor"]) / max(1, len(factors) - 1))
                if len(factors) > 1
                else "tab:blue"
            )
            steps = [c["step"] for c in r["curve"]]
            ax.plot(steps, [c["total"] for c in r["curve"]], color=color, linewidth=1.8, label=f"×{r['lr_factor']:g}")
            bound = [c.get("bound_total") for c in r["curve"]]
            if all(b is not None for b in bound):
                ax.plot(steps, bound, color=color, linestyle="--", linewidth=1.4)
        ax.set_title(METHOD_LABELS.get(method, method) + (" (dashed: bound)" if METHOD_TABLE[method].strength else ""))
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, title="LR factor", title_fontsize=7)
    axes[0][0].set_ylabel("‖W_ft − W_0‖_F (sum over layers)")
    return save_png(fig, path, dpi=110)


def metric_vs_step(info: dict, results: list[dict], path: Path) -> Path | None:
    """Metrics at each evaluated checkpoint (prolonged mode), per method and factor (first seed)."""
    series = defaultdict(dict)  # (method, factor) -> {step: scores}
    for r in results:
        evaluations = {k: v for k, v in (r.get("evaluations") or {}).items() if "error" not in v}
        numbered = {int(k): v for k, v in evaluations.items() if k != FINAL}
        if FINAL in evaluations and r.get("steps"):
            numbered.setdefault(int(r["steps"]), evaluations[FINAL])
        if len(numbered) > 1 and r.get("seed") == min(x.get("seed", 0) for x in results):
            series[(r["method"], r["lr_factor"])] = numbered
    if not series:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(METRIC_KEYS), figsize=(4.4 * len(METRIC_KEYS), 3.8), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes[0], METRIC_KEYS):
        for (method, factor), points in series.items():
            steps = sorted(points)
            ax.plot(
                steps,
                [points[s].get(metric) for s in steps],
                marker="o",
                color=METHOD_COLORS.get(method),
                label=f"{METHOD_LABELS.get(method, method)} ×{factor:g}",
            )
        ax.set_xlabel("step")
        ax.set_ylabel(METRIC_TITLES[metric])
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return save_png(fig, path, dpi=110)


def _point_image(sweep_dir: Path, result: dict):
    """The point's final validation grid, else its first evaluated images side by side; None if neither."""
    from PIL import Image

    folder = sweep_dir / result["point"]
    grids = sorted((folder / "validation").glob("step-*.png"))
    if grids:
        return Image.open(grids[-1]).convert("RGB")
    step = reported_eval_step(result)
    if step:
        images = sorted((folder / "eval" / step / "images").rglob("*.png"))[:4]
        if images:
            from diffusers.utils import make_image_grid

            return make_image_grid([Image.open(p).convert("RGB") for p in images], rows=1, cols=len(images))
    return None


def image_grid(sweep_dir: Path, info: dict, results: list[dict], path: Path) -> Path | None:
    """One row per LR factor, one column per method (first seed): each run's final validation grid (or its
    first evaluated images), so the same prompt and seed are compared across methods and learning rates."""
    done = [r for r in results if r.get("status") == "done"]
    if not done:
        return None
    first_seed = min(r["seed"] for r in done)
    cells = {(r["method"], r["lr_factor"]): _point_image(sweep_dir, r) for r in done if r["seed"] == first_seed}
    cells = {key: image for key, image in cells.items() if image is not None}
    if not cells:
        return None
    methods = [m for m in info["methods"] if any(key[0] == m for key in cells)]
    factors = [f for f in info["lr_factors"] if any(key[1] == f for key in cells)]
    plt = pyplot()
    fig, axes = plt.subplots(
        len(factors),
        len(methods),
        figsize=(2.2 * len(methods) + 0.6, 2.2 * len(factors)),
        squeeze=False,
        layout="constrained",
    )
    for i, factor in enumerate(factors):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if (method, factor) in cells:
                ax.imshow(cells[(method, factor)])
            else:
                ax.set_frame_on(False)
            if i == 0:
                ax.set_title(METHOD_LABELS.get(method, method))
            if j == 0:
                ax.set_ylabel(f"×{factor:g}", rotation=0, labelpad=20, va="center")
    fig.suptitle("Final validation images per learning-rate factor")
    return save_png(fig, path, dpi=110)


def write_plots(sweep_dir: Path, info: dict, results: list[dict], out_dir: Path) -> list[Path]:
    figures = [
        distance_vs_lr(info, results, out_dir / "distance_vs_lr.png"),
        metric_vs_lr(info, results, out_dir / "metric_vs_lr.png"),
        distance_vs_step(info, results, out_dir / "distance_vs_step.png"),
        metric_vs_step(info, results, out_dir / "metric_vs_step.png"),
        image_grid(sweep_dir, info, results, out_dir / "image_grid.png"),
    ]
    return [p for p in figures if p is not None]
