"""Helpers for tests that run the trainer in-process."""

from __future__ import annotations


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next run can build its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
