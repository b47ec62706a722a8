"""The optimizer (AdamW, 8-bit AdamW, Prodigy or Lion) over the adapter's parameter groups, and the
learning-rate schedule."""

from __future__ import annotations

import argparse

import torch
from torch import nn

from ..adapters import param_groups


def build_optimizer(
    args: argparse.Namespace,
    unet: nn.Module,
    extra_modules: dict[str, nn.Module],
    num_processes: int,
    module_options: dict[str, dict] | None = None,
    text_encoders: dict[str, nn.Module] | None = None,
) -> torch.optim.Optimizer:
    """Groups ``adapter`` (``--learning_rate``, ``--adam_weight_decay``), ``lambda`` (DeLoRA: its own
    rate and decay), per adapted text encoder (``text_encoders``: pipeline name -> model) a group of that name
    (``--text_encoder_lr``, default the adapter's) and ``<name>_lambda`` (λ's rate), and one per extra module (its ``module_options``
    ``lr``/``weight_decay``, else the adapter's); ``--scale_lr`` scales every rate by accumulation × batch ×
    processes. ``--optimizer``: AdamW, bitsandbytes' 8-bit AdamW, Prodigy or Lion, over the same groups."""
    factor = args.gradient_accumulation_steps * args.train_batch_size * num_processes if args.scale_lr else 1
    learning_rate = args.learning_rate * factor
    lambda_lr = None if args.lambda_learning_rate is None else args.lambda_learning_rate * factor
    groups = param_groups(
        unet,
        lr=learning_rate,
        weight_decay=args.adam_weight_decay,
        lambda_lr=lambda_lr,
        lambda_weight_decay=args.lambda_weight_decay,
    )
    for name, encoder in (text_encoders or {}).items():
        rate = learning_rate if args.text_encoder_lr is None else args.text_encoder_lr * factor
        for group in param_groups(
            encoder,
            lr=rate,
            weight_decay=args.adam_weight_decay,
            lambda_lr=lambda_lr if lambda_lr is not None else learning_rate,
            lambda_weight_decay=args.lambda_weight_decay,
        ):
            groups.append({**group, "name": name + ("_lambda" if group["name"] == "lambda" else "")})
    for name, module in extra_modules.items():
        options = (module_options or {}).get(name, {})
        lr = options["lr"] * factor if options.get("lr") is not None else learning_rate
        decay = options.get("weight_decay")
        groups.append(
            {
                "name": name,
                "params": [p for p in module.parameters() if p.requires_grad],
                "lr": lr,
                "weight_decay": args.adam_weight_decay if decay is None else decay,
            }
        )
    betas, name = (args.adam_beta1, args.adam_beta2), getattr(args, "optimizer", "adamw")
    # The packages were checked with the flags (OPTIMIZER_PACKAGES): installed.
    if name == "adamw8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(groups, betas=betas, eps=args.adam_epsilon)
    if name == "prodigy":
        import prodigyopt

        return prodigyopt.Prodigy(groups, betas=betas, eps=args.adam_epsilon, decouple=True)
    if name == "lion":
        import lion_pytorch

        return lion_pytorch.Lion(groups)  # its own betas (0.9, 0.99); each group's lr and weight decay
    return torch.optim.AdamW(groups, betas=betas, eps=args.adam_epsilon)


def build_lr_scheduler(args: argparse.Namespace, optimizer, max_train_steps: int, num_processes: int):
    """diffusers' named schedule; steps are counted per process because accelerate steps a prepared
    scheduler once per process for every optimizer step."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
        num_cycles=args.lr_num_cycles,
        power=args.lr_power,
    )


def base_rates(lr_scheduler) -> list[float]:
    """This run's base learning rate of every parameter group (as the flags set them)."""
    return list(getattr(lr_scheduler, "scheduler", lr_scheduler).base_lrs)


def restore_schedule(lr_scheduler, rates: list[float]) -> None:
    """Set each group's learning rate from this run's schedule and base ``rates`` at the restored step.

    A checkpoint holds the interrupted run's base rates and the rate of its last step; putting this run's
    back (``rates``, read before the checkpoint was loaded) makes a resume with another --learning_rate,
    --lambda_learning_rate or --max_train_steps follow the new settings from the first step.
    """
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
    scheduler.base_lrs = list(rates)
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["initial_lr"] = rate
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return
    for group, base_lr, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, lambdas):
        group["lr"] = base_lr * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
