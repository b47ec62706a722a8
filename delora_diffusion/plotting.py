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
