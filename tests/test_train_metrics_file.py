"""The trainer's machine-readable log OUTPUT/metrics.jsonl (what studies read instead of TensorBoard)."""

from __future__ import annotations

import json

import pytest

from delora_diffusion.training.metrics import MetricsLog, read_metrics


def test_a_fresh_run_starts_an_empty_file_and_appends_one_record_per_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 7, "loss": 1.0}\n')  # left over from an earlier run in the same folder
    log = MetricsLog(path)
    log.start(0)
    log.append(1, {"loss": 0.5, "weight_distance/total": 2.0, "weight_distance/a.to_q": 2.0})
    log.append(2, {"loss": float("nan")})
    assert read_metrics(path) == [
        {"step": 1, "loss": 0.5, "weight_distance/total": 2.0, "weight_distance/a.to_q": 2.0},
        {"step": 2, "loss": None},
    ]
    json.loads(path.read_text().splitlines()[1])  # strict JSON: NaN written as null


def test_a_resumed_run_keeps_the_steps_up_to_its_checkpoint(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.start(0)
    for step in range(1, 6):
        log.append(step, {"loss": float(step)})
    log.start(3)  # resumed from checkpoint-3: steps 4 and 5 will be logged again
    log.append(4, {"loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(log.path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_reader_ignores_a_torn_last_line_and_lets_a_restart_replace_later_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 1, "loss": 1}\n{"step": 2, "loss": 2}\n{"step": 3, "loss": 3}\n'
        '{"step": 2, "loss": 20}\n{"step": 3, "lo'
    )
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1), (2, 20)]


def test_reader_names_the_file_and_line_of_a_broken_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        read_metrics(path)
