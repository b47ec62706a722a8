"""What the trainer logs: DeLoRA's strengths λ, the weight distance, and how trackers receive them.

‖W_ft − W_0‖_F per layer (``adapters.weight_distances``, from the low-rank factors) is the curve the
DeLoRA paper uses to show robustness to learning rate and training length. Besides the trackers,
every logged step goes to ``OUTPUT/metrics.jsonl`` (``MetricsLog``), which studies read without
TensorBoard.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ..adapters import adapter_layers, trainable_parameter_count, weight_distances


@torch.no_grad()
def lambda_stats(unet: nn.Module) -> dict[str, float]:
    """Mean/min/max of the DeLoRA strengths λ over layers; empty for other methods."""
    values = [
        getattr(layer, name).detach().float().flatten()
        for layer in adapter_layers(unet).values()
        for name in layer.lambda_params
    ]
    if not values:
        return {}
    lam = torch.cat(values)
    return {"lambda/mean": lam.mean().item(), "lambda/min": lam.min().item(), "lambda/max": lam.max().item()}


@torch.no_grad()
def lambda_logs(unet: nn.Module) -> dict[str, float]:
    """``lambda/<layer>``: each DeLoRA layer's current λ (with the bound 2|λ|·max_j‖W[:, j]‖ in mind)."""
    logs = {}
    for name, layer in adapter_layers(unet).items():
        for param in layer.lambda_params:
            key = f"lambda/{name}" if len(layer.lambda_params) == 1 else f"lambda/{name}.{param}"
            logs[key] = getattr(layer, param).detach().float().flatten()[0].item()
    return logs


def weight_distance_logs(unet: nn.Module) -> dict[str, float]:
    """``weight_distance/total`` (sum over layers) and ``weight_distance/<layer>``."""
    per_layer = weight_distances(unet)
    logs = {"weight_distance/total": float(sum(per_layer.values()))}
    logs.update({f"weight_distance/{name}": value for name, value in per_layer.items()})
    return logs


@torch.no_grad()
def adapter_fingerprint(
    unet: nn.Module,
    extra_modules: dict[str, nn.Module] | None = None,
    text_encoders: dict[str, nn.Module] | None = None,
) -> str:
    """SHA-256 of every adapter tensor (names and fp32 bytes; the UNet's, then the adapted text encoders'), then
    of the tensors of ``extra_modules`` (a task's trained modules, e.g. a hint encoder): equal on processes that
    hold equal adapters and modules."""
    import hashlib

    digest = hashlib.sha256()
    adapted = {"": unet, **{f"{name}.": encoder for name, encoder in (text_encoders or {}).items()}}
    tensors = [
        (f"{prefix}{name}.{key}", tensor)
        for prefix, model in adapted.items()
        for name, layer in adapter_layers(model).items()
        for key, tensor in sorted(layer.adapter_state_dict().items())
    ]
    tensors += [
        (f"{name}.{key}", tensor)
        for name, module in (extra_modules or {}).items()
        for key, tensor in module.state_dict().items()
    ]
    for key, tensor in tensors:
        digest.update(key.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tracker_config(values: dict) -> dict:
    """Hyper-parameters as trackers accept them (scalars and strings only)."""
    config = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = " | ".join(map(str, value))
        config[key] = "none" if value is None else value
    return config


def log_images(accelerator, rows: list[tuple[str, list]], step: int) -> None:
    """Validation images to every tracker: one tag per row (its caption), N×H×W×C for TensorBoard."""
    import numpy as np

    for tracker in accelerator.trackers:
        for index, (caption, images) in enumerate(rows):
            tag = f"validation/{index}: {caption}"
            if tracker.name == "tensorboard":
                tracker.log_images({tag: np.stack([np.asarray(im) for im in images])}, step, dataformats="NHWC")
            else:
                tracker.log_images({tag: images}, step)


class MetricsLog:
    """``OUTPUT/metrics.jsonl``: one JSON object per optimizer step, ``{"step": N, <tag>: value, ...}``.

    Holds what the trackers get (losses, learning rates, λ, and at the weight-distance steps
    ``weight_distance/total``, ``weight_distance/<layer>`` and ``lambda/<layer>``), so sweeps and
    scripts read the curves without TensorBoard. Appended line by line (a crash loses at most the line
    being written); ``start`` drops the lines past the step a run resumes from.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def start(self, step: int) -> None:
        """Keep only the records of steps <= ``step`` (0: a fresh run starts an empty file)."""
        from ..fileio import atomic_write_text

        kept = [r for r in read_metrics(self.path) if r["step"] <= step] if step and self.path.exists() else []
        atomic_write_text(self.path, "".join(_json_line(r) for r in kept))

    def append(self, step: int, logs: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(_json_line({"step": step, **logs}))


def _json_line(record: dict) -> str:
    # NaN/inf as null: the file stays strict JSON for any reader.
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean) + "\n"


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl``, in step order.

    A torn last line (the run was killed while writing it) is ignored; when the step goes back (a run
    resumed from an older checkpoint without trimming), the later records replace the earlier ones.
    Raises ``ValueError`` naming the file and line for any other unreadable line.
    """
    records: list[dict] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}, line {number}: not a metrics record ({exc})") from None
        while records and records[-1]["step"] >= step:
            records.pop()
        records.append(record)
    return records


def trainable_summary(
    unet: nn.Module, extras: dict[str, nn.Module], text_encoders: dict[str, nn.Module], num_layers: int
) -> str:
    """ "N trainable parameters in L layers", plus the adapted text encoders' and each module a task trains in
    full (e.g. a hint encoder)."""
    adapter = trainable_parameter_count(unet)
    encoders = {name: trainable_parameter_count(encoder) for name, encoder in text_encoders.items()}
    own = {name: sum(p.numel() for p in module.parameters() if p.requires_grad) for name, module in extras.items()}
    parts = [
        f", {name.replace('_', ' ')} adapter {count:,} in {len(adapter_layers(text_encoders[name]))} layers"
        for name, count in encoders.items()
    ] + [f", {name} {count:,}" for name, count in own.items()]
    counts = {**encoders, **own}
    if not counts:
        return f"{adapter:,} trainable parameters in {num_layers} layers"
    return f"{adapter + sum(counts.values()):,} trainable parameters: adapter {adapter:,} in {num_layers} layers{''.join(parts)}"


def run_level(tag: str) -> bool:
    """Tags kept in ``TrainResult.history``: everything but the per-layer distances and λ."""
    if tag.startswith("weight_distance/"):
        return tag == "weight_distance/total"
    if tag.startswith("lambda/"):
        return tag in ("lambda/mean", "lambda/min", "lambda/max")
    return True
