"""What a sweep runs: its settings, its grid of points, and each point's complete trainer config.

A point is one (method, learning-rate factor, seed). Its trainer config is layered, later wins:
the shared ``train_config`` YAML < the method's own YAML (``method_configs``) < the ``train``
KEY=VALUE overrides < what the point fixes (adapter, learning rates, seed, output folder, and in
prolonged mode the step count and checkpoint interval).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..adapters import METHOD_TABLE, METHODS, PAPER_LAMBDA_LEARNING_RATE
from ..configfile import ConfigFileError, load_yaml
from ..errors import UserError

# The DeLoRA paper's learning-rate robustness study (Fig. 2): base rates per method, DeLoRA's λ rate.
PAPER_BASE_LEARNING_RATES = {name: row.sweep_lr for name, row in METHOD_TABLE.items()}
DEFAULT_METHODS = ("delora", "lora", "dora", "etherplus")
DEFAULT_LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
MODES = ("grid", "prolonged")
# Keys a point sets itself; a train override of one of them would silently be ignored.
POINT_KEYS = ("adapter", "learning_rate", "seed", "output_dir", "resume_from_checkpoint")


class SweepConfigError(UserError):
    """Sweep settings that cannot be used; the message names the flag (or file) and what was expected."""


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, object]:
    """``["max_train_steps=40", "center_crop=true"]`` → ``{"max_train_steps": 40, "center_crop": True}``.

    Values are read as YAML scalars (numbers, true/false, lists in brackets); anything else stays a string.
    """
    values: dict[str, object] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepConfigError(f"--{flag}: expected KEY=VALUE, got {item!r}")
        try:
            values[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            values[key] = text
    return values


def parse_method_table(items: list[str] | None, flag: str, convert=str) -> dict[str, object]:
    """``["delora=6e-3", "lora=6e-4"]`` → ``{"delora": 0.006, "lora": 0.0006}`` (method names checked)."""
    table = {}
    for item in items or []:
        method, sep, text = item.partition("=")
        if not sep or method not in METHODS:
            raise SweepConfigError(
                f"--{flag}: expected METHOD=VALUE with METHOD one of {', '.join(METHODS)}, got {item!r}"
            )
        try:
            table[method] = convert(text)
        except ValueError:
            raise SweepConfigError(f"--{flag}: bad value in {item!r}") from None
    return table


def read_yaml_mapping(path: str | Path, flag: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"--{flag} {path}: no such file")
    try:
        values = load_yaml(path) or {}
    except ConfigFileError as exc:
        raise SweepConfigError(f"--{flag} {exc}") from None
    if not isinstance(values, dict):
        raise SweepConfigError(f"--{flag} {path}: expected a mapping of flag_name: value")
    return values


def factor_label(factor: float) -> str:
    return f"{factor:g}"


@dataclass(frozen=True)
class Point:
    method: str
    lr_factor: float
    seed: int

    @property
    def name(self) -> str:
        """Folder name, e.g. ``lora-x0.25-seed0``."""
        return f"{self.method}-x{factor_label(self.lr_factor)}-seed{self.seed}"


@dataclass
class SweepSpec:
    """Everything ``delora-sweep`` needs; built from its flags by ``sweep.spec_from_args``."""

    output_dir: Path
    mode: str = "grid"
    methods: tuple[str, ...] = DEFAULT_METHODS
    lr_factors: tuple[float, ...] = DEFAULT_LR_FACTORS
    seeds: tuple[int, ...] = (0,)
    base_learning_rates: dict[str, float] = field(default_factory=dict)  # missing methods: the paper's
    lambda_learning_rate: float = PAPER_LAMBDA_LEARNING_RATE
    scale_lambda_learning_rate: bool = False
    train_config: dict = field(default_factory=dict)
    method_configs: dict[str, dict] = field(default_factory=dict)
    train_overrides: dict = field(default_factory=dict)
    max_train_steps: int | None = None
    checkpoint_every: int | None = None

    def points(self) -> list[Point]:
        return [Point(m, f, s) for m in self.methods for f in self.lr_factors for s in self.seeds]

    def base_learning_rate(self, method: str) -> float:
        return self.base_learning_rates.get(method, PAPER_BASE_LEARNING_RATES[method])

    def point_dir(self, point: Point) -> Path:
        return self.output_dir / point.name

    def check(self) -> None:
        if self.mode not in MODES:
            raise SweepConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name, values in (("methods", self.methods), ("lr_factors", self.lr_factors), ("seeds", self.seeds)):
            if not values:
                raise SweepConfigError(f"--{name} must not be empty")
            if len(set(values)) != len(values):
                raise SweepConfigError(f"--{name} lists a value twice: {list(values)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise SweepConfigError(f"--methods: unknown {unknown} (expected some of {', '.join(METHODS)})")
        if any(f <= 0 for f in self.lr_factors):
            raise SweepConfigError(f"--lr_factors must all be > 0, got {list(self.lr_factors)}")
        for method, lr in self.base_learning_rates.items():
            if lr <= 0:
                raise SweepConfigError(f"--base_learning_rates {method}={lr}: must be > 0")
        fixed = sorted(set(POINT_KEYS) & set(self.train_overrides))
        if fixed:
            raise SweepConfigError(
                f"--train {fixed[0]}=...: the sweep sets {', '.join(POINT_KEYS)} for each point "
                "(use --methods, --base_learning_rates, --lr_factors, --seeds)"
            )
        if self.mode == "prolonged" and not (self.max_train_steps and self.checkpoint_every):
            raise SweepConfigError(
                "--mode prolonged needs --max_train_steps and --checkpoint_every "
                "(the long run and its checkpoint interval)"
            )
        for name in ("max_train_steps", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SweepConfigError(f"--{name} must be >= 1, got {value}")

    def train_config_for(self, point: Point) -> dict:
        """The point's complete trainer config (``train_dreambooth.py`` flag names → values)."""
        config = {**self.train_config, **self.method_configs.get(point.method, {}), **self.train_overrides}
        config.pop("config", None)
        if config.get("with_prior_preservation") and not config.get("class_data_dir"):
            # One set of class images for the whole sweep instead of one per point.
            config["class_data_dir"] = str(self.output_dir / "class_images")
        config.update(
            adapter=point.method,
            learning_rate=self.base_learning_rate(point.method) * point.lr_factor,
            seed=point.seed,
            output_dir=str(self.point_dir(point)),
            resume_from_checkpoint="latest",
        )
        if METHOD_TABLE[point.method].strength:
            scale = point.lr_factor if self.scale_lambda_learning_rate else 1.0
            config["lambda_learning_rate"] = self.lambda_learning_rate * scale
        else:
            config.pop("lambda_learning_rate", None)
        if self.max_train_steps:
            config["max_train_steps"] = self.max_train_steps
        if self.checkpoint_every:
            config["checkpointing_steps"] = self.checkpoint_every
        if self.mode == "prolonged":
            config.pop("checkpoints_total_limit", None)  # every checkpoint is a point of the curve to evaluate
        return config

    def describe(self) -> dict:
        """JSON-able summary written to ``SWEEP/sweep.json`` (read by the report)."""
        return {
            "mode": self.mode,
            "methods": list(self.methods),
            "lr_factors": list(self.lr_factors),
            "seeds": list(self.seeds),
            "base_learning_rates": {m: self.base_learning_rate(m) for m in self.methods},
            "lambda_learning_rate": self.lambda_learning_rate,
            "scale_lambda_learning_rate": self.scale_lambda_learning_rate,
            "max_train_steps": self.max_train_steps,
            "checkpoint_every": self.checkpoint_every,
            "points": [p.name for p in self.points()],
        }


def config_digest(config: dict) -> str:
    """Fingerprint of a point's trainer config: a finished point is reused only under the same one."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
