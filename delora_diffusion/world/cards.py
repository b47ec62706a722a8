"""Quality figures of freshly pretrained toy-world models and the cards written beside their weights."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..fileio import atomic_write_text, write_json_atomic
from .dataset import pretraining_scene
from .objects import CLASS_NOUNS, PATTERNS, sample_instance
from .quality import (
    GALLERY_OTHERS,
    GALLERY_SIBLINGS,
    Judges,
    instance_over_backdrop,
    retrieval_gallery,
    retrieval_hits,
)
from .recipes import RECIPES
from .render import caption, render
from .scenes import CONTEXT_NAMES, CONTEXTS
from .views import instance_scenes

QUALITY_SEED_OFFSET = 1_000_003  # fresh renders: a scene stream pretraining never drew from
TARGETS_PER_CLASS = 8  # retrieval targets, each pattern twice
VIEWS = 5
QUERIES = 4
BASE_STEPS, BASE_GUIDANCE = 25, 5.0


def judge_quality(judges: Judges, seed: int, renders: int, vae=None) -> dict:
    """CLIP zero-shot class/context accuracy, DINO instance retrieval, and whether each judge's image embedding
    follows the instance rather than the backdrop, on renders pretraining never saw.

    With ``vae``, retrieval is also measured with every query decoded by it, as generated pictures are,
    separately for plain and patterned targets.
    """
    from .autoencoder import round_trip

    scenes = [pretraining_scene(seed + QUALITY_SEED_OFFSET, k) for k in range(renders)]
    images = [render(s)[0] for s in scenes]
    classes, contexts = judges.zero_shot(images)
    class_hits = [c == s.instance.class_noun for c, s in zip(classes, scenes)]
    context_hits = [x == s.context for x, s in zip(contexts, scenes) if s.prop is None]
    rng = random.Random(seed + QUALITY_SEED_OFFSET)
    retrieval, decoded = [], {"plain": [], "patterned": []}
    backdrop = {
        role: {"same_instance_elsewhere": [], "other_instance_same_backdrop": [], "wins": []}
        for role in ("dino", "clip")
    }
    for class_noun in CLASS_NOUNS:
        for j in range(TARGETS_PER_CLASS):
            target = replace(sample_instance(class_noun, rng), pattern=PATTERNS[j % len(PATTERNS)])
            gallery, labels, studio_scenes = [], [], []
            for label, instance in retrieval_gallery(target, rng):
                shots = instance_scenes(instance, VIEWS, rng, studio_only=True)
                studio_scenes.append(shots)
                gallery += [render(s)[0] for s in shots]
                labels += [label] * VIEWS
            query_scenes = instance_scenes(target, QUERIES + 1, rng)[1:]
            queries = [render(s)[0] for s in query_scenes]
            gallery_embeddings = judges.embed(gallery, "dino")
            retrieval += retrieval_hits(judges.embed(queries, "dino"), gallery_embeddings, labels, "target").tolist()
            if vae is not None:
                decoded_queries = [
                    Image.fromarray(a) for a in round_trip(vae, np.stack([np.asarray(q) for q in queries]))
                ]
                decoded["plain" if target.pattern == "plain" else "patterned"] += retrieval_hits(
                    judges.embed(decoded_queries, "dino"), gallery_embeddings, labels, "target"
                ).tolist()
            # the target elsewhere against another instance in the target's own studio shots (same backdrop and pose)
            elsewhere = [render(s)[0] for s in query_scenes if s.context != "studio"]
            lookalike = [
                render(replace(s, instance=studio_scenes[1 + k % (len(studio_scenes) - 1)][0].instance))[0]
                for k, s in enumerate(studio_scenes[0])
            ]
            for role in ("dino", "clip"):
                if not elsewhere:
                    continue
                same, other, wins = instance_over_backdrop(judges, role, gallery[:VIEWS], elsewhere, lookalike)
                backdrop[role]["same_instance_elsewhere"].append(same)
                backdrop[role]["other_instance_same_backdrop"].append(other)
                backdrop[role]["wins"].append(wins)
    targets = len(CLASS_NOUNS) * TARGETS_PER_CLASS
    figures = {
        "renders": renders,
        "clip_class_accuracy": float(np.mean(class_hits)),
        "clip_context_accuracy": float(np.mean(context_hits)),
        "dino_retrieval_accuracy": float(np.mean(retrieval)),
        "retrieval_setup": f"{len(retrieval)} context views of {targets} instances (each pattern equally "
        f"often) vs {VIEWS} studio views of the instance, of {GALLERY_SIBLINGS} others of "
        f"its class and colours and of {GALLERY_OTHERS} others of its class",
        "instance_over_backdrop": {
            role: {
                "same_instance_elsewhere": float(np.mean(v["same_instance_elsewhere"])),
                "other_instance_same_backdrop": float(np.mean(v["other_instance_same_backdrop"])),
                "share_ranked_right": float(np.mean(v["wins"])),
            }
            for role, v in backdrop.items()
        },
    }
    if vae is not None:
        figures["dino_retrieval_accuracy_decoded"] = float(np.mean(decoded["plain"] + decoded["patterned"]))
        figures["dino_retrieval_accuracy_decoded_plain"] = float(np.mean(decoded["plain"]))
        figures["dino_retrieval_accuracy_decoded_patterned"] = float(np.mean(decoded["patterned"]))
    return figures


@torch.no_grad()
def identifier_separation(sd_path: Path, token: str = "sks") -> dict:
    """How far the text encoder's hidden states (all positions, as the UNet reads them) move when the
    identifier replaces the article, "a photo of sks toy" against "a photo of a toy", relative to their
    norm; beside it, the move from one class noun to another ("a photo of a toy" against "... a teapot")."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(sd_path, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(sd_path, subfolder="text_encoder").eval()

    def hidden(prompt: str) -> torch.Tensor:
        ids = tokenizer(
            prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        return encoder(ids)[0][0]

    def moved(a: str, b: str) -> float:
        ha, hb = hidden(a), hidden(b)
        return float((ha - hb).norm() / hb.norm())

    identifier = [moved(caption(c, token=token), caption(c)) for c in CLASS_NOUNS]
    nouns = [moved(caption(a), caption(b)) for a in CLASS_NOUNS for b in CLASS_NOUNS if a != b]
    return {
        "token": token,
        "identifier_vs_article": float(np.mean(identifier)),
        "class_noun_vs_class_noun": float(np.mean(nouns)),
    }


def base_model_quality(sd_path: Path, judges: Judges, images_per_prompt: int) -> dict:
    """CLIP-judged class and context accuracy of the base model's images for every "a {class} {context}" prompt."""
    from ..inference import load_pipeline, sample_images

    pipe = load_pipeline(str(sd_path))
    prompts, truth = [], []
    for class_noun in CLASS_NOUNS:
        for context in CONTEXTS:
            for seed in range(images_per_prompt):
                prompts.append(caption(class_noun, context.name))
                truth.append((class_noun, context.name, seed))
    images: list[Image.Image] = []
    for i in range(0, len(prompts), 16):
        images += sample_images(
            pipe,
            prompts[i : i + 16],
            [t[2] for t in truth[i : i + 16]],
            num_inference_steps=BASE_STEPS,
            guidance_scale=BASE_GUIDANCE,
        ).images
    classes, contexts = judges.zero_shot(images)
    return {
        "prompts": len(prompts) // images_per_prompt,
        "images": len(images),
        "class_accuracy": float(np.mean([c == t[0] for c, t in zip(classes, truth)])),
        "context_accuracy": float(np.mean([x == t[1] for x, t in zip(contexts, truth)])),
        "chance": {"class": 1 / len(CLASS_NOUNS), "context": 1 / len(CONTEXT_NAMES)},
        "sampling": f"DPM-Solver++ {BASE_STEPS} steps, guidance {BASE_GUIDANCE}",
    }


def vae_quality(sd_path: Path, seed: int, renders: int) -> dict:
    """Mean absolute reconstruction error of the VAE on fresh renders, in 0..255 pixel units."""
    from diffusers import AutoencoderKL

    from .autoencoder import reconstruction_error

    vae = AutoencoderKL.from_pretrained(sd_path, subfolder="vae").eval()
    images = np.stack([np.asarray(render(pretraining_scene(seed + QUALITY_SEED_OFFSET, k))[0]) for k in range(renders)])
    return {"reconstruction_mae_255": reconstruction_error(vae, images), "renders": renders}


def measure_quality(out: Path, recipe, seed: int, log) -> dict:
    """Every figure of the cards, from the models in ``out/{sd,dino,clip}``."""
    judges = Judges.load(str(out / "dino"), str(out / "clip"))
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(out / "sd" / "vae", torch_dtype=torch.float32)
    quality = {"judges": judge_quality(judges, seed, recipe.quality_renders, vae)}
    log(f"judges: {json.dumps(quality['judges'])}")
    quality["vae"] = vae_quality(out / "sd", seed, min(recipe.quality_renders, 200))
    quality["text_encoder"] = identifier_separation(out / "sd")
    log(f"text encoder: {json.dumps(quality['text_encoder'])}")
    log(f"vae: {json.dumps(quality['vae'])}")
    quality["base_model"] = base_model_quality(out / "sd", judges, recipe.quality_images_per_prompt)
    log(f"base model: {json.dumps(quality['base_model'])}")
    return quality


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _card(title: str, what: str, figures: list[str], command: str, seed: int, recipe, minutes: str) -> str:
    name = next((k for k, r in RECIPES.items() if r == recipe), None)
    reproduce = (
        "delora-world-pretrain"
        + (f" --recipe {name}" if name not in (None, "full") else "")
        + (f" --seed {seed}" if seed else "")
    )
    lines = [
        f"# {title}",
        "",
        what,
        "",
        "## Measured quality",
        "",
        *[f"- {f}" for f in figures],
        "",
        "## How it was made",
        "",
        "```bash",
        f"{reproduce}   # every stage: sd, judges, cards",
        "```",
        "",
        f"These figures were measured by `{command}`.",
        "",
        f"Seed {seed}; the recipe (`delora_diffusion/world/recipes.py`, `Recipe`):",
        "",
        "```json",
        json.dumps(asdict(recipe), indent=2),
        "```",
        "",
        f"{minutes} The training log is `pretrain_log.txt` beside this card. Weights are stored as float16 "
        "and load as float32.",
        "",
    ]
    return "\n".join(lines)


def write_cards(out: Path, recipe, seed: int, command: str, quality: dict, timings: dict) -> None:
    """``README.md`` of ``out/sd``, ``out/dino`` and ``out/clip``, and ``out/quality.json``."""
    judges, base, vae, text = quality["judges"], quality["base_model"], quality["vae"], quality["text_encoder"]
    backdrop = judges["instance_over_backdrop"]

    def follows(role: str) -> str:
        figures = backdrop[role]
        return (
            f"similarity to an instance's studio photos of the same instance in another place "
            f"{figures['same_instance_elsewhere']:.2f} against another instance in those very photos' place "
            f"and pose {figures['other_instance_same_backdrop']:.2f}; ranked right for "
            f"{_pct(figures['share_ranked_right'])} of pairs"
        )

    write_json_atomic(quality, out / "quality.json", indent=2)
    sd_time = f"Training took {timings.get('sd_minutes', '?')} min on 2 CPU cores (rendering included)."
    judge_time = f"Both judges together took {timings.get('judges_minutes', '?')} min on 2 CPU cores."
    if timings.get("note"):  # how the run shared the machine, when it differs from one stage after the other
        sd_time, judge_time = f"{sd_time} ({timings['note']})", f"{judge_time} ({timings['note']})"
    atomic_write_text(
        out / "sd" / "README.md",
        _card(
            "Toy-world Stable Diffusion",
            "A diffusers `StableDiffusionPipeline` trained from scratch on the toy world (64 × 64 px): "
            "AutoencoderKL (4× downsampling, 8 latent channels), UNet2DConditionModel with self- and cross-attention "
            "at 8 × 8 and 4 × 4, a 4-layer CLIPTextModel with a word-level CLIPTokenizer, cosine schedule with "
            "v-prediction; captions are the DreamBooth templates and alt-text descriptions of the instance. "
            "Load it like SD 1.5: `--pretrained_model_name_or_path` this folder.",
            [
                f"class accuracy of its images (CLIP judge, {base['images']} images of {base['prompts']} "
                f'"a {{class}} {{context}}" prompts): {_pct(base["class_accuracy"])} (chance {_pct(base["chance"]["class"])})',
                f"context accuracy: {_pct(base['context_accuracy'])} (chance {_pct(base['chance']['context'])})",
                f"sampling: {base['sampling']}",
                f"VAE reconstruction error: {vae['reconstruction_mae_255']:.1f} / 255 (mean absolute, {vae['renders']} fresh renders)",
                f"VAE and patterns: the DINO judge retrieves VAE-decoded views of patterned instances "
                f"{_pct(judges['dino_retrieval_accuracy_decoded_patterned'])} of the time, of plain ones "
                f"{_pct(judges['dino_retrieval_accuracy_decoded_plain'])} ({judges['retrieval_setup']})",
                f'text encoder: "a photo of {text["token"]} {{class}}" moves the hidden states of "a photo of a {{class}}" '
                f"by {_pct(text['identifier_vs_article'])} of their norm (one class noun for another: "
                f"{_pct(text['class_noun_vs_class_noun'])}); the identifiers' embeddings are random rows at the trained "
                f"words' mean norm, as a real rare token's is an ordinary trained row",
            ],
            command,
            seed,
            recipe,
            sd_time,
        ),
    )
    atomic_write_text(
        out / "dino" / "README.md",
        _card(
            "Toy-world DINO-style judge",
            "A transformers `ViTModel` (224 px input, 32 px patches); its CLS token is the DINO embedding "
            "(`delora-eval --dino_model` this folder). Trained for instance discrimination: two pictures of one "
            "instance in other poses and contexts, or a picture and its round trip through the toy VAE, are "
            "positives, other instances negatives, among them always one of the same class and colours.",
            [
                f"instance retrieval (top-1): {_pct(judges['dino_retrieval_accuracy'])} — {judges['retrieval_setup']}; "
                f"chance 10 %",
                f"the same with every query decoded by the toy VAE, as generated pictures are: "
                f"{_pct(judges['dino_retrieval_accuracy_decoded'])} (patterned instances "
                f"{_pct(judges['dino_retrieval_accuracy_decoded_patterned'])}, plain "
                f"{_pct(judges['dino_retrieval_accuracy_decoded_plain'])})",
                f"instance over backdrop: {follows('dino')}",
            ],
            command,
            seed,
            recipe,
            judge_time,
        ),
    )
    atomic_write_text(
        out / "clip" / "README.md",
        _card(
            "Toy-world CLIP judge",
            "A transformers `CLIPModel` with the world's tokenizer (`delora-eval --clip_model` this folder), trained "
            "contrastively on pretraining renders with alt-text captions that describe the instance (colours, "
            "pattern, with or without the place) and the DreamBooth templates, in batches of a few places with many "
            "images each.",
            [
                f"zero-shot class accuracy on {judges['renders']} fresh renders: {_pct(judges['clip_class_accuracy'])} "
                f"(chance 25 %)",
                f"zero-shot context accuracy: {_pct(judges['clip_context_accuracy'])} (chance {100 / len(CONTEXT_NAMES):.1f} %)",
                f"CLIP-I, instance over backdrop: {follows('clip')}",
            ],
            command,
            seed,
            recipe,
            judge_time,
        ),
    )
