"""``delora-eval semantic``: mmseg's metrics against a hand-computed confusion matrix, the map crop and palette
plumbing, FID with an injected extractor against a direct computation, the CLI outputs, and bad input."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from delora_diffusion.data.ade20k import IGNORE_INDEX
from delora_diffusion.data.demo_scenes import draw_scene
from delora_diffusion.data.semantic_maps import colorize, palette_lookup
from delora_diffusion.evaluation.cli import main as eval_main
from delora_diffusion.evaluation.fid import compute_fid
from delora_diffusion.evaluation.segmentation import confusion_matrix, segmentation_scores
from delora_diffusion.evaluation.semantic import SemanticEvalSettings, evaluate_semantic
from delora_diffusion.models.tiny_semantic import TinyImageFeatures

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


def test_metrics_match_a_hand_computed_confusion_matrix():
    label = np.array([[0, 0, 1], [1, 2, IGNORE_INDEX], [2, 2, 2]])
    prediction = np.array([[0, 1, 1], [1, 2, 0], [3, 2, 2]])  # the ignored pixel's prediction must not count
    confusion = confusion_matrix(prediction, label, num_classes=4)
    # rows: ground truth, columns: prediction
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 3, 1], [0, 0, 0, 0]]
    scores = segmentation_scores(confusion)
    # TP (1, 2, 3, 0); GT (2, 2, 4, 0); PRED (1, 3, 3, 1); union = GT + PRED - TP = (2, 3, 4, 1)
    np.testing.assert_allclose(scores["iou"], [1 / 2, 2 / 3, 3 / 4, 0.0])  # class 3: predicted only, IoU 0
    np.testing.assert_allclose(scores["acc"], [1 / 2, 1.0, 3 / 4, NAN])  # class 3: never in the ground truth
    assert scores["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 0) / 4)
    assert scores["mAcc"] == pytest.approx((1 / 2 + 1 + 3 / 4) / 3)
    assert scores["aAcc"] == pytest.approx(6 / 8)
    # A class absent from both ground truth and prediction has no IoU and does not lower the mean.
    wider = segmentation_scores(confusion_matrix(prediction, label, num_classes=5))
    assert np.isnan(wider["iou"][4]) and wider["mIoU"] == pytest.approx(scores["mIoU"])
    assert segmentation_scores(np.zeros((3, 3), dtype=np.int64))["mIoU"] is None


def test_fid_with_an_injected_extractor_matches_a_direct_computation(tmp_path):
    rng = np.random.default_rng(0)
    paths = {"real": [], "gen": []}
    for group, shift in (("real", 0), ("gen", 60)):
        for k in range(6):
            pixels = np.clip(rng.normal(100 + shift, 40, size=(24, 24, 3)), 0, 255).astype(np.uint8)
            path = tmp_path / f"{group}{k}.png"
            Image.fromarray(pixels).save(path)
            paths[group].append(path)
    torch.manual_seed(0)
    extractor = TinyImageFeatures().eval()

    def features(files):
        batch = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
        with torch.no_grad():
            return extractor(batch).double().numpy()

    real, gen = features(paths["real"]), features(paths["gen"])
    mean_r, mean_g = real.mean(0), gen.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    expected = float(
        ((mean_r - mean_g) ** 2).sum() + np.trace(cov_r + cov_g - 2 * scipy.linalg.sqrtm(cov_r @ cov_g).real)
    )
    value = compute_fid(paths["real"], paths["gen"], extractor, batch_size=4)
    assert value == pytest.approx(expected, rel=1e-3, abs=1e-6)
    same = compute_fid(paths["real"], paths["real"], extractor)
    assert abs(same) < 1e-6 < value  # shifted images are farther than a set from itself


def test_standard_inception_path_runs_offline_from_a_weights_file(tmp_path, monkeypatch):
    """The default FID features (torchmetrics on torch-fidelity's Inception-v3) from ``--fid_weights``: here a
    randomly initialised copy, since the real weights cannot be downloaded in CI. Checks the plumbing (weights
    file, uint8 images of their own sizes, 2048-d features), not the value."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    from delora_diffusion.evaluation.fid import load_fid_extractor

    with monkeypatch.context() as patch:
        patch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        network = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(network.state_dict(), weights)
    images = []
    for k, size in enumerate((24, 24, 32, 40)):
        path = tmp_path / f"{k}.png"
        draw_scene(random.Random(k), size=size)[0].save(path)
        images.append(path)
    extractor = load_fid_extractor("inception", weights)
    assert extractor.describe() == {"spec": "inception", "features": 2048, "weights": str(weights)}
    value = compute_fid(images[:2], images[2:], extractor, batch_size=4)
    assert np.isfinite(value) and value >= 0


def write_generated(root: Path, maps_dir: Path, size: int = 32) -> Path:
    """A generated folder in the inference contract, written by hand: each "generated" image is exactly the
    region of its map that ``map_crop`` names, so a segmenter reading colours back is right everywhere."""
    gen = root / "gen"
    maps_dir.mkdir(parents=True)
    for index in range(3):
        stem = f"m{index}"
        _, ids, _ = draw_scene(random.Random(index), size=48)
        ids = ids[:size]  # a 48 × 32 (w × h) map: generation keeps its centred 32 × 32 square
        ids[0, 10:15] = IGNORE_INDEX  # some "other", inside the crop
        colors = colorize(ids)
        Image.fromarray(colors).save(maps_dir / f"{stem}.png")
        box = [8, 0, 40, 32]
        folder = gen / stem / "00"
        folder.mkdir(parents=True)
        records = []
        for seed in (0, 1):
            image = colors[:, 8:40] if not (index == 2 and seed == 1) else np.zeros((32, 32, 3), np.uint8)
            Image.fromarray(image).save(folder / f"{seed}.png")
            records.append(
                {
                    "subject": stem,
                    "map": stem,
                    "prompt_index": 0,
                    "prompt": "p",
                    "seed": seed,
                    "file": f"00/{seed}.png",
                    "map_size": [48, 32],
                    "map_crop": box,
                    "control": "hint",
                    "guidance_scale": 9.0,
                    "num_inference_steps": 50,
                    "scheduler": "ddim",
                }
            )
        (gen / stem / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return gen


class ColourReader:
    """Stands in for a segmentation model: reads each pixel's palette colour back as its class."""

    def __init__(self, *args, **kwargs):
        self.num_labels = 150

    def describe(self):
        return {"spec": "colour reader"}

    def predict(self, images, sizes):
        out = []
        for image, size in zip(images, sizes):
            ids = palette_lookup(np.asarray(image))
            assert ids.shape == tuple(size)
            out.append(np.where(ids == IGNORE_INDEX, 0, ids))
        return out


def test_segmentation_scores_the_cropped_map_region_and_skips_black_images(tmp_path, monkeypatch):
    gen = write_generated(tmp_path, tmp_path / "maps")
    monkeypatch.setattr("delora_diffusion.evaluation.semantic.load_segmenter", ColourReader)
    results = evaluate_semantic(SemanticEvalSettings(generated_dir=gen, maps_dir=tmp_path / "maps", progress=False))
    assert results["counts"] == {
        "maps": 3,
        "generated_images": 6,
        "scored_images": 5,
        "black_skipped": 1,
        "real_images": 0,
    }
    assert results["black_images"] == ["m2/00/1.png"]
    assert results["summary"]["mIoU"] == 1.0 and results["summary"]["aAcc"] == 1.0 and results["summary"]["mAcc"] == 1.0
    seg = results["segmentation"]
    assert seg["ignored_pixels"] == 5 * 5 and seg["scored_pixels"] == 5 * (32 * 32 - 5)
    assert results["generation"]["control"] == "hint" and results["fid"] is None

    # Scoring against the whole map instead of the recorded crop would be wrong: drop the crop and see it fail.
    for stem in ("m0", "m1", "m2"):
        path = gen / stem / "metadata.jsonl"
        path.write_text(path.read_text().replace('"map_crop": [8, 0, 40, 32]', '"map_crop": [0, 0, 32, 32]'))
    shifted = evaluate_semantic(SemanticEvalSettings(generated_dir=gen, maps_dir=tmp_path / "maps", progress=False))
    assert shifted["summary"]["aAcc"] < 1.0


def test_cli_writes_json_csv_markdown_and_plot(tmp_path, tiny_segformer, tiny_fid_features, capsys):
    gen = write_generated(tmp_path, tmp_path / "maps")
    real = tmp_path / "real"
    real.mkdir()
    for k in range(3):
        photo, _, _ = draw_scene(random.Random(10 + k), size=40)
        photo.save(real / f"r{k}.jpg")
    code = eval_main(
        [
            "semantic",
            "--generated",
            str(gen),
            "--maps",
            str(tmp_path / "maps"),
            "--real",
            str(real),
            "--seg_model",
            str(tiny_segformer),
            "--fid_extractor",
            str(tiny_fid_features),
            "--plot",
            "--no_progress",
            "--name",
            "tiny",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| run | mIoU | mAcc | aAcc | FID |" in out and "| tiny |" in out
    results = json.loads((gen / "eval_semantic.json").read_text())
    assert results["format"] == "delora-eval/semantic/1"
    assert results["segmentation"]["model"]["num_labels"] == 150 and len(results["segmentation"]["per_class"]) == 150
    assert (
        0.0 <= results["summary"]["aAcc"] <= 1.0
        and results["fid"]["n_real"] == 3
        and results["fid"]["n_generated"] == 5
    )
    assert results["summary"]["fid"] == pytest.approx(results["fid"]["value"]) and results["summary"]["fid"] >= 0
    rows = list(csv.DictReader((gen / "eval_semantic.csv").open()))
    assert rows[0]["level"] == "summary" and {r["level"] for r in rows} == {"summary", "class", "image"}
    assert sum(r["level"] == "image" for r in rows) == 5
    assert (gen / "eval_semantic.png").stat().st_size > 0


@pytest.mark.parametrize("case", ["missing_map", "palette_size", "nothing_to_score", "map_size", "fid_extractor"])
def test_cli_user_errors_exit_2(case, tmp_path, tiny_segformer, capsys):
    gen = write_generated(tmp_path, tmp_path / "maps")
    argv = [
        "semantic",
        "--generated",
        str(gen),
        "--maps",
        str(tmp_path / "maps"),
        "--seg_model",
        str(tiny_segformer),
        "--no_progress",
    ]
    if case == "missing_map":
        (tmp_path / "maps" / "m1.png").unlink()
        expected = "generated map 'm1' has no map in --maps"
    elif case == "palette_size":
        palette = tmp_path / "p.txt"
        palette.write_text("0 0 0\n255 255 255\n")
        argv += ["--palette", str(palette)]
        expected = "predicts 150 classes but the palette has 2"
    elif case == "nothing_to_score":
        argv = ["semantic", "--generated", str(gen)]
        expected = "give --maps (segmentation metrics), --real (FID), or both"
    elif case == "map_size":
        Image.new("RGB", (40, 40)).save(tmp_path / "maps" / "m0.png")
        expected = "m0.png is 40×40, but"
    else:
        argv += ["--real", str(tmp_path / "maps"), "--fid_extractor", str(tmp_path / "nope.pt2")]
        expected = "expected 'inception' or an existing torch.export program"
    try:
        code = eval_main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "delora-eval" in err and "error:" in err and expected in err and "Traceback" not in err


def test_evaluation_imports_neither_training_nor_inference():
    code = (
        "import sys, delora_diffusion.evaluation.cli, delora_diffusion.evaluation.semantic, "
        "delora_diffusion.evaluation.semantic_report\n"
        "bad = [m for m in sys.modules if m.startswith(('delora_diffusion.training', 'delora_diffusion.inference'))]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_compare_semantic_runs_side_by_side(tmp_path, monkeypatch, capsys):
    from delora_diffusion.fileio import write_json_atomic as write_json

    gen = write_generated(tmp_path, tmp_path / "maps")
    monkeypatch.setattr("delora_diffusion.evaluation.semantic.load_segmenter", ColourReader)
    files = []
    for name in ("delora", "lora"):
        results = evaluate_semantic(
            SemanticEvalSettings(generated_dir=gen, maps_dir=tmp_path / "maps", name=name, progress=False)
        )
        files.append(write_json(results, tmp_path / f"{name}.json"))
    assert eval_main(["compare", *map(str, files), "--per_subject", "--plot", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "| run | images | black | mIoU | mAcc | aAcc | FID |" in out and "| delora | 5 | 1 | 1.0000" in out
    class_rows = out.split("IoU per class:")[1].strip().splitlines()[2:]
    assert class_rows and all(row.endswith("| 1.0000 | 1.0000 |") for row in class_rows)
    assert (tmp_path / "s.png").stat().st_size > 0
    dreambooth = tmp_path / "db.json"
    dreambooth.write_text(json.dumps({"format": "delora-eval/dreambooth/1", "name": "db"}))
    assert eval_main(["compare", str(files[0]), str(dreambooth)]) == 2
    assert "cannot compare DreamBooth and semantic-map results" in capsys.readouterr().err
