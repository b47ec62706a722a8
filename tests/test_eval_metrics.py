"""DINO / CLIP-I / CLIP-T values against a direct, one-image-at-a-time computation from the same backbones."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from eval_helpers import make_generated, make_real
from PIL import Image

from delora_diffusion.evaluation import DreamBoothEvalSettings, evaluate_dreambooth
from delora_diffusion.evaluation.folders import GeneratedImage, clip_t_prompt, read_generated
from delora_diffusion.evaluation.protocols import PROTOCOLS

TOL = 1e-6


@pytest.fixture(scope="module")
def direct(tiny_dino, tiny_clip):
    """Embeddings computed the plain way: transformers models, one image or prompt per forward pass."""
    from transformers import AutoTokenizer, CLIPModel, ViTModel

    dino = ViTModel.from_pretrained(tiny_dino, add_pooling_layer=False).eval()
    clip = CLIPModel.from_pretrained(tiny_clip).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip)
    protocol = PROTOCOLS["oft"]

    def features(output):
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def unit(v):
        v = v.double().reshape(-1)
        return v / v.norm()

    def dino_of(path):
        pixels = protocol.dino_preprocess(Image.open(path).convert("RGB"))[None]
        with torch.no_grad():
            return unit(dino(pixel_values=pixels).last_hidden_state[:, 0])

    def clip_of(path):
        pixels = protocol.clip_preprocess(Image.open(path).convert("RGB"))[None]
        with torch.no_grad():
            return unit(features(clip.get_image_features(pixel_values=pixels)))

    def text_of(prompt):
        tokens = tokenizer([prompt], padding=True, return_tensors="pt")
        with torch.no_grad():
            return unit(features(clip.get_text_features(**tokens)))

    return dino_of, clip_of, text_of


def _settings(tmp_path, tiny_dino, tiny_clip, **kwargs):
    return DreamBoothEvalSettings(
        real_dir=tmp_path / "real",
        generated_dir=tmp_path / "gen",
        dino_model=str(tiny_dino),
        clip_model=str(tiny_clip),
        progress=False,
        **kwargs,
    )


def test_metrics_equal_direct_computation(tmp_path, tiny_dino, tiny_clip, direct):
    dino_of, clip_of, text_of = direct
    make_real(tmp_path / "real", {"dog": 3, "vase": 2})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2, 3: 3}, seed_base=0)
    make_generated(tmp_path / "gen", "vase", "vase", {1: 1}, seed_base=500)
    results = evaluate_dreambooth(_settings(tmp_path, tiny_dino, tiny_clip, batch_size=2))

    pooled_dino, pooled_clip_i, all_clip_t, per_subject = [], [], [], {}
    for subject in ("dog", "vase"):
        reals = sorted((tmp_path / "real" / subject).glob("*.jpg"))
        real_dino, real_clip = [dino_of(p) for p in reals], [clip_of(p) for p in reals]
        images = read_generated(tmp_path / "gen", subject)
        subject_dino, subject_clip_i, subject_clip_t = [], [], []
        for image in images:
            g_dino, g_clip = dino_of(image.path), clip_of(image.path)
            pairs_dino = [float(g_dino @ r) for r in real_dino]  # every (generated, real) pair
            pairs_clip = [float(g_clip @ r) for r in real_clip]
            clip_t = float(g_clip @ text_of(image.class_prompt))
            row = next(r for r in results["per_image"] if r["subject"] == subject and r["file"] == image.file)
            assert row["dino"] == pytest.approx(np.mean(pairs_dino), abs=TOL)
            assert row["clip_i"] == pytest.approx(np.mean(pairs_clip), abs=TOL)
            assert row["clip_t"] == pytest.approx(clip_t, abs=TOL)
            subject_dino += pairs_dino
            subject_clip_i += pairs_clip
            subject_clip_t.append(clip_t)
        per_subject[subject] = (np.mean(subject_dino), np.mean(subject_clip_i), np.mean(subject_clip_t))
        pooled_dino += subject_dino
        pooled_clip_i += subject_clip_i
        all_clip_t += subject_clip_t

    for row in results["per_subject"]:
        assert (row["dino"], row["clip_i"], row["clip_t"]) == pytest.approx(per_subject[row["subject"]], abs=TOL)
    means = np.mean(list(per_subject.values()), axis=0)
    summary = results["mean_over_subjects"]
    assert (summary["dino"], summary["clip_i"], summary["clip_t"]) == pytest.approx(tuple(means), abs=TOL)
    pooled = results["pooled"]
    assert pooled["dino"] == pytest.approx(np.mean(pooled_dino), abs=TOL)
    assert pooled["clip_i"] == pytest.approx(np.mean(pooled_clip_i), abs=TOL)
    assert pooled["clip_t"] == pytest.approx(np.mean(all_clip_t), abs=TOL)
    # 5 dog images x 3 photos + 1 vase image x 2 photos: the pool weighs dog 15:2, the subject mean 1:1
    assert pooled["n_pairs"] == len(pooled_dino) == 17
    assert abs(pooled["dino"] - summary["dino"]) > 1e-6

    dog_prompt_3 = next(r for r in results["per_prompt"] if r["subject"] == "dog" and r["prompt_index"] == 3)
    dog_rows = [r for r in results["per_image"] if r["subject"] == "dog" and r["prompt_index"] == 3]
    assert dog_prompt_3["n_images"] == 3 and dog_prompt_3["n_pairs"] == 9
    assert dog_prompt_3["dino"] == pytest.approx(np.mean([r["dino"] for r in dog_rows]), abs=1e-12)
    assert dog_prompt_3["clip_t_prompt"] == "a dog scene 3" and dog_prompt_3["prompt"] == "a sks dog scene 3"
    assert results["generation"]["adapter"] == "adapter.safetensors"


def test_identical_real_and_generated_sets_give_the_self_similarity_mean(tmp_path, tiny_dino, tiny_clip, direct):
    dino_of, clip_of, _ = direct
    make_real(tmp_path / "real", {"cat": 3})
    prompt_dir = tmp_path / "gen" / "cat" / "00"
    prompt_dir.mkdir(parents=True)
    reals = sorted((tmp_path / "real" / "cat").glob("*.jpg"))
    for seed, path in enumerate(reals):
        shutil.copy(path, prompt_dir / f"{seed}.jpg")
    (tmp_path / "real" / "classes.csv").write_text("cat,cat\n")
    results = evaluate_dreambooth(
        _settings(tmp_path, tiny_dino, tiny_clip, class_nouns=tmp_path / "real" / "classes.csv")
    )

    for metric, embed in (("dino", dino_of), ("clip_i", clip_of)):
        vectors = torch.stack([embed(p) for p in reals])
        self_similarity = float((vectors @ vectors.T).mean())  # includes the diagonal of ones
        assert results["per_subject"][0][metric] == pytest.approx(self_similarity, abs=TOL)
        assert results["pooled"][metric] == pytest.approx(self_similarity, abs=TOL)
        assert self_similarity < 1.0
    # no metadata: prompts come from the DreamBooth templates and the class noun
    assert results["per_prompt"][0]["clip_t_prompt"] == "a cat in the jungle"


def test_black_images_are_skipped_and_counted(tmp_path, tiny_dino, tiny_clip):
    make_real(tmp_path / "real", {"dog": 2})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 3, 1: 2}, black={(0, 1), (1, 0), (1, 1)})
    results = evaluate_dreambooth(_settings(tmp_path, tiny_dino, tiny_clip))
    assert results["counts"]["black_skipped"] == 3 and results["counts"]["scored_images"] == 2
    assert results["black_images"] == ["dog/00/101.png", "dog/01/100.png", "dog/01/101.png"]
    prompt_0, prompt_1 = results["per_prompt"]
    assert (prompt_0["n_images"], prompt_0["n_black"], prompt_1["n_images"], prompt_1["n_black"]) == (2, 1, 0, 2)
    assert prompt_1["dino"] is None and prompt_1["clip_t"] is None
    assert results["per_subject"][0]["n_pairs"] == 4

    # the same numbers as a run where the black images never existed
    for path in results["black_images"]:
        (tmp_path / "gen" / path).unlink()
    make_generated(tmp_path / "clean", "dog", "dog", {0: 3}, black={(0, 1)})
    (tmp_path / "clean" / "dog" / "00" / "101.png").unlink()
    lines = (tmp_path / "clean" / "dog" / "metadata.jsonl").read_text().splitlines()
    (tmp_path / "clean" / "dog" / "metadata.jsonl").write_text(
        "\n".join(line for line in lines if "101.png" not in line)
    )
    clean = evaluate_dreambooth(
        DreamBoothEvalSettings(
            real_dir=tmp_path / "real",
            generated_dir=tmp_path / "clean",
            dino_model=str(tiny_dino),
            clip_model=str(tiny_clip),
            progress=False,
        )
    )
    for metric in ("dino", "clip_i", "clip_t"):
        assert results["per_subject"][0][metric] == pytest.approx(clean["per_subject"][0][metric], abs=1e-9)


def test_all_black_subject_has_no_scores_and_is_left_out_of_the_mean(tmp_path, tiny_dino, tiny_clip):
    make_real(tmp_path / "real", {"dog": 2, "vase": 2})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2})
    make_generated(tmp_path / "gen", "vase", "vase", {0: 1}, black={(0, 0)})
    results = evaluate_dreambooth(_settings(tmp_path, tiny_dino, tiny_clip))
    dog, vase = results["per_subject"]
    assert vase["dino"] is None and vase["n_images"] == 0 and vase["n_black"] == 1
    assert results["mean_over_subjects"]["n_subjects"] == 1
    assert results["mean_over_subjects"]["dino"] == pytest.approx(dog["dino"], abs=1e-12)


def test_clip_t_prompt_choices():
    image = GeneratedImage(
        "dog", 2, None, "02/1.png", prompt="a sks dog on the beach", class_prompt="a dog on the beach", token="sks"
    )
    assert clip_t_prompt(image, "without_token", None) == "a dog on the beach"
    assert clip_t_prompt(image, "with_token", None) == "a sks dog on the beach"
    no_class_prompt = GeneratedImage("dog", 2, None, "02/1.png", prompt="a zwx dog on the beach", token="zwx")
    assert clip_t_prompt(no_class_prompt, "without_token", None) == "a dog on the beach"
    bare = GeneratedImage("teapot", 20, None, "20/1.png")
    assert clip_t_prompt(bare, "without_token", "teapot") == "a red teapot"
    assert clip_t_prompt(bare, "with_token", "teapot") == "a red sks teapot"
