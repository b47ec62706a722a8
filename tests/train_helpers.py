"""Helpers for tests that run the trainer in-process."""

from __future__ import annotations


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next run can build its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def grid_cell(grid_path, row: int, column: int, size: int):
    """Image (row, column) of a validation grid (``captioned_grid``), back at its ``size`` pixels, and whether
    the row's caption band holds text (any non-white pixel)."""
    from PIL import Image

    from delora_diffusion.inference.contact_sheet import grid_layout

    side, band = grid_layout(size)
    grid = Image.open(grid_path).convert("RGB")
    top = row * (band + side)
    caption = grid.crop((0, top, grid.width, top + band))
    cell = grid.crop((column * side, top + band, (column + 1) * side, top + band + side))
    return cell.resize((size, size), Image.Resampling.NEAREST), caption.getextrema() != ((255, 255),) * 3
