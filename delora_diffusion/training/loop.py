"""The one accelerate training loop of every adapter trainer; a ``TrainingTask`` plugs in the data.

Per optimizer step: the task turns a batch into clean latents and UNet conditioning; ``loss.py``
noises them (generators from ``determinism``) and scores the adapted UNet; the task combines
per-example losses; AdamW steps the adapter's parameter groups (DeLoRA's λ with its own learning
rate and weight decay). The frozen UNet runs in the mixed-precision dtype while adapter parameters
stay fp32. Checkpoints replay exactly on resume; a non-finite loss stops the run without touching
the last good checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..adapters import attach, cast_base
from ..fileio import remove_stale_temporaries, save_png_atomic, write_json_atomic
from ..inference.contact_sheet import captioned_grid
from ..models.single_file import resolve_base_model
from ..threads import apply_threads
from .args import UsageError, adapter_config_from_args
from .checkpoint import (
    claim_output_dir,
    nonfinite_stop_message,
    read_trainer_state,
    register_adapter_state_hooks,
    resolve_resume,
    save_checkpoint,
)
from .compat import xformers_note
from .components import ensure_base_model, load_components
from .determinism import EpochShuffleSampler, seed_batch
from .loss import diffusion_loss
from .metrics import (
    MetricsLog,
    adapter_fingerprint,
    lambda_logs,
    lambda_stats,
    log_images,
    run_level,
    tracker_config,
    trainable_summary,
    weight_distance_logs,
)
from .model_card import write_model_card
from .optimization import base_rates, build_lr_scheduler, build_optimizer, restore_schedule
from .ranks import main_process_first
from .run_adapter import read_run_adapter, write_run_adapter
from .run_files import ADAPTER_EMA_FILE, ADAPTER_FILE, METRICS_FILE, TRAINING_ARGS_FILE, VALIDATION_DIR
from .task import RunContext, TrainingTask
from .text_encoder import attach_text_encoder_adapters

logger = logging.getLogger("delora_diffusion.training")
# Settings that fix which batch comes at which step; a resume with other values cannot replay the run.
DATA_ORDER_KEYS = (
    "seed",
    "train_batch_size",
    "gradient_accumulation_steps",
    "num_processes",
    "dataset_length",
    "batching",
)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the message says what to do."""


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int = 0
    adapter_path: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    validation_grids: list[Path] = field(default_factory=list)
    model_card: Path | None = None
    exports: dict[str, Path] = field(default_factory=dict)  # plain-LoRA files beside the adapter: label -> path
    logging_dir: Path | None = None
    seconds_per_step: float | None = None  # mean optimizer-step time after the first, seconds
    wall_seconds: float = 0.0  # the command's wall time (the CLI: since the process started, imports included)
    loop_seconds: float = 0.0  # since train() was called
    adapter_fingerprint: str | None = None
    mixed_precision: str = "no"
    history: list[dict[str, float]] = field(default_factory=list)  # per step: losses, lrs, λ, total distance
    notes: list[str] = field(default_factory=list)


def train(
    args: argparse.Namespace, task: TrainingTask, command: list[str] | None = None, notes: list[str] | None = None
) -> TrainResult:
    """Train an adapter on the UNet of ``args.pretrained_model_name_or_path`` with ``task``'s data.

    ``args`` is a parsed ``training.args`` namespace with method defaults applied; ``command`` (argv)
    and ``notes`` (e.g. which defaults were filled) go to the log and the model card. Returns where
    everything was written. Raises ``NonFiniteLossError`` if the loss or gradients become NaN/inf.
    """
    run = _Run(args, task, command, notes)
    run.setup()
    run.resume()
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines above the progress bar, not glued to its line
        run.fit()
    return run.finish()


class _Run:
    """One training run; the phases of ``train`` share its state."""

    def __init__(self, args, task: TrainingTask, command, notes) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        self.started = time.perf_counter()
        self.args, self.task, self.command = args, task, command
        self.output_dir = Path(args.output_dir)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to in (None, "none") else args.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / args.logging_dir)
            ),
        )
        self.main = self.accelerator.is_main_process
        if args.report_to not in (None, "none", "all") and not self.accelerator.log_with:
            raise UsageError(
                f"--report_to {args.report_to}: that tracker is not installed (pip install {args.report_to})"
            )
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            self.accelerator.mixed_precision, torch.float32
        )
        self.result = TrainResult(
            output_dir=self.output_dir, mixed_precision=self.accelerator.mixed_precision, notes=list(notes or [])
        )
        if self.weight_dtype != torch.float32 and self.accelerator.device.type == "cpu":
            # measured 4x slower than fp32 on a CPU without native half-precision matrix units
            self.result.notes.append(
                f"warning: --mixed_precision {self.accelerator.mixed_precision} on a CPU is "
                f"usually slower than fp32 (--mixed_precision no); it saves memory, not time"
            )
        self.global_step = 0

    def info(self, message: str, *values) -> None:
        """Log once, from the main process."""
        if self.main:
            logger.info(message, *values)

    # --- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Check inputs and claim the output folder, load the model, attach the adapter, build data and optimiser."""
        self._prepare_process()
        self._check_and_claim()
        self._load_model()
        self.dataset = self.task.build_dataset(self.context)
        extra_modules = self._attach_adapter()
        self._build_optimisation(extra_modules)

    def _prepare_process(self) -> None:
        args = self.args
        if not self.main:
            import diffusers
            import transformers

            diffusers.utils.logging.set_verbosity_error()
            transformers.utils.logging.set_verbosity_error()
        if args.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
        threads = apply_threads(args)
        if self.accelerator.device.type == "cpu":
            self.info("CPU threads per process: %d (--num_threads)", threads)

    def _check_and_claim(self) -> None:
        """The user's data, the output folder (debris of killed runs removed), the checkpoint to resume from."""
        args, accelerator = self.args, self.accelerator
        self.task.check_inputs(args)
        if self.main:
            folders = dict.fromkeys([self.output_dir, *(Path(f) for f in [getattr(args, "class_data_dir", None)] if f)])
            removed = [path for folder in folders for path in remove_stale_temporaries(folder)]
            if removed:
                self.result.notes.append(
                    f"removed {len(removed)} temporary file(s) left by interrupted runs, e.g. {removed[0]}"
                )
        self.previous_args, replaced = claim_output_dir(self.output_dir, self.args, self.main)
        if replaced:
            self.result.notes.append(replaced)
        self.accelerator.wait_for_everyone()
        self.resume_from = resolve_resume(args.resume_from_checkpoint, self.output_dir)
        if self.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                {
                    "args": vars(args),
                    "command": self.command,
                    "config_file": args.config,
                    "num_processes": accelerator.num_processes,
                    "mixed_precision": accelerator.mixed_precision,
                },
                self.output_dir / TRAINING_ARGS_FILE,
                sort_keys=True,
            )

    def _load_model(self) -> None:
        """The frozen pipeline components; VAE and text encoder on the device in the mixed-precision dtype."""
        args, accelerator = self.args, self.accelerator
        with main_process_first(accelerator):  # a missing tiny model is built, a single file converted, once
            ensure_base_model(args.pretrained_model_name_or_path)
            resolve_base_model(args.pretrained_model_name_or_path, args.single_file_config, log=self.info)
        components = load_components(
            args.pretrained_model_name_or_path,
            args.revision,
            args.variant,
            zero_terminal_snr=args.zero_terminal_snr,
            vae_path=args.pretrained_vae_model_name_or_path,
            single_file_config=args.single_file_config,
        )
        prediction = components.noise_scheduler.config.prediction_type
        if args.zero_terminal_snr and prediction != "v_prediction":
            raise UsageError(
                f"--zero_terminal_snr needs a v-prediction model (an ε target says nothing at SNR 0); "
                f"{args.pretrained_model_name_or_path} predicts {prediction}"
            )
        for module in (components.vae, *components.text_encoders(), components.unet):
            module.requires_grad_(False)
            module.eval()
        for module in (components.vae, *components.text_encoders()):
            module.to(accelerator.device)
            if self.weight_dtype != torch.float32:
                module.to(dtype=self.weight_dtype)
        if components.is_sdxl and not args.pretrained_vae_model_name_or_path and self.weight_dtype != torch.float32:
            components.vae.to(dtype=torch.float32)  # as diffusers' SDXL trainer: its VAE overflows in fp16
            self.result.notes.append(
                "SDXL's VAE stays fp32 under mixed precision (it overflows in fp16); "
                "--pretrained_vae_model_name_or_path madebyollin/sdxl-vae-fp16-fix runs it in "
                f"{self.accelerator.mixed_precision}"
            )
        if getattr(args, "enable_xformers_memory_efficient_attention", False):
            note = xformers_note(args)
            if note:
                self.result.notes.append(note)
            else:
                components.unet.enable_xformers_memory_efficient_attention()
        self.components = components
        self.context = RunContext(
            args=args,
            accelerator=accelerator,
            components=components,
            weight_dtype=self.weight_dtype,
            output_dir=self.output_dir,
            notes=self.result.notes,
        )

    def _attach_adapter(self) -> dict[str, nn.Module]:
        """The adapter on the UNet (fp32 tensors over the cast base) and the task's own trainable modules."""
        args, accelerator, unet = self.args, self.accelerator, self.components.unet
        # Re-seed so the adapter's initialisation does not depend on what building the dataset consumed.
        from accelerate.utils import set_seed

        set_seed(args.seed)
        self.config = adapter_config_from_args(args)
        self.num_layers = len(attach(unet, self.config))
        self.text_encoders = {}  # pipeline name -> adapted text encoder (--train_text_encoder)
        if getattr(args, "train_text_encoder", False):
            self.text_encoders = attach_text_encoder_adapters(
                self.components, self.config, self.weight_dtype, accelerator.device
            )
        cast_base(unet, self.weight_dtype)  # adapter tensors stay fp32
        unet.to(accelerator.device)
        extra_modules = self.task.trainable_modules()
        for module in extra_modules.values():
            module.to(accelerator.device, dtype=torch.float32)
        if args.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        return extra_modules

    def _build_optimisation(self, extra_modules: dict[str, nn.Module]) -> None:
        """Optimiser, data loader, schedule and step counts, prepared by accelerate; the checkpoint hooks."""
        args, accelerator, unet = self.args, self.accelerator, self.components.unet
        optimizer = build_optimizer(
            args,
            unet,
            extra_modules,
            accelerator.num_processes,
            self.task.trainable_module_options(),
            self.text_encoders,
        )
        self.trainable = [p for group in optimizer.param_groups for p in group["params"]]
        batch_sampler = self.task.batch_sampler(args.train_batch_size, args.seed)
        if batch_sampler is None:
            dataloader = DataLoader(
                self.dataset,
                batch_size=args.train_batch_size,
                sampler=EpochShuffleSampler(len(self.dataset), args.seed),
                collate_fn=self.task.collate,
                num_workers=args.dataloader_num_workers,
            )
            batches_per_process = math.ceil(len(self.dataset) / (args.train_batch_size * accelerator.num_processes))
        else:
            dataloader = DataLoader(
                self.dataset,
                batch_sampler=batch_sampler,
                collate_fn=self.task.collate,
                num_workers=args.dataloader_num_workers,
            )
            batches_per_process = math.ceil(len(batch_sampler) / accelerator.num_processes)
        self.max_train_steps = args.max_train_steps or args.num_train_epochs * math.ceil(
            batches_per_process / args.gradient_accumulation_steps
        )
        lr_scheduler = build_lr_scheduler(args, optimizer, self.max_train_steps, accelerator.num_processes)
        trained = {**extra_modules, **self.text_encoders}
        prepared = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler, *trained.values())
        self.unet, self.optimizer, self.dataloader, self.lr_scheduler = prepared[:4]
        self.context.trainable.update(zip(trained, prepared[4:]))
        self.extras = {name: self.context.trainable[name] for name in extra_modules}
        self.denoiser = self.task.denoiser(self.unet, self.context)
        self.steps_per_epoch = math.ceil(len(self.dataloader) / args.gradient_accumulation_steps)
        self.num_epochs = math.ceil(self.max_train_steps / self.steps_per_epoch)
        register_adapter_state_hooks(accelerator, self.write_adapter, self.read_adapter)
        self.ema = None
        if args.adapter_ema_decay:  # checkpointed with the run, so a resume continues the same average
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.trainable, decay=args.adapter_ema_decay)
            accelerator.register_for_checkpointing(self.ema)
        self.data_order = {
            "seed": args.seed,
            "train_batch_size": args.train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_processes": accelerator.num_processes,
            "dataset_length": len(self.dataset),
        }
        if batch_sampler is not None:
            self.data_order["batching"] = getattr(batch_sampler, "describe", type(batch_sampler).__name__)

    # --- adapter file <-> model ------------------------------------------------------------------
    def _unwrapped(self) -> tuple[nn.Module, dict[str, nn.Module], dict[str, nn.Module]]:
        """(UNet, the task's own modules, the adapted text encoders), without accelerate's wrappers."""
        unwrap = self.accelerator.unwrap_model
        return (
            unwrap(self.unet),
            {name: unwrap(module) for name, module in self.extras.items()},
            {name: unwrap(self.context.trainable[name]) for name in self.text_encoders},
        )

    def write_adapter(self, path: Path) -> dict[str, Path]:
        """The adapter file at ``path`` and the plain-LoRA exports beside it (returned, label -> path)."""
        return write_run_adapter(path, *self._unwrapped(), self.args, self.task, self.global_step)

    def read_adapter(self, path: Path) -> None:
        read_run_adapter(path, *self._unwrapped(), self.config.method)

    # --- resume ---------------------------------------------------------------------------------
    def resume(self) -> None:
        self.first_epoch, self.skip_batches = 0, 0
        if self.resume_from is None:
            if self.args.resume_from_checkpoint == "latest" and self.main:
                # visible: a typo in --output_dir would otherwise quietly restart from step 0
                logger.warning(
                    "warning: --resume_from_checkpoint latest: no checkpoint-N folder in %s, starting a new run",
                    Path(self.output_dir).resolve(),
                )
            return
        saved = read_trainer_state(self.resume_from)
        before = self.previous_args.get("num_threads")
        if before is not None and before != self.args.num_threads and self.accelerator.device.type == "cpu":
            self.info(
                "warning: resuming with %d CPU threads per process where the run had %d: on a CPU the "
                "numbers then differ slightly from an uninterrupted run (--num_threads %d)",
                self.args.num_threads,
                before,
                before,
            )
        changed = [
            f"{key} {saved.get(key)} -> {self.data_order.get(key)}"
            for key in DATA_ORDER_KEYS
            if saved.get(key) != self.data_order.get(key)
        ]
        if changed:
            self.info(
                "warning: resuming with other data-order settings (%s): batches will not replay the "
                "interrupted run exactly",
                ", ".join(changed),
            )
        rates = base_rates(self.lr_scheduler)
        self.accelerator.load_state(str(self.resume_from))
        saved_rates = base_rates(self.lr_scheduler)
        if [f"{r:.6g}" for r in saved_rates] != [f"{r:.6g}" for r in rates]:
            self.info(
                "resuming with other learning rates than the checkpoint's (%s -> %s, one per parameter group): "
                "the new rates apply from step %d",
                ", ".join(f"{r:g}" for r in saved_rates),
                ", ".join(f"{r:g}" for r in rates),
                int(saved["global_step"]) + 1,
            )
        restore_schedule(self.lr_scheduler, rates)
        self.global_step = int(saved["global_step"])
        self.first_epoch = self.global_step // self.steps_per_epoch
        self.skip_batches = (self.global_step % self.steps_per_epoch) * self.args.gradient_accumulation_steps
        self.info(
            "resumed from %s at step %d (epoch %d, skipping %d batches)",
            self.resume_from,
            self.global_step,
            self.first_epoch,
            self.skip_batches,
        )

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> None:
        args, accelerator = self.args, self.accelerator
        if self.main and accelerator.log_with:
            accelerator.init_trackers(self.task.name, config=tracker_config(vars(args)))
        self.result.logging_dir = self.output_dir / args.logging_dir if accelerator.log_with else None
        self.metrics_log = MetricsLog(self.output_dir / METRICS_FILE)
        if self.main:
            self.metrics_log.start(self.global_step)
        for line in self.result.notes:  # what preparing the run did (class images, caching), before it starts
            self.info(line)
        self.info(
            "training %s (%s) for %d steps: %d examples, %d per step "
            "(%d per device × %d processes × %d accumulation), %d epochs",
            self.config.method,
            trainable_summary(*self._unwrapped(), self.num_layers),
            self.max_train_steps,
            len(self.dataset),
            args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps,
            args.train_batch_size,
            accelerator.num_processes,
            args.gradient_accumulation_steps,
            self.num_epochs,
        )

        from tqdm.auto import tqdm

        # Into a log file (stderr not a terminal) a bar line per step would bury the log: one a minute.
        progress = tqdm(
            total=self.max_train_steps,
            initial=self.global_step,
            desc="steps",
            disable=not self.main,
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 60.0,
        )
        self.step_times: list[float] = []
        self.stop_message = None
        accumulated: dict[str, torch.Tensor] = {}
        step_started = time.perf_counter()
        for epoch in range(self.first_epoch, self.num_epochs):
            self.unet.train()
            self.dataloader.set_epoch(epoch)
            skip = self.skip_batches if epoch == self.first_epoch else 0
            batches = accelerator.skip_first_batches(self.dataloader, skip) if skip else self.dataloader
            for offset, batch in enumerate(batches):
                generator = seed_batch(args.seed, accelerator.process_index, epoch, skip + offset, accelerator.device)
                with accelerator.accumulate(self.unet, *self.context.trainable.values()):
                    latents, conditioning = self.task.model_inputs(batch, self.context, generator)
                    per_example = diffusion_loss(
                        self.denoiser,
                        self.components.noise_scheduler,
                        latents,
                        conditioning,
                        generator,
                        args.snr_gamma,
                        self.weight_dtype,
                        noise_offset=args.noise_offset,
                    )
                    loss, parts = self.task.reduce_loss(per_example, batch)
                    for key, value in {"loss": loss, **parts}.items():
                        accumulated[key] = (
                            accumulated.get(key, 0.0) + value.detach().float() / args.gradient_accumulation_steps
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        logs = self.optimizer_step(accumulated, epoch)
                        accumulated = {}
                        if self.stop_message:
                            break
                if not accelerator.sync_gradients:
                    continue
                self.global_step += 1
                self.step_times.append(time.perf_counter() - step_started)
                self.log_step(logs)
                progress.set_postfix(
                    loss=f"{logs['loss']:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2g}", refresh=False
                )  # drawn by update() at its own pace
                progress.update(1)
                if args.checkpointing_steps and self.global_step % args.checkpointing_steps == 0:
                    self.checkpoint()
                if (
                    args.validation_steps
                    and self.global_step % args.validation_steps == 0
                    and self.global_step != self.max_train_steps
                ):
                    self.validate()
                step_started = time.perf_counter()
                if self.global_step >= self.max_train_steps:
                    break
            every = getattr(args, "validation_epochs", None)
            if every and (epoch + 1) % every == 0 and self.global_step < self.max_train_steps and not self.stop_message:
                self.validate()  # diffusers' --validation_epochs: at the end of every N-th epoch
            if self.stop_message or self.global_step >= self.max_train_steps:
                break
        progress.close()

    def optimizer_step(self, accumulated: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        """Average the step's losses over processes, guard against NaN/inf, clip, step. Returns the logs."""
        accelerator = self.accelerator
        keys = list(accumulated)
        losses = dict(zip(keys, accelerator.reduce(torch.stack([accumulated[k] for k in keys]), "mean").tolist()))
        grad_norm = accelerator.clip_grad_norm_(self.trainable, self.args.max_grad_norm or float("inf"))
        # Under fp16 the grad scaler itself skips steps with inf gradients; a bad loss is fatal in any dtype.
        grad_ok = accelerator.mixed_precision == "fp16" or bool(torch.isfinite(grad_norm))
        if not math.isfinite(losses["loss"]) or not grad_ok:
            what = f"loss {losses['loss']}" if not math.isfinite(losses["loss"]) else f"gradient norm {grad_norm}"
            self.stop_message = nonfinite_stop_message(self.output_dir, what, self.global_step + 1, epoch)
            return losses
        self.optimizer.step()
        if self.ema is not None:
            self.ema.step(self.trainable)
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {**losses, "grad_norm": float(grad_norm)}

    def log_step(self, logs: dict[str, float]) -> None:
        logs = {**logs, "time/step_seconds": self.step_times[-1]}
        for group in self.optimizer.param_groups:
            logs[f"lr/{group['name']}"] = group["lr"]
        if self.main:
            model = self.accelerator.unwrap_model(self.unet)
            logs.update(lambda_stats(model))
            if self.global_step % self.args.log_weight_distance_steps == 0 or self.global_step == self.max_train_steps:
                logs.update(weight_distance_logs(model))
                logs.update(lambda_logs(model))
            self.metrics_log.append(self.global_step, logs)
        self.accelerator.log(logs, step=self.global_step)
        self.result.history.append({"step": self.global_step, **{k: v for k, v in logs.items() if run_level(k)}})

    def checkpoint(self) -> None:
        if not self.main:
            return
        path = save_checkpoint(
            self.accelerator,
            self.output_dir,
            self.global_step,
            {
                **self.data_order,
                "adapter": self.config.to_dict(),
                "base_model": self.args.pretrained_model_name_or_path,
            },
            self.args.checkpoints_total_limit,
        )
        self.result.checkpoints.append(path)
        self.info("saved %s", path)

    def validate(self) -> None:
        if not (self.main and self.task.validation_prompts(self.args)):
            return
        trained = [self.unet, *self.context.trainable.values()]  # no adapter dropout while sampling
        for module in trained:
            module.eval()
        with torch.no_grad(), self.accelerator.autocast():
            rows = self.task.validation_images(self.context, self.accelerator.unwrap_model(self.unet), self.global_step)
        for module in trained:
            module.train()
        if not rows:
            return
        grid = captioned_grid(rows)  # each row under its prompt: a grid read on its own says what it shows
        path = self.output_dir / VALIDATION_DIR / f"step-{self.global_step:06d}.png"
        save_png_atomic(grid, path)
        self.result.validation_grids.append(path)
        log_images(self.accelerator, rows, self.global_step)
        self.info("validation grid: %s", path)

    # --- the end --------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        accelerator, result = self.accelerator, self.result
        accelerator.wait_for_everyone()
        if self.stop_message:
            accelerator.end_training()
            raise NonFiniteLossError(self.stop_message)
        result.global_step = self.global_step
        result.adapter_fingerprint = adapter_fingerprint(*self._unwrapped())
        if accelerator.num_processes > 1:  # equal on every process, or the processes drifted apart
            logger.info("process %d: adapter fingerprint %s", accelerator.process_index, result.adapter_fingerprint)
        # The first step includes one-off work (allocations, autotuning); leave it out of the average.
        timed = self.step_times[1:] or self.step_times
        result.seconds_per_step = sum(timed) / len(timed) if timed else None
        if self.main:
            result.adapter_path = self.output_dir / ADAPTER_FILE
            result.exports = self.write_adapter(result.adapter_path)
            if self.ema is not None:  # the averaged weights, beside the raw ones
                self.ema.store(self.trainable)
                self.ema.copy_to(self.trainable)
                path = self.output_dir / ADAPTER_EMA_FILE
                write_run_adapter(path, *self._unwrapped(), self.args, self.task, self.global_step, exports=False)
                self.ema.restore(self.trainable)
                result.exports["EMA adapter"] = path
            self.validate()
            result.checkpoints = [p for p in result.checkpoints if p.exists()]
            result.wall_seconds = result.loop_seconds = time.perf_counter() - self.started
            result.model_card = write_model_card(self.output_dir, self.args, self.task, result, self.command)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return result
