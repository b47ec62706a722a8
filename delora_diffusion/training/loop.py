"""The one accelerate training loop of every adapter trainer; a ``TrainingTask`` plugs in the data.

Per optimizer step: the task turns a batch into clean latents and UNet conditioning; the loop adds
noise at random timesteps (generators from ``determinism``), runs the adapted UNet, takes the
(optionally Min-SNR-weighted) MSE to the noise or velocity, lets the task combine per-example
losses, and steps AdamW over the adapter's parameter groups (DeLoRA's λ with its own learning rate
and weight decay). The frozen UNet runs in the mixed-precision dtype while adapter parameters stay
fp32. Checkpoints replay exactly on resume; a non-finite loss stops the run without touching the
last good checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..adapters import (
    AdapterConfig,
    adapter_layers,
    attach,
    cast_base,
    param_groups,
    read_adapter,
    save_adapter,
    trainable_parameter_count,
)
from .args import UsageError
from .checkpoint import (
    CheckpointError,
    read_trainer_state,
    register_adapter_state_hooks,
    resolve_resume,
    save_checkpoint,
    write_json_atomic,
)
from .class_images import save_png_atomic
from .components import ensure_base_model, load_components
from .determinism import EpochShuffleSampler, batch_generator
from .metrics import adapter_fingerprint, lambda_stats, weight_distance_logs
from .model_card import write_model_card
from .task import RunContext, TrainingTask

logger = logging.getLogger("delora_diffusion.training")

REGEX_CHARACTERS = set("*()[]|^$\\+?")
# Settings that fix which batch comes at which step; a resume with other values cannot replay the run.
DATA_ORDER_KEYS = ("seed", "train_batch_size", "gradient_accumulation_steps", "num_processes", "dataset_length")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the message says what to do."""


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    adapter_path: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    validation_grids: list[Path] = field(default_factory=list)
    model_card: Path | None = None
    logging_dir: Path | None = None
    seconds_per_step: float | None = None
    wall_seconds: float = 0.0
    adapter_fingerprint: str | None = None
    mixed_precision: str = "no"
    history: list[dict[str, float]] = field(default_factory=list)  # per step: losses, lrs, λ, total distance
    notes: list[str] = field(default_factory=list)


def adapter_config_from_args(args: argparse.Namespace) -> AdapterConfig:
    targets = args.target_modules
    if len(targets) == 1 and REGEX_CHARACTERS & set(targets[0]):
        targets = targets[0]  # one pattern with regex syntax: match whole module names
    return AdapterConfig(method=args.adapter, rank=args.rank, target_modules=targets, init=args.adapter_init,
                         lambda_init=args.delora_lambda, lora_alpha=args.lora_alpha, ether_blocks=args.ether_blocks,
                         one_sided=args.ether_one_sided)


def _tracker_config(args: argparse.Namespace) -> dict:
    """Hyper-parameters as trackers accept them (scalars and strings only)."""
    config = {}
    for key, value in vars(args).items():
        if isinstance(value, (list, tuple)):
            value = " | ".join(map(str, value))
        if value is None:
            value = "none"
        config[key] = value
    return config


def _log_images(accelerator, rows: list[tuple[str, list]], step: int) -> None:
    for tracker in accelerator.trackers:
        for index, (caption, images) in enumerate(rows):
            tag = f"validation/{index}: {caption}"
            if tracker.name == "tensorboard":
                tracker.log_images({tag: np.stack([np.asarray(im) for im in images])}, step, dataformats="NHWC")
            else:
                tracker.log_images({tag: images}, step)


def train(args: argparse.Namespace, task: TrainingTask, command: list[str] | None = None,
          notes: list[str] | None = None) -> TrainResult:
    """Train an adapter on the UNet of ``args.pretrained_model_name_or_path`` with ``task``'s data.

    ``args`` is a parsed ``training.args`` namespace with method defaults applied; ``command`` (argv)
    and ``notes`` (e.g. which defaults were filled) go to the log and the model card. Returns where
    everything was written. Raises ``NonFiniteLossError`` if the loss or gradients become NaN/inf.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import compute_snr

    started = time.perf_counter()
    output_dir = Path(args.output_dir)
    logging_dir = output_dir / args.logging_dir
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to in (None, "none") else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(logging_dir)),
    )
    main = accelerator.is_main_process

    def info(message: str, *values) -> None:  # once, from the main process
        if main:
            logger.info(message, *values)
    if args.report_to not in (None, "none", "all") and not accelerator.log_with:
        raise UsageError(f"--report_to {args.report_to}: that tracker is not installed (pip install {args.report_to})")
    if not main:
        import diffusers
        import transformers
        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    result = TrainResult(output_dir=output_dir, global_step=0, mixed_precision=accelerator.mixed_precision,
                         notes=list(notes or []))

    task.check_inputs(args)
    resume_from = resolve_resume(args.resume_from_checkpoint, output_dir)
    if args.resume_from_checkpoint == "latest" and resume_from is None:
        info("no checkpoint in %s: starting a new run", output_dir)

    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic({"args": vars(args), "command": command, "config_file": args.config,
                           "num_processes": accelerator.num_processes,
                           "mixed_precision": accelerator.mixed_precision},
                          output_dir / "training_args.json")
    with accelerator.main_process_first():
        ensure_base_model(args.pretrained_model_name_or_path)
    components = load_components(args.pretrained_model_name_or_path, args.revision, args.variant)
    for module in (components.vae, components.text_encoder, components.unet):
        module.requires_grad_(False)
        module.eval()
    for module in (components.vae, components.text_encoder):
        module.to(accelerator.device)
        if weight_dtype != torch.float32:
            module.to(dtype=weight_dtype)
    run = RunContext(args=args, accelerator=accelerator, components=components, weight_dtype=weight_dtype,
                     output_dir=output_dir, notes=result.notes)

    dataset = task.build_dataset(run)

    # Re-seed so the adapter's initialisation does not depend on what the dataset step consumed.
    set_seed(args.seed)
    unet = components.unet
    config = adapter_config_from_args(args)
    layers = attach(unet, config)
    cast_base(unet, weight_dtype)
    unet.to(accelerator.device)
    extra_modules = task.trainable_modules()
    for module in extra_modules.values():
        module.to(accelerator.device, dtype=torch.float32)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    learning_rate, lambda_lr = args.learning_rate, args.lambda_learning_rate
    if args.scale_lr:
        factor = args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
        learning_rate *= factor
        lambda_lr = None if lambda_lr is None else lambda_lr * factor
    groups = param_groups(unet, lr=learning_rate, weight_decay=args.adam_weight_decay, lambda_lr=lambda_lr,
                          lambda_weight_decay=args.lambda_weight_decay)
    for name, module in extra_modules.items():
        groups.append({"name": name, "params": [p for p in module.parameters() if p.requires_grad],
                       "lr": learning_rate, "weight_decay": args.adam_weight_decay})
    trainable = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)

    sampler = EpochShuffleSampler(len(dataset), args.seed)
    dataloader = DataLoader(dataset, batch_size=args.train_batch_size, sampler=sampler, collate_fn=task.collate,
                            num_workers=args.dataloader_num_workers)
    steps_per_epoch = math.ceil(math.ceil(len(dataset) / (args.train_batch_size * accelerator.num_processes))
                                / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    # accelerate steps a prepared scheduler once per process per optimizer step.
    lr_scheduler = get_scheduler(
        args.lr_scheduler, optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
        num_cycles=args.lr_num_cycles, power=args.lr_power,
    )
    prepared = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler, *extra_modules.values())
    unet, optimizer, dataloader, lr_scheduler = prepared[:4]
    extras = dict(zip(extra_modules, prepared[4:]))
    run.trainable.update(extras)
    steps_per_epoch = math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)

    def extra_state() -> dict[str, torch.Tensor]:
        return {f"{name}.{key}": value for name, module in extras.items()
                for key, value in accelerator.unwrap_model(module).state_dict().items()}

    state = {"global_step": 0}

    def write_adapter(path: Path) -> None:
        save_adapter(accelerator.unwrap_model(unet), path, base_model=args.pretrained_model_name_or_path,
                     extra_tensors=extra_state() or None,
                     extra_metadata={"trainer": task.name, "global_step": state["global_step"],
                                     **task.adapter_metadata()})

    def read_adapter_into_model(path: Path) -> None:
        stored = read_adapter(path)
        own = adapter_layers(accelerator.unwrap_model(unet))
        if stored.config.method != config.method or set(stored.layers) != set(own):
            raise CheckpointError(f"{path} holds a {stored.config.method} adapter on {len(stored.layers)} layers; "
                                  f"this run trains {config.method} on {len(own)} layers: resume with the same "
                                  "adapter flags")
        for name, layer in own.items():
            layer.load_adapter_state_dict(stored.layers[name], name)
        for name, module in extras.items():
            prefix = f"{name}."
            accelerator.unwrap_model(module).load_state_dict(
                {k[len(prefix):]: v for k, v in stored.extra_tensors.items() if k.startswith(prefix)})

    register_adapter_state_hooks(accelerator, write_adapter, read_adapter_into_model)
    data_order = {"seed": args.seed, "train_batch_size": args.train_batch_size,
                  "gradient_accumulation_steps": args.gradient_accumulation_steps,
                  "num_processes": accelerator.num_processes, "dataset_length": len(dataset)}

    global_step, first_epoch, skip_batches = 0, 0, 0
    if resume_from is not None:
        saved = read_trainer_state(resume_from)
        changed = [f"{k} {saved.get(k)} -> {data_order[k]}" for k in DATA_ORDER_KEYS if saved.get(k) != data_order[k]]
        if changed:
            info("warning: resuming with other data-order settings (%s): batches will not replay the "
                           "interrupted run exactly", ", ".join(changed))
        accelerator.load_state(str(resume_from))
        _apply_schedule(lr_scheduler)
        global_step = int(saved["global_step"])
        first_epoch = global_step // steps_per_epoch
        skip_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        info("resumed from %s at step %d (epoch %d, skipping %d batches)", resume_from, global_step,
                    first_epoch, skip_batches)
    state["global_step"] = global_step

    if main and accelerator.log_with:
        accelerator.init_trackers(task.name, config=_tracker_config(args))
    result.logging_dir = logging_dir if accelerator.log_with else None

    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    info("training %s (%s trainable parameters in %d layers) for %d steps: %d examples, %d per step "
                "(%d per device × %d processes × %d accumulation), %d epochs",
                config.method, f"{trainable_parameter_count(accelerator.unwrap_model(unet)):,}", len(layers),
                max_train_steps, len(dataset), total_batch, args.train_batch_size, accelerator.num_processes,
                args.gradient_accumulation_steps, num_epochs)
    for line in run.notes:
        info(line)

    def checkpoint(step: int) -> None:
        if main:
            path = save_checkpoint(accelerator, output_dir, step, {**data_order, "adapter": config.to_dict(),
                                                                     "base_model": args.pretrained_model_name_or_path},
                                   args.checkpoints_total_limit)
            result.checkpoints.append(path)
            info("saved %s", path)

    def validate(step: int) -> None:
        if not (main and args.validation_prompt):
            return
        model = accelerator.unwrap_model(unet)
        model.eval()
        with torch.no_grad(), accelerator.autocast():
            rows = task.validation_images(run, model, step)
        model.train()
        if not rows:
            return
        from diffusers.utils import make_image_grid

        grid = make_image_grid([im for _, images in rows for im in images], rows=len(rows), cols=len(rows[0][1]))
        path = output_dir / "validation" / f"step-{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png_atomic(grid, path)
        result.validation_grids.append(path)
        _log_images(accelerator, rows, step)
        info("validation grid: %s", path)

    noise_scheduler = components.noise_scheduler
    prediction_type = noise_scheduler.config.prediction_type
    num_timesteps = noise_scheduler.config.num_train_timesteps
    progress = _progress_bar(max_train_steps, global_step, disable=not main)
    step_times: list[float] = []
    stop_message = None
    micro_losses: dict[str, torch.Tensor] = {}
    step_started = time.perf_counter()

    for epoch in range(first_epoch, num_epochs):
        unet.train()
        dataloader.set_epoch(epoch)
        skip = skip_batches if epoch == first_epoch else 0
        batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        for offset, batch in enumerate(batches):
            generator = batch_generator(args.seed, accelerator.process_index, epoch, skip + offset,
                                        accelerator.device)
            with accelerator.accumulate(unet, *extras.values()):
                latents, conditioning = task.model_inputs(batch, run, generator)
                noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
                timesteps = torch.randint(0, num_timesteps, (latents.shape[0],), generator=generator,
                                          device=latents.device)
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                if prediction_type == "epsilon":
                    target = noise
                elif prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(latents, noise, timesteps)
                else:
                    raise ValueError(f"unsupported prediction_type {prediction_type!r} in the model's scheduler")
                prediction = unet(noisy, timesteps, **conditioning, return_dict=False)[0]
                per_example = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
                if args.snr_gamma is not None:
                    snr = compute_snr(noise_scheduler, timesteps)
                    weights = torch.clamp(snr, max=args.snr_gamma)
                    per_example = per_example * weights / (snr + 1 if prediction_type == "v_prediction" else snr)
                loss, parts = task.reduce_loss(per_example, batch)
                for key, value in {"loss": loss, **parts}.items():
                    micro_losses[key] = micro_losses.get(key, 0.0) + value.detach().float() / args.gradient_accumulation_steps
                accelerator.backward(loss)

                if accelerator.sync_gradients:
                    keys = list(micro_losses)
                    reduced = accelerator.reduce(torch.stack([micro_losses[k] for k in keys]), "mean")
                    losses = dict(zip(keys, reduced.tolist()))
                    micro_losses = {}
                    # Under fp16 the grad scaler skips steps with inf gradients itself; a bad loss is still fatal.
                    grad_norm = accelerator.clip_grad_norm_(trainable, args.max_grad_norm or float("inf"))
                    grad_ok = accelerator.mixed_precision == "fp16" or bool(torch.isfinite(grad_norm))
                    if not (math.isfinite(losses["loss"]) and grad_ok):
                        what = f"loss {losses['loss']}" if not math.isfinite(losses["loss"]) else f"gradient norm {grad_norm}"
                        stop_message = _stop_message(what, global_step + 1, epoch, output_dir)
                        break
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            state["global_step"] = global_step
            now = time.perf_counter()
            step_times.append(now - step_started)
            logs = {**losses, "grad_norm": float(grad_norm), "time/step_seconds": step_times[-1]}
            for group in optimizer.param_groups:
                logs[f"lr/{group['name']}"] = group["lr"]
            if main:
                model = accelerator.unwrap_model(unet)
                logs.update(lambda_stats(model))
                if global_step % args.log_weight_distance_steps == 0 or global_step == max_train_steps:
                    logs.update(weight_distance_logs(model))
            accelerator.log(logs, step=global_step)
            result.history.append({"step": global_step, **{k: v for k, v in logs.items()
                                                            if not k.startswith("weight_distance/")
                                                            or k == "weight_distance/total"}})
            progress.update(1)
            progress.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}")

            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                checkpoint(global_step)
            if (args.validation_steps and global_step % args.validation_steps == 0
                    and global_step != max_train_steps):
                validate(global_step)
            step_started = time.perf_counter()
            if global_step >= max_train_steps:
                break
        if stop_message or global_step >= max_train_steps:
            break
    progress.close()

    accelerator.wait_for_everyone()
    if stop_message:
        accelerator.end_training()
        raise NonFiniteLossError(stop_message)

    result.adapter_fingerprint = adapter_fingerprint(accelerator.unwrap_model(unet))
    logger.info("process %d: adapter fingerprint %s", accelerator.process_index, result.adapter_fingerprint)
    if main:
        result.adapter_path = output_dir / "adapter.safetensors"
        write_adapter(result.adapter_path)
        validate(global_step)
    result.global_step = global_step
    # The first step includes one-off work (allocations, autotuning); leave it out of the average.
    timed = step_times[1:] or step_times
    result.seconds_per_step = sum(timed) / len(timed) if timed else None
    result.wall_seconds = time.perf_counter() - started
    if main:
        result.checkpoints = [p for p in result.checkpoints if p.exists()]
        result.model_card = write_model_card(output_dir, args, task, result, command)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _apply_schedule(lr_scheduler) -> None:
    """Set each group's learning rate from this run's schedule at the restored step.

    The optimizer state holds the rate of the interrupted run's last step; recomputing it makes a
    resume with another --max_train_steps follow the new schedule from the first step.
    """
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return
    for group, base_lr, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, lambdas):
        group["lr"] = base_lr * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def _progress_bar(total: int, initial: int, disable: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="steps", disable=disable, dynamic_ncols=True)


def _stop_message(what: str, step: int, epoch: int, output_dir: Path) -> str:
    from .checkpoint import list_checkpoints

    found = list_checkpoints(output_dir)
    if found:
        resume = (f"the last good checkpoint is {found[-1][1]} (step {found[-1][0]}); lower --learning_rate or "
                  f"--max_grad_norm and continue with --resume_from_checkpoint {found[-1][1]}")
    else:
        resume = "no checkpoint was saved yet; lower --learning_rate or --max_grad_norm and start again"
    return (f"non-finite {what} at step {step} (epoch {epoch}): stopped without saving the adapter; {resume}")
