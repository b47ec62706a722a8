"""``delora-eval`` end to end on generated folders: JSON, CSV, markdown, plots, compare, YAML config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from eval_helpers import make_generated, make_real

from delora_diffusion.evaluation.cli import main


@pytest.fixture
def run_folders(tmp_path):
    make_real(tmp_path / "real", {"dog": 3, "vase": 2}, classes={"dog": "dog", "vase": "vase"})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2, 1: 2}, black={(1, 1)})
    make_generated(tmp_path / "gen", "vase", "vase", {0: 1, 2: 1}, seed_base=300)
    return tmp_path


def _flags(root, tiny_dino, tiny_clip, *extra):
    return [
        "dreambooth",
        "--real_dir",
        str(root / "real"),
        "--generated_dir",
        str(root / "gen"),
        "--class_nouns",
        str(root / "real" / "classes.csv"),
        "--dino_model",
        str(tiny_dino),
        "--clip_model",
        str(tiny_clip),
        "--cache_dir",
        str(root / "cache"),
        "--no_progress",
        *extra,
    ]


def test_dreambooth_command_writes_json_csv_plot_and_prints_the_table(run_folders, tiny_dino, tiny_clip, capsys):
    out = run_folders / "results" / "run_a.json"
    assert main(_flags(run_folders, tiny_dino, tiny_clip, "--out", str(out), "--name", "delora", "--plot")) == 0
    printed = capsys.readouterr()
    results = json.loads(out.read_text())
    assert results["name"] == "delora" and results["protocol"] == "oft"
    assert results["subjects"] == ["dog", "vase"]
    assert results["counts"] == {
        "generated_images": 6,
        "scored_images": 5,
        "black_skipped": 1,
        "real_images": 5,
        "pairs": 3 * 3 + 2 * 2,
        "subjects": 2,
        "scored_subjects": 2,
    }
    assert [(r["subject"], r["prompt_index"]) for r in results["per_prompt"]] == [
        ("dog", 0),
        ("dog", 1),
        ("vase", 0),
        ("vase", 2),
    ]
    assert set(results["definitions"]) >= {"mean_over_subjects", "pooled", "dino", "clip_i", "clip_t"}

    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [row["level"] for row in rows] == ["prompt"] * 4 + ["subject"] * 2 + ["mean_over_subjects", "pooled"]
    assert float(rows[-1]["dino"]) == pytest.approx(results["pooled"]["dino"], abs=1e-12)
    assert float(rows[-2]["clip_t"]) == pytest.approx(results["mean_over_subjects"]["clip_t"], abs=1e-12)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = printed.out
    assert "| dog | dog | 3 | 1 | 3 |" in table
    assert "mean over subjects" in table and "pooled over all pairs (OFT eval.py)" in table
    assert f"{results['mean_over_subjects']['dino']:.4f}" in table
    assert f"wrote {out}" in printed.err


def test_default_output_goes_beside_the_generated_images(run_folders, tiny_dino, tiny_clip, capsys):
    assert main(_flags(run_folders, tiny_dino, tiny_clip, "--subjects", "vase", "--clip_t_prompt", "with_token")) == 0
    results = json.loads((run_folders / "gen" / "eval_oft.json").read_text())
    assert results["subjects"] == ["vase"] and results["name"] == "gen"
    assert results["per_prompt"][0]["clip_t_prompt"] == "a sks vase scene 0"


def test_compare_prints_runs_side_by_side_and_plots(run_folders, tiny_dino, tiny_clip, capsys, tmp_path):
    run_a, run_b, run_c = (tmp_path / f"{name}.json" for name in ("a", "b", "c"))
    assert main(_flags(run_folders, tiny_dino, tiny_clip, "--out", str(run_a), "--name", "delora")) == 0
    assert (
        main(_flags(run_folders, tiny_dino, tiny_clip, "--out", str(run_b), "--name", "lora", "--subjects", "dog")) == 0
    )
    capsys.readouterr()
    scatter = tmp_path / "scatter.png"
    assert main(["compare", str(run_a), str(run_b), "--per_subject", "--plot", str(scatter)]) == 0
    table = capsys.readouterr().out
    a, b = json.loads(run_a.read_text()), json.loads(run_b.read_text())
    assert f"| delora | oft | 2 | 5 | 1 | {a['mean_over_subjects']['dino']:.4f}" in table
    assert f"| lora | oft | 1 | 3 | 1 | {b['mean_over_subjects']['dino']:.4f}" in table
    assert "DINO per subject:" in table and "| vase | " in table
    assert scatter.read_bytes()[:4] == b"\x89PNG"

    # a run under another protocol is not comparable unless asked for
    assert main(_flags(run_folders, tiny_dino, tiny_clip, "--out", str(run_c), "--protocol", "dreambooth")) == 0
    capsys.readouterr()
    assert main(["compare", str(run_a), str(run_c)]) == 2
    assert "not comparable" in capsys.readouterr().err
    assert main(["compare", str(run_a), str(run_c), "--allow_mixed", "--names", "x,y"]) == 0
    assert "| y | dreambooth |" in capsys.readouterr().out


def test_yaml_config_supplies_flags(run_folders, tiny_dino, tiny_clip, capsys):
    config = run_folders / "eval.yaml"
    out = run_folders / "from_yaml.json"
    config.write_text(
        f"real_dir: {run_folders / 'real'}\ngenerated_dir: {run_folders / 'gen'}\n"
        f"class_nouns: {run_folders / 'real' / 'classes.csv'}\n"
        f"dino_model: {tiny_dino}\nclip_model: {tiny_clip}\nsubjects: dog\nbatch_size: 3\nno_cache: true\n"
        f"no_progress: true\nout: {out}\n"
    )
    assert main(["dreambooth", "--config", str(config), "--name", "cli-wins"]) == 0
    results = json.loads(out.read_text())
    assert results["subjects"] == ["dog"] and results["name"] == "cli-wins" and results["cache"]["dir"] is None

    config.write_text("real_dir: x\nlearning_rate: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["dreambooth", "--config", str(config)])
    assert exit_info.value.code == 2 and "unknown key 'learning_rate'" in capsys.readouterr().err


def test_the_shipped_config_file_runs_with_overrides(run_folders, tiny_dino, tiny_clip, capsys):
    shipped = Path(__file__).resolve().parents[1] / "configs" / "eval_dreambooth.yaml"
    out = run_folders / "shipped.json"
    assert (
        main(
            ["dreambooth", "--config", str(shipped), *_flags(run_folders, tiny_dino, tiny_clip)[1:], "--out", str(out)]
        )
        == 0
    )
    assert json.loads(out.read_text())["protocol"] == "oft" and out.with_suffix(".png").is_file()


def test_a_folder_of_only_black_images_is_a_failed_evaluation(tmp_path, tiny_dino, tiny_clip, capsys):
    make_real(tmp_path / "real", {"dog": 2}, classes={"dog": "dog"})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2}, black={(0, 0), (0, 1)})
    assert main(_flags(tmp_path, tiny_dino, tiny_clip)) == 1
    assert "none of the 2 generated images could be scored: all are black" in capsys.readouterr().err


def test_max_images_per_prompt_scores_the_first_seeds_of_each_prompt(tmp_path, tiny_dino, tiny_clip):
    make_real(tmp_path / "real", {"dog": 2}, classes={"dog": "dog"})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 3, 1: 1})
    out = tmp_path / "r.json"
    assert main(_flags(tmp_path, tiny_dino, tiny_clip, "--max_images_per_prompt", "2", "--out", str(out))) == 0
    results = json.loads(out.read_text())
    assert results["counts"]["generated_images"] == 3 and results["max_images_per_prompt"] == 2
    assert sorted(row["file"] for row in results["per_image"]) == ["00/100.png", "00/101.png", "01/100.png"]


def test_plot_bars_are_per_prompt_for_one_subject(run_folders, tiny_dino, tiny_clip):
    """One subject: its prompts are compared (three bars alone would compare nothing); several: the subjects."""
    from delora_diffusion.evaluation.report import bar_rows

    out = run_folders / "one.json"
    assert main(_flags(run_folders, tiny_dino, tiny_clip, "--subjects", "dog", "--out", str(out), "--plot")) == 0
    names, rows, means, what = bar_rows(json.loads(out.read_text()))
    assert [row["prompt_index"] for row in rows] == [0, 1] and names[0].startswith("00 ") and what == "subject mean"
    assert out.with_suffix(".png").is_file()
    both = run_folders / "both.json"
    assert main(_flags(run_folders, tiny_dino, tiny_clip, "--out", str(both))) == 0
    assert bar_rows(json.loads(both.read_text()))[0] == ["dog", "vase"]
