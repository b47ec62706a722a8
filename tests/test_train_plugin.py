"""The loop is task-agnostic: a second plug-in with its own data and a trainable conditioning encoder
(the shape a semantic-map → image trainer takes) trains, checkpoints, resumes and saves through it."""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import Dataset
from train_helpers import reset_accelerate

from delora_diffusion.adapters import read_adapter
from delora_diffusion.configfile import add_config_arg
from delora_diffusion.training.args import (
    add_adapter_args,
    add_model_args,
    add_optimization_args,
    add_run_args,
    apply_method_defaults,
)
from delora_diffusion.training.loop import train
from delora_diffusion.training.task import TrainingTask


class MapDataset(Dataset):
    """Fixed latents, each with a 'map' vector standing in for a semantic map."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.latents = torch.randn(6, 4, 8, 8, generator=generator)
        self.maps = torch.randn(6, 5, generator=generator)

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return {"latents": self.latents[index], "map": self.maps[index]}


class MapTask(TrainingTask):
    name = "toy-map"

    def __init__(self):
        self.encoder = nn.Linear(5, 32)  # map → cross-attention tokens, trained with the adapter

    def build_dataset(self, run):
        return MapDataset()

    def collate(self, items):
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def model_inputs(self, batch, run, generator):
        encoder = run.trainable["map_encoder"]  # the prepared (DDP-wrapped) module, so gradients sync
        tokens = encoder(batch["map"]).unsqueeze(1).expand(-1, 4, -1)
        return batch["latents"], {"encoder_hidden_states": tokens}

    def trainable_modules(self):
        return {"map_encoder": self.encoder}


def parse(argv):
    parser = argparse.ArgumentParser()
    for add in (add_config_arg, add_model_args, add_adapter_args, add_optimization_args, add_run_args):
        add(parser)
    args = parser.parse_args(argv)
    apply_method_defaults(args)
    return args


def test_second_task_trains_its_encoder_through_the_same_loop(tmp_path, tiny_sd):
    common = [
        "--pretrained_model_name_or_path",
        str(tiny_sd),
        "--rank",
        "2",
        "--report_to",
        "none",
        "--train_batch_size",
        "2",
        "--checkpointing_steps",
        "2",
        "--output_dir",
        str(tmp_path / "a"),
    ]
    task = MapTask()
    initial = task.encoder.weight.detach().clone()
    result = train(parse(common + ["--max_train_steps", "4"]), task)
    assert result.global_step == 4
    stored = read_adapter(result.adapter_path)
    assert stored.metadata["extra"]["trainer"] == "toy-map"
    saved = stored.extra_tensors["map_encoder.weight"]
    assert not torch.allclose(saved, initial)  # the encoder was optimised
    assert torch.equal(saved, task.encoder.weight.detach().cpu())  # and saved as it ended

    # Resume restores the encoder from the checkpoint along with the adapter.
    reset_accelerate()
    resumed_task = MapTask()
    resumed = train(
        parse(
            common
            + [
                "--max_train_steps",
                "4",
                "--resume_from_checkpoint",
                str(tmp_path / "a" / "checkpoint-2"),
                "--output_dir",
                str(tmp_path / "b"),
            ]
        ),
        resumed_task,
    )
    assert resumed.global_step == 4
    again = read_adapter(resumed.adapter_path).extra_tensors["map_encoder.weight"]
    assert torch.allclose(again, saved, atol=1e-6)
