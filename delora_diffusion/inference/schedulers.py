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


def set_scheduler(pipe, name: str = DEFAULT_SCHEDULER, zero_terminal_snr: bool = False) -> None:
    """Replace ``pipe.scheduler`` by the named solver (``pipeline`` leaves it as loaded). ``zero_terminal_snr``
    (or a schedule already rescaled so) samples a zero-terminal-SNR model as Lin et al. (2024) prescribe:
    betas rescaled to reach SNR 0 at the last step, timesteps spaced from it ("trailing")."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    class_name, overrides = SCHEDULERS[name]
    zero_snr = zero_terminal_snr or bool(pipe.scheduler.config.get("rescale_betas_zero_snr", False))
    if zero_snr:
        overrides = {**overrides, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
    if class_name or zero_snr:
        scheduler_class = getattr(diffusers, class_name) if class_name else type(pipe.scheduler)
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **overrides)
    if zero_snr and not pipe.scheduler.config.get("rescale_betas_zero_snr", False):
        raise ValueError(
            f"scheduler {name} ({type(pipe.scheduler).__name__}) cannot rescale its betas to zero "
            "terminal SNR; use dpmsolver++, ddim or euler"
        )
