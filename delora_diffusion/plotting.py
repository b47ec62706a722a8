"""Matplotlib without a display, and figures written atomically as PNG (every report's plots use these)."""

from __future__ import annotations

from pathlib import Path

from .fileio import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: imported on first use, so the CLIs start fast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: Path | str, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` (temp + rename) and close it; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    return path


def labelled_scatter(
    points: list[tuple[str, float, float]], xlabel: str, ylabel: str, path: Path | str, title: str | None = None
) -> Path:
    """One labelled dot per (label, x, y), e.g. a run per method; written as PNG to ``path``."""
    figure, axis = pyplot().subplots(figsize=(6, 5))
    for label, x, y in points:
        axis.scatter(x, y, s=40)
        axis.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return save_png(figure, path)
