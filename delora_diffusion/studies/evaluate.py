"""Optional per-point evaluation: render the subject's prompt set with a checkpoint, score it.

For each chosen step (``final`` or a checkpoint step) of a finished point this runs ``generate.py``
(the DreamBooth prompt set of ``--eval_subject``) and ``delora-eval dreambooth`` through their own
entry points, into ``POINT/eval/<step>/``; extra flags of either come from the sweep's ``generate`` /
``evaluate`` KEY=VALUE lists, written as YAML files they read with ``--config``. Both resume: images
already rendered with the same settings are kept.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..fileio import atomic_write_text
from ..training.run_files import ADAPTER_FILE, CHECKPOINT_PREFIX

FINAL = "final"
METRIC_KEYS = ("dino", "clip_i", "clip_t")


@dataclass
class EvalSpec:
    subject: str
    class_noun: str
    real_dir: Path
    steps: tuple[str, ...] = (FINAL,)  # "final" or checkpoint step numbers, as strings
    generate_flags: dict = field(default_factory=dict)
    eval_flags: dict = field(default_factory=dict)


def adapter_at(point_dir: Path, step: str) -> Path:
    if step == FINAL:
        return point_dir / ADAPTER_FILE
    return point_dir / f"{CHECKPOINT_PREFIX}{int(step)}" / ADAPTER_FILE


def _write_flags(path: Path, flags: dict) -> Path:
    atomic_write_text(path, yaml.safe_dump(flags, sort_keys=False, allow_unicode=True))
    return path


def evaluate_step(point_dir: Path, base_model: str, spec: EvalSpec, step: str) -> dict:
    """Generate and score the prompt set at ``step``; returns ``{"dino", "clip_i", "clip_t", "results"}``
    (mean over subjects) or ``{"error": ...}``. Console output goes to ``POINT/eval/<step>/eval.log``."""
    from ..evaluation.cli import main as eval_main
    from ..inference.generate import main as generate_main

    folder = point_dir / "eval" / step
    folder.mkdir(parents=True, exist_ok=True)
    adapter = adapter_at(point_dir, step)
    if not adapter.is_file():
        return {"error": f"{adapter}: no adapter at step {step} (is it among the checkpoints kept?)"}
    images, results = folder / "images", folder / "eval.json"
    generate_argv = [
        "--config",
        str(_write_flags(folder / "generate.yaml", spec.generate_flags)),
        "--pretrained_model_name_or_path",
        base_model,
        "--adapter_file",
        str(adapter),
        "--subject",
        spec.subject,
        "--class_noun",
        spec.class_noun,
        "--output_dir",
        str(images),
        "--no_progress",
    ]
    eval_argv = [
        "dreambooth",
        "--config",
        str(_write_flags(folder / "evaluate.yaml", spec.eval_flags)),
        "--real_dir",
        str(spec.real_dir),
        "--generated_dir",
        str(images),
        "--subjects",
        spec.subject,
        "--out",
        str(results),
        "--no_progress",
    ]
    with (
        (folder / "eval.log").open("w", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        for name, entry, argv in (("generate.py", generate_main, generate_argv), ("delora-eval", eval_main, eval_argv)):
            try:
                code = entry(argv)
            except SystemExit as exc:  # argparse errors
                code = exc.code
            except Exception as exc:  # noqa: BLE001 - one point's evaluation must not stop the sweep
                print(f"{name}: error: {type(exc).__name__}: {exc}")
                code = 1
            if code:
                log.flush()
                return {"error": f"{name} failed (exit {code}); see {folder / 'eval.log'}"}
    summary = json.loads(results.read_text(encoding="utf-8"))["mean_over_subjects"]
    return {**{k: summary.get(k) for k in METRIC_KEYS}, "results": str(results)}


def reported_eval_step(result: dict) -> str | None:
    """The evaluation the tables show: the final adapter's, else the latest checkpoint's."""
    evaluations = {k: v for k, v in (result.get("evaluations") or {}).items() if "error" not in v}
    if not evaluations:
        return None
    if FINAL in evaluations:
        return FINAL
    return max(evaluations, key=int)
