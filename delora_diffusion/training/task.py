"""The plug-in interface between the one training loop and what a trainer trains on.

``training/loop.py`` owns everything every adapter trainer shares: loading the frozen model,
attaching the adapter, the optimizer and schedule, noise and timesteps, the diffusion loss, mixed
precision, DDP, logging, checkpoints and resume, the final adapter file. A ``TrainingTask`` supplies
the rest: its dataset, how a batch becomes clean latents plus UNet conditioning, how per-example
losses combine, and its validation images. DreamBooth is ``training/dreambooth.py``; a
semantic-map → image trainer is another subclass (a map dataset, a conditioning encoder returned by
``trainable_modules``) on the same loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, Sampler

from .components import Components


@dataclass
class RunContext:
    """What the loop hands to the task: settings, the accelerator and the frozen components."""

    args: argparse.Namespace
    accelerator: object  # accelerate.Accelerator
    components: Components
    weight_dtype: torch.dtype
    output_dir: Path
    notes: list[str] = field(default_factory=list)  # lines for the final summary and the model card
    # The task's trainable_modules() after accelerator.prepare (DDP-wrapped when distributed):
    # model_inputs must call these, not the originals, for their gradients to be synchronised.
    trainable: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process


class TrainingTask:
    """Subclass and implement ``build_dataset``, ``collate`` and ``model_inputs``."""

    name = "adapter"
    families: tuple[str, ...] = ("StableDiffusionPipeline",)  # pipeline classes it trains (models.families)

    def check_inputs(self, args: argparse.Namespace) -> None:
        """Read and check the user's data before any model is loaded, so bad input fails fast."""

    def validation_prompts(self, args: argparse.Namespace) -> list[str]:
        """The prompts of the validation grid (none: the loop does not validate); ``--validation_prompt``."""
        return list(args.validation_prompt or [])

    def build_dataset(self, run: RunContext) -> Dataset:
        """The training set (called once on every process, before the adapter is attached).

        Work that writes files (e.g. generating class images) must run on the main process only,
        with the other processes waiting (``ranks.main_process_first(run.accelerator)``).
        """
        raise NotImplementedError

    def collate(self, items: list) -> dict:
        raise NotImplementedError

    def batch_sampler(self, batch_size: int, seed: int) -> Sampler[list[int]] | None:
        """Batches of dataset indices when items cannot be batched freely (e.g. aspect-ratio buckets), a pure
        function of (seed, epoch) with ``set_epoch``; None: shuffled batches of ``batch_size``."""
        return None

    def model_inputs(
        self, batch: dict, run: RunContext, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clean latents (B, C, h, w) and the UNet's conditioning kwargs (``encoder_hidden_states`` ...).

        All randomness must come from ``generator`` so that a resumed run replays it.
        """
        raise NotImplementedError

    def denoiser(self, unet: nn.Module, run: RunContext) -> Callable:
        """What the loss calls as ``denoiser(noisy_latents, timesteps, **conditioning, return_dict=False)``.

        The (prepared) UNet by default; a task whose conditioning needs the noisy latents or timesteps
        (e.g. a ControlNet) returns a callable running its modules (``run.trainable``) around the UNet.
        """
        return unet

    def reduce_loss(self, per_example: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss from per-example losses (B,), and named parts to log."""
        return per_example.mean(), {}

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Extra modules trained with the adapter (fp32), saved in the adapter file as extra tensors
        ``<name>.<parameter>``; call them through ``run.trainable[name]`` in ``model_inputs``."""
        return {}

    def trainable_module_options(self) -> dict[str, dict]:
        """Optimizer settings (``lr``, ``weight_decay``) per ``trainable_modules`` name; unset ones follow the
        adapter's (``--learning_rate``, ``--adam_weight_decay``). ``--scale_lr`` scales these rates too."""
        return {}

    def validation_images(self, run: RunContext, unet: nn.Module, step: int) -> list[tuple[str, list[Image.Image]]]:
        """Rows of the validation grid as (caption, images); ``unet`` is the unwrapped, adapted UNet."""
        return []

    def adapter_metadata(self) -> dict:
        """JSON-able facts stored in the adapter file (e.g. the instance prompt)."""
        return {}

    def example_prompt(self) -> str | None:
        """A prompt for the model card's usage snippet when no validation prompt was given."""
        return None

    def usage_lines(self, base_model: str) -> list[str] | None:
        """Python lines of the model card's usage snippet (None: load the adapter on a plain pipeline)."""
        return None

    def model_card_facts(self) -> dict[str, str]:
        """Task rows of the model card's table."""
        return {}
