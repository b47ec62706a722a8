"""Sampling under a control module (hint encoder or ControlNet) stored in an adapter file.

What ``generate.py semantic`` and ``train_semantic.py``'s validation both run: the pipeline that samples
under the control, the conditioning maps as a tensor, and one call that renders (map, prompt, seed)
triples. The control reaches both classifier-free-guidance branches. Defaults: ``defaults.SEMANTIC``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..adapters.io import read_adapter_metadata
from ..models.control import ControlFileError, load_control, residuals_as
from ..models.hint_encoder import inject_hint
from .defaults import SEMANTIC
from .pipeline import apply_adapter, load_pipeline
from .sampling import Samples, sample_images


def control_pipeline(pipe, kind: str, control):
    """The pipeline that samples under ``control``: ``pipe`` itself for the hint encoder (its features
    reach the UNet through a hook), diffusers' ControlNet pipeline sharing ``pipe``'s modules otherwise."""
    if kind == "hint":
        return pipe
    from diffusers import StableDiffusionControlNetPipeline

    # Built from the modules as they are: ``from_pipe`` would recast every module (the adapter's fp32
    # parameters included) to one dtype.
    controlled = StableDiffusionControlNetPipeline(
        **pipe.components,
        controlnet=control,
        requires_safety_checker=bool(getattr(pipe.config, "requires_safety_checker", False)),
    )
    controlled.set_progress_bar_config(disable=True)
    return controlled


def maps_tensor(maps: list[Image.Image]) -> torch.Tensor:
    """PIL colour maps of one size → (B, 3, H, W) float32 in [0, 1]."""
    arrays = np.stack([np.asarray(m.convert("RGB"), dtype=np.uint8) for m in maps])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(255.0)


@torch.no_grad()
def sample_semantic(
    pipe,
    kind: str,
    control,
    maps: list[Image.Image],
    prompts: list[str],
    seeds: list[int],
    *,
    control_scale: float = 1.0,
    negative_prompt: str | None = None,
    num_inference_steps: int = SEMANTIC.steps,
    guidance_scale: float = SEMANTIC.guidance,
    height: int | None = None,
    width: int | None = None,
) -> Samples:
    """One image per (map, prompt, seed); ``maps`` are colour maps already at the output size.

    ``pipe`` is ``control_pipeline(...)``'s; ``control`` the module of the adapter file (``load_control``).
    """
    if not (len(maps) == len(prompts) == len(seeds)):
        raise ValueError(f"{len(maps)} maps, {len(prompts)} prompts, {len(seeds)} seeds: one of each per image")
    common = dict(
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
    )
    if kind == "hint":
        parameter = next(control.parameters())
        features = control(maps_tensor(maps).to(parameter.device, parameter.dtype)) * control_scale
        with inject_hint(pipe.unet, features):
            return sample_images(pipe, prompts, seeds, **common)
    with residuals_as(control, pipe.unet.dtype):
        return sample_images(
            pipe, prompts, seeds, image=list(maps), controlnet_conditioning_scale=control_scale, **common
        )


def _control_entry(path: str) -> dict:
    """The ``control`` metadata of an adapter file, read from its header only (ControlNet files are large)."""
    entry = read_adapter_metadata(path).get("extra", {}).get("control")
    if not isinstance(entry, dict):
        raise ControlFileError(
            f"--adapter_file {path} holds no semantic-map control module (train it with "
            "train_semantic.py; DreamBooth adapters go with generate.py dreambooth)"
        )
    return entry


def load_semantic_pipeline(
    pretrained_model_name_or_path: str,
    adapter: str,
    *,
    scale: float = 1.0,
    merge: bool = False,
    dtype="auto",
    device="auto",
    scheduler: str = SEMANTIC.scheduler,
    safety_checker: bool = True,
    revision: str | None = None,
    variant: str | None = None,
    zero_terminal_snr: bool = False,
    single_file_config: str | None = None,
):
    """(pipeline, kind, control module, LoadedAdapter): the base pipeline with the adapter on its UNet and
    the file's control module on the same device (the ControlNet in the pipeline's dtype, the hint encoder
    in float32), ready for ``sample_semantic``."""
    _control_entry(adapter)
    pipe = load_pipeline(
        pretrained_model_name_or_path,
        revision=revision,
        variant=variant,
        dtype=dtype,
        device=device,
        scheduler=scheduler,
        safety_checker=safety_checker,
        zero_terminal_snr=zero_terminal_snr,
        single_file_config=single_file_config,
    )
    loaded = apply_adapter(pipe, adapter, scale=scale, merge=merge, base_model=str(pretrained_model_name_or_path))
    kind, control = load_control(loaded.file)
    dtype = pipe.unet.dtype if kind == "controlnet" else torch.float32
    control.to(pipe.unet.device)
    if next(control.parameters()).dtype != dtype:
        control.to(dtype=dtype)
    return control_pipeline(pipe, kind, control), kind, control, loaded
