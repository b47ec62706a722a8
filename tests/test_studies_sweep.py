"""delora-sweep end to end on the tiny model: the robustness mechanism, failures, resume, evaluation, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from delora_diffusion.studies import records
from delora_diffusion.studies.evaluate import EvalSpec
from delora_diffusion.studies.grid import Point, SweepConfigError, SweepSpec, parse_assignments
from delora_diffusion.studies.report import write_report
from delora_diffusion.studies.sweep import main, run_sweep

REPO = Path(__file__).resolve().parents[1]
STEPS, LOG_EVERY = 10, 5


def tiny_train_config(tiny_sd: Path) -> dict:
    """The demo subject without prior preservation, 10 steps: the cheapest run that shows the mechanism."""
    return {
        "pretrained_model_name_or_path": str(tiny_sd),
        "instance_data_dir": str(REPO / "subjects" / "robot"),
        "instance_prompt": "a photo of sks toy",
        "resolution": 32,
        "center_crop": True,
        "rank": 4,
        "train_batch_size": 2,
        "lr_scheduler": "constant",
        "report_to": "none",
        "log_weight_distance_steps": LOG_EVERY,
        "checkpointing_steps": LOG_EVERY,
        "validation_prompt": ["a photo of sks toy"],
        "num_validation_images": 1,
        "validation_steps": 0,
        "validation_inference_steps": 2,
    }


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_sd, tiny_dino, tiny_clip):
    """DeLoRA and LoRA at ×1 and ×16 (ETHER+ made to fail), evaluated at a checkpoint and at the end."""
    root = tmp_path_factory.mktemp("sweep")
    broken = root / "broken_etherplus.yaml"
    broken.write_text("ether_blocks: 0\n")  # passes the flag types, rejected by the trainer's checks
    prompts = root / "prompts.txt"
    prompts.write_text("a {token} {class_noun} on the beach\na {token} {class_noun} in the snow\n")
    spec = SweepSpec(
        output_dir=root / "sweep",
        methods=("delora", "lora", "etherplus"),
        lr_factors=(1.0, 16.0),
        train_config=tiny_train_config(tiny_sd),
        method_configs={"etherplus": {"ether_blocks": 0}},
        max_train_steps=STEPS,
    )
    evaluation = EvalSpec(
        subject="robot",
        class_noun="toy",
        real_dir=REPO / "subjects",
        steps=("5", "final"),
        generate_flags={
            "prompt_file": str(prompts),
            "num_images_per_prompt": 1,
            "num_inference_steps": 2,
            "height": 32,
            "width": 32,
        },
        eval_flags={"dino_model": str(tiny_dino), "clip_model": str(tiny_clip), "no_cache": True},
    )
    lines: list[str] = []
    results = run_sweep(spec, evaluation, jobs=2, threads=1, log=lines.append)
    return spec, evaluation, results, lines


def test_lora_distance_grows_with_the_learning_rate_while_delora_stays_within_its_bound(sweep):
    spec, _, results, _ = sweep
    lora = results["lora-x1-seed0"], results["lora-x16-seed0"]
    delora = results["delora-x1-seed0"], results["delora-x16-seed0"]
    assert all(r["status"] == "done" and r["steps"] == STEPS for r in (*lora, *delora))

    lora_growth = lora[1]["distance"] / lora[0]["distance"]
    delora_growth = delora[1]["distance"] / delora[0]["distance"]
    assert lora_growth > 0.5 * 16, lora_growth  # roughly proportional to the factor
    assert delora_growth < lora_growth / 2, (delora_growth, lora_growth)

    for result in delora:
        adapter = spec.output_dir / result["point"] / "adapter.safetensors"
        coefficients = records.bound_coefficients(adapter)  # 2·max_j ‖W[:, j]‖ per layer (residual init)
        assert set(coefficients) == set(result["distance_layers"]) == set(result["lambda"])
        assert [c["step"] for c in result["curve"]] == [LOG_EVERY, STEPS]
        for entry in result["curve"]:  # at every logged step, in every layer, with λ of that step
            for layer, distance in entry["layers"].items():
                assert distance <= coefficients[layer] * abs(entry["lambda"][layer]) + 1e-6
            assert 0 < entry["total"] <= entry["bound_total"]
        for layer, distance in result["distance_layers"].items():
            assert distance <= result["bound_layers"][layer]
        assert result["distance"] <= result["bound"]
        assert result["lambda"] == pytest.approx(result["curve"][-1]["lambda"])  # file and log agree
    for result in lora:
        assert result["bound"] is None and result["lambda"] == {}
        assert [c["step"] for c in result["curve"]] == [LOG_EVERY, STEPS]


def test_a_failing_point_is_reported_and_the_others_finish(sweep):
    spec, _, results, lines = sweep
    for factor in ("1", "16"):
        failed = results[f"etherplus-x{factor}-seed0"]
        assert failed["status"] == "failed" and failed["returncode"] == 2
        assert "--ether_blocks must be >= 1" in failed["error"]
        assert (spec.output_dir / f"etherplus-x{factor}-seed0" / "train.log").is_file()
    assert sum("failed: " in line for line in lines) == 2
    assert sum(r["status"] == "done" for r in results.values()) == 4


def test_each_point_is_an_ordinary_trainer_run_with_its_own_config(sweep):
    spec, _, results, _ = sweep
    config = yaml.safe_load((spec.output_dir / "lora-x16-seed0" / "train_config.yaml").read_text())
    assert config["adapter"] == "lora" and config["learning_rate"] == pytest.approx(6e-4 * 16)
    assert "lambda_learning_rate" not in config and config["resume_from_checkpoint"] == "latest"
    delora = yaml.safe_load((spec.output_dir / "delora-x16-seed0" / "train_config.yaml").read_text())
    assert delora["learning_rate"] == pytest.approx(6e-3 * 16) and delora["lambda_learning_rate"] == 1e-3
    args = json.loads((spec.output_dir / "delora-x16-seed0" / "training_args.json").read_text())["args"]
    assert args["learning_rate"] == pytest.approx(0.096) and args["max_train_steps"] == STEPS


def test_points_are_evaluated_at_a_checkpoint_and_at_the_end(sweep):
    _, _, results, _ = sweep
    for name in ("delora-x1-seed0", "lora-x16-seed0"):
        evaluations = results[name]["evaluations"]
        assert set(evaluations) == {"5", "final"}
        for scores in evaluations.values():
            assert "error" not in scores, scores
            assert all(-1 <= scores[k] <= 1 for k in ("dino", "clip_i", "clip_t"))
            assert Path(scores["results"]).is_file()
        assert evaluations["5"]["dino"] != evaluations["final"]["dino"]  # different adapters, different images


def test_report_writes_tables_and_plots_and_a_rerun_skips_finished_points(sweep):
    spec, evaluation, results, _ = sweep
    written = {p.name for p in write_report(spec.output_dir)}
    assert {
        "summary.md",
        "summary.csv",
        "distance_vs_lr.png",
        "metric_vs_lr.png",
        "distance_vs_step.png",
        "metric_vs_step.png",
        "image_grid.png",
    } <= written
    summary = (spec.output_dir / "report" / "summary.md").read_text()
    assert "| delora |" in summary and "| lora |" in summary and "bound" in summary
    assert "failed: " in summary  # the ETHER+ points, with their error
    rows = list(csv.DictReader((spec.output_dir / "report" / "summary.csv").open()))
    assert len(rows) == 6
    lora_row = next(r for r in rows if r["point"] == "lora-x16-seed0")
    assert float(lora_row["distance"]) == pytest.approx(results["lora-x16-seed0"]["distance"])
    assert lora_row["eval_step"] == "final" and float(lora_row["dino"]) == pytest.approx(
        results["lora-x16-seed0"]["evaluations"]["final"]["dino"]
    )

    done = SweepSpec(**{**spec.__dict__, "methods": ("delora", "lora")})
    stamp = {
        name: (spec.output_dir / name / "result.json").stat().st_mtime_ns
        for name in ("delora-x1-seed0", "lora-x16-seed0")
    }
    lines: list[str] = []
    again = run_sweep(done, evaluation, jobs=2, threads=1, log=lines.append)
    assert "4 finished (skipped), 0 to run" in lines[0] and not any("eval " in line for line in lines)
    assert again["lora-x16-seed0"]["distance"] == results["lora-x16-seed0"]["distance"]
    assert {name: (spec.output_dir / name / "result.json").stat().st_mtime_ns for name in stamp} == stamp


def test_a_point_run_with_other_settings_is_not_overwritten(sweep):
    spec, _, _, _ = sweep
    changed = SweepSpec(**{**spec.__dict__, "methods": ("lora",), "lr_factors": (1.0,), "train_overrides": {"rank": 2}})
    lines: list[str] = []
    results = run_sweep(changed, log=lines.append)
    assert results["lora-x1-seed0"]["status"] == "failed" and "other settings" in results["lora-x1-seed0"]["error"]
    assert json.loads((spec.output_dir / "lora-x1-seed0" / "result.json").read_text())["status"] == "done"


def test_prolonged_mode_keeps_every_checkpoint_and_fixes_steps():
    spec = SweepSpec(
        output_dir=Path("sweep"),
        mode="prolonged",
        methods=("lora",),
        lr_factors=(1.0,),
        train_config={"checkpoints_total_limit": 2, "with_prior_preservation": True},
        max_train_steps=3000,
        checkpoint_every=250,
    )
    spec.check()
    config = spec.train_config_for(Point("lora", 1.0, 0))
    assert config["max_train_steps"] == 3000 and config["checkpointing_steps"] == 250
    assert "checkpoints_total_limit" not in config
    assert config["class_data_dir"] == str(Path("sweep") / "class_images")  # shared by all points
    with pytest.raises(SweepConfigError, match="--checkpoint_every"):
        SweepSpec(output_dir=Path("s"), mode="prolonged", max_train_steps=10).check()


def test_assignments_read_yaml_scalars_and_reject_malformed_items():
    assert parse_assignments(["max_train_steps=40", "center_crop=true", "learning_rate=1e-3", "x=[a, b]"], "train") == {
        "max_train_steps": 40,
        "center_crop": True,
        "learning_rate": "1e-3",
        "x": ["a", "b"],
    }
    with pytest.raises(SweepConfigError, match="--train: expected KEY=VALUE"):
        parse_assignments(["max_train_steps"], "train")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr_factors", "0", "1"], "--lr_factors must all be > 0"),
        (["--methods", "delora", "loraa"], "unknown ['loraa']"),
        (["--base_learning_rates", "delora:6e-3"], "expected METHOD=VALUE"),
        (["--train", "learning_rate=1"], "the sweep sets"),
        (["--train", "max_train_step=4"], "unknown key 'max_train_step' (did you mean 'max_train_steps'?)"),
        (["--evaluate"], "--evaluate needs --eval_subject"),
    ],
)
def test_bad_sweep_settings_are_usage_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output_dir", str(tmp_path / "s"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("delora-sweep: error: ") and message in err and "usage:" not in err


def test_report_of_a_folder_that_is_no_sweep_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2 and "not a sweep folder" in capsys.readouterr().err


def test_the_shipped_sweep_configs_parse(tmp_path, monkeypatch):
    from delora_diffusion.configfile import parse_args
    from delora_diffusion.studies.sweep import run_parser, spec_from_args

    monkeypatch.chdir(REPO)  # their train_config paths are relative to the repository root
    for path in sorted((REPO / "configs" / "sweeps").glob("*.yaml")):
        args = parse_args(
            run_parser(),
            [
                "--config",
                str(path),
                "--output_dir",
                str(tmp_path / path.stem),
                "--eval_subject",
                "dog",
                "--eval_class_noun",
                "dog",
                "--eval_real_dir",
                "r",
                "--train",
                "instance_prompt=a photo of sks dog",
            ],
        )
        spec, _ = spec_from_args(args)
        assert spec.points(), path
        config = spec.train_config_for(spec.points()[-1])
        assert config["instance_prompt"] == "a photo of sks dog"  # the command line's --train adds to the file's
