"""The shipped toy-world models load through the ordinary paths and measure what their cards claim."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from safetensors import safe_open

from delora_diffusion.world.assets import PRETRAINED_DIR, pretrained_path
from delora_diffusion.world.dataset import pretraining_scene
from delora_diffusion.world.objects import CLASS_NOUNS, sample_instance
from delora_diffusion.world.quality import retrieval_hits
from delora_diffusion.world.render import caption, render
from delora_diffusion.world.views import instance_scenes

# Fresh renders: a scene stream pretraining never drew from (pretraining used seed 0).
FRESH_SEED = 7_000_001


def test_shipped_files_fit_the_budget_and_store_float16_weights_loaded_as_float32():
    files = [p for p in PRETRAINED_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 25_000_000  # the toy-world issue's budget
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert len(weights) == 5  # unet, vae, text encoder, dino, clip
    for path in weights:
        with safe_open(str(path), "pt") as handle:
            assert {str(handle.get_slice(k).get_dtype()) for k in handle.keys()} == {"F16"}, path
    for name in ("sd/README.md", "dino/README.md", "clip/README.md", "sd/pretrain_log.txt", "quality.json"):
        assert (PRETRAINED_DIR / name).is_file(), name
    assert "delora-world-pretrain" in (PRETRAINED_DIR / "sd" / "README.md").read_text()


def test_the_trainer_and_generate_load_the_pipeline_like_sd15(toy_pipeline):
    import torch

    from delora_diffusion.training.components import load_components

    components = load_components(str(pretrained_path("sd")))
    assert components.unet.dtype == torch.float32 and components.text_encoder.dtype == torch.float32
    targets = [n for n, _ in components.unet.named_modules() if n.endswith(("to_q", "to_k", "to_v", "to_out.0"))]
    assert len(targets) >= 40 and any(".attn2." in n for n in targets)  # self- and cross-attention projections
    assert components.noise_scheduler.config.prediction_type == "v_prediction"
    assert toy_pipeline.vae_scale_factor == 4 and toy_pipeline.unet.config.sample_size == 16


def test_judges_tell_classes_contexts_and_instances_apart_on_fresh_renders(toy_judges, toy_pipeline):
    from PIL import Image

    from delora_diffusion.world.autoencoder import round_trip

    scenes = [pretraining_scene(FRESH_SEED, k) for k in range(96)]
    classes, contexts = toy_judges.zero_shot([render(s)[0] for s in scenes])
    class_accuracy = np.mean([c == s.instance.class_noun for c, s in zip(classes, scenes)])
    context_accuracy = np.mean([x == s.context for x, s in zip(contexts, scenes) if s.prop is None])
    # measured here: 0.94 and 0.86 (the cards' 400 renders: 0.86 and 0.80)
    assert class_accuracy >= 0.8 and context_accuracy >= 0.75, (class_accuracy, context_accuracy)

    rng, hits, decoded_hits = random.Random(FRESH_SEED), [], []
    for class_noun in CLASS_NOUNS:
        target, others = sample_instance(class_noun, rng), [sample_instance(class_noun, rng) for _ in range(9)]
        gallery, labels = [], []
        for label, instance in [("target", target)] + [(f"o{k}", o) for k, o in enumerate(others)]:
            gallery += [render(s)[0] for s in instance_scenes(instance, 3, rng, studio_only=True)]
            labels += [label] * 3
        queries = [render(s)[0] for s in instance_scenes(target, 4, rng)[1:]]
        gallery_embeddings = toy_judges.embed(gallery, "dino")
        hits += retrieval_hits(toy_judges.embed(queries, "dino"), gallery_embeddings, labels, "target").tolist()
        # generated pictures come out of the VAE: the judge must know an instance through its blur too
        # (a judge trained on crisp renders only scored 25 % here)
        decoded = round_trip(toy_pipeline.vae, np.stack([np.asarray(q) for q in queries]))
        decoded_hits += retrieval_hits(
            toy_judges.embed([Image.fromarray(d) for d in decoded], "dino"), gallery_embeddings, labels, "target"
        ).tolist()
    assert np.mean(hits) >= 0.6 and np.mean(decoded_hits) >= 0.6, (np.mean(hits), np.mean(decoded_hits))  # chance 0.1


def test_the_base_model_renders_its_prompts_above_a_judged_floor(toy_pipeline, toy_judges):
    from delora_diffusion.inference import sample_images

    prompts, truth = [], []
    for class_noun in CLASS_NOUNS:
        for context in ("snow", "beach", "city", "wooden_floor"):
            prompts.append(caption(class_noun, context))
            truth.append((class_noun, context))
    images = sample_images(toy_pipeline, prompts, [0] * len(prompts), num_inference_steps=15, guidance_scale=5.0).images
    classes, contexts = toy_judges.zero_shot(images)
    class_accuracy = np.mean([c == t[0] for c, t in zip(classes, truth)])
    context_accuracy = np.mean([x == t[1] for x, t in zip(contexts, truth)])
    quality = json.loads((PRETRAINED_DIR / "quality.json").read_text())["base_model"]
    # 16 images: a floor well under the card's figures (which come from 160 images)
    assert class_accuracy >= 0.5 and context_accuracy >= 0.5, (class_accuracy, context_accuracy, quality)


@pytest.mark.xfail(
    strict=True,
    reason="the toy-world issue's goal, not met yet: measured here CLIP 0.08 and DINO 0.46 of pairs ranked right "
    "(the first toy world: 0.00 and 0.47); strict, so reaching it turns this into a failure to flip",
)
def test_judges_follow_the_instance_not_the_backdrop_and_know_patterns_through_the_vae(toy_judges, toy_pipeline):
    """CLIP-I and DINO must rank a subject's photos nearer to the subject elsewhere than to another instance
    photographed in the very same place and pose (the first toy CLIP scored 0.90 for the other instance, 0.30 for
    the same one); and the DINO judge must know patterned instances after the VAE, among look-alikes of their
    own colours, as generated pictures of a patterned subject need."""
    from PIL import Image

    from delora_diffusion.world.autoencoder import round_trip
    from delora_diffusion.world.quality import instance_over_backdrop, retrieval_gallery

    rng = random.Random(FRESH_SEED + 1)
    ranked_right: dict[str, list[float]] = {"dino": [], "clip": []}
    decoded_hits: list[bool] = []
    for class_noun, pattern in zip(CLASS_NOUNS, ("stripes", "dots", "two-tone", "stripes")):
        target = replace(sample_instance(class_noun, rng), pattern=pattern)
        candidates = retrieval_gallery(target, rng)
        shots = instance_scenes(target, 3, rng, studio_only=True)
        reference = [render(s)[0] for s in shots]
        elsewhere = [render(s)[0] for s in instance_scenes(target, 8, rng)[1:] if s.context != "studio"]
        lookalike = [render(replace(s, instance=other))[0] for s, (_, other) in zip(shots, candidates[1:])]
        for role, shares in ranked_right.items():
            shares.append(instance_over_backdrop(toy_judges, role, reference, elsewhere, lookalike)[2])
        gallery, labels = [], []
        for label, instance in candidates:
            gallery += [render(s)[0] for s in instance_scenes(instance, 3, rng, studio_only=True)]
            labels += [label] * 3
        decoded = round_trip(toy_pipeline.vae, np.stack([np.asarray(image) for image in elsewhere]))
        queries = toy_judges.embed([Image.fromarray(d) for d in decoded], "dino")
        decoded_hits += retrieval_hits(queries, toy_judges.embed(gallery, "dino"), labels, "target").tolist()
    shares = {role: float(np.mean(v)) for role, v in ranked_right.items()}
    assert shares["clip"] >= 0.7 and shares["dino"] >= 0.7, shares
    assert np.mean(decoded_hits) >= 0.6, np.mean(decoded_hits)  # chance 0.1, look-alikes of its colours included
