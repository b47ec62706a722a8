"""Sampling schedulers by short name, each built from the pipeline's own scheduler config.

Building from the pipeline's config keeps the model's noise schedule (betas, prediction type,
timestep spacing) and swaps only the solver.
"""

from __future__ import annotations

# name -> (diffusers class name, extra config overrides)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "pipeline": ("", {}),  # keep whatever the checkpoint ships with
}
DEFAULT_SCHEDULER = "dpmsolver++"


def set_scheduler(pipe, name: str = DEFAULT_SCHEDULER) -> None:
    """Replace ``pipe.scheduler`` by the named solver (``pipeline`` leaves it as loaded)."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    class_name, overrides = SCHEDULERS[name]
    if class_name:
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **overrides)
