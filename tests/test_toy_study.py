"""``delora-toy-study`` end to end on the shipped toy world: any folder of photos is a subject, trained on,
rendered and scored, with intervals over subjects × seeds in its table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from delora_diffusion.studies.intervals import bootstrap_mean
from delora_diffusion.studies.toy_world import main, resolve_subjects

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_any_subject_folder_is_trained_rendered_and_scored(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the study reads configs/demo.yaml and subjects/ as the README runs it
    mine = tmp_path / "my_teapot"
    shutil.copytree(REPO / "subjects" / "teapot", mine)
    out = tmp_path / "study"
    argv = [
        "--out",
        str(out),
        "--subjects",
        "--subject_dir",
        str(mine),
        "--class_noun",
        "teapot",
        "--methods",
        "delora",
        "--seeds",
        "0",
        "--steps",
        "2",
        "--jobs",
        "1",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    points = {(p["subject"], p["method"]): p for p in results["points"]}
    assert set(points) == {("my_teapot", "base"), ("my_teapot", "delora")}
    for point in points.values():
        assert point["images"] == 20  # the 20 context prompts, one image each
        assert all(np.isfinite(point[k]) for k in ("retrieval", "dino", "clip_i", "clip_t", "context_accuracy"))
    args = json.loads((out / "my_teapot" / "delora-x1-seed0" / "run" / "training_args.json").read_text())["args"]
    assert Path(args["instance_data_dir"]) == mine  # the folder given, not the demo's robot
    assert args["instance_prompt"] == "a photo of sks teapot" and args["class_prompt"] == "a photo of a teapot"
    table = (out / "table.md").read_text()
    assert "my_teapot (teapot)" in table and "| delora | 0.02 |" in table
    gallery = sorted(p.name for p in (out / "galleries" / "my_teapot").iterdir() if p.is_dir())
    assert gallery == ["my_teapot"] + [f"other-{k}" for k in range(9)]


def test_subjects_are_checked_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="--subjects dragon: the world's subjects are"):
        resolve_subjects(["dragon"], [], [])
    with pytest.raises(SystemExit, match="--class_noun 'dog': the toy model knows"):
        resolve_subjects([], [str(tmp_path)], ["dog"])
    with pytest.raises(SystemExit, match="not a folder of .png/.jpg photos"):
        resolve_subjects([], [str(tmp_path)], ["toy"])
    with pytest.raises(SystemExit, match="one --class_noun per --subject_dir"):
        resolve_subjects([], [str(tmp_path)], [])


def test_bootstrap_intervals_hold_the_mean_and_widen_with_spread():
    tight, wide = bootstrap_mean([0.5, 0.51, 0.49, 0.5]), bootstrap_mean([0.1, 0.9, 0.2, 0.8])
    assert tight.low <= tight.mean <= tight.high and wide.low <= wide.mean <= wide.high
    assert wide.high - wide.low > 10 * (tight.high - tight.low)
    assert bootstrap_mean([0.3]).low == bootstrap_mean([0.3]).high == 0.3 and bootstrap_mean([None]) is None
    assert str(bootstrap_mean([0.1, 0.9, 0.2, 0.8])).startswith("0.500 [")
