"""Fine-tune on the toy world and score the result, for the learning test (and to show it can fail)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from delora_diffusion.world.render import caption

REPO = Path(__file__).resolve().parents[1]
SUBJECT_DIR = REPO / "subjects" / "robot"
CONTEXTS = ("snow", "beach", "city", "wooden_floor", "jungle", "mountain", "water", "sunflowers")
SEEDS = (0, 1)
OTHER_PROMPTS = (("a teapot in the snow", "teapot"), ("a backpack on the beach", "backpack"))
STEPS, GUIDANCE = 15, 5.0


def finetune(out: Path, steps: int, **overrides) -> Path:
    """The demo recipe (configs/demo.yaml) for ``steps`` steps with ``overrides`` (flag -> value); the adapter."""
    from train_helpers import reset_accelerate

    from delora_diffusion.training.dreambooth import build_args
    from delora_diffusion.training.dreambooth_task import DreamBoothTask
    from delora_diffusion.training.loop import train

    argv = [
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        "--max_train_steps",
        str(steps),
        "--output_dir",
        str(out),
        "--class_data_dir",
        str(out / "class_images"),
        "--instance_data_dir",
        str(SUBJECT_DIR),
        "--validation_steps",
        "0",
        "--checkpointing_steps",
        "0",
        "--report_to",
        "none",
        "--num_validation_images",
        "1",
        "--validation_prompt",
        "a sks toy in the snow",
    ]
    for flag, value in overrides.items():
        values = [] if value is True else [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        argv += [f"--{flag}", *values]
    args, _ = build_args(argv)
    reset_accelerate()
    try:
        return train(args, DreamBoothTask(args)).adapter_path
    finally:
        reset_accelerate()


def gallery(judges, folder: Path) -> tuple[torch.Tensor, list[str]]:
    """DINO embeddings of ``delora-toy-study``'s retrieval gallery (written into ``folder``) and their labels."""
    from PIL import Image

    from delora_diffusion.studies.toy_world import Subject, write_gallery

    subject = Subject(SUBJECT_DIR.name, str(SUBJECT_DIR), "toy", world_subject=True)
    files = sorted(write_gallery(folder / "gallery", subject).glob("*/*.png"))
    return judges.embed([Image.open(p).convert("RGB") for p in files], "dino"), [p.parent.name for p in files]


@dataclass
class Scores:
    retrieval: float  # share of "a sks toy {context}" images whose nearest gallery photo is the subject's
    subject_dino: float  # mean DINO cosine of those images to the subject's photos
    context_accuracy: float  # CLIP-judged context of those images
    other_dino: float  # mean DINO cosine of non-subject prompts' images to the base model's same-seed images
    other_clip: float  # the same in CLIP's image embedding (what is drawn rather than which instance)
    other_class: float  # CLIP-judged class accuracy of the non-subject prompts' images


def score(
    pipe, judges, gallery_embeddings, labels, base_other=None
) -> tuple[Scores, tuple[torch.Tensor, torch.Tensor]]:
    """The scores of ``pipe`` (with or without an adapter) and its non-subject images' DINO and CLIP embeddings."""
    from delora_diffusion.inference import sample_images
    from delora_diffusion.world.quality import retrieval_hits

    prompts = [caption("toy", c, token="sks") for c in CONTEXTS for _ in SEEDS]
    seeds = [s for _ in CONTEXTS for s in SEEDS]
    images = sample_images(pipe, prompts, seeds, num_inference_steps=STEPS, guidance_scale=GUIDANCE).images
    embeddings = judges.embed(images, "dino")
    hits = retrieval_hits(embeddings, gallery_embeddings, labels, SUBJECT_DIR.name)
    subject = gallery_embeddings[[i for i, label in enumerate(labels) if label == SUBJECT_DIR.name]]
    _, contexts = judges.zero_shot(images)
    context_accuracy = np.mean([x == c for x, c in zip(contexts, [c for c in CONTEXTS for _ in SEEDS])])
    other_images = sample_images(
        pipe,
        [p for p, _ in OTHER_PROMPTS for _ in SEEDS],
        [s for _ in OTHER_PROMPTS for s in SEEDS],
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
    ).images
    other = judges.embed(other_images, "dino"), judges.embed(other_images, "clip")
    other_dino, other_clip = (
        (1.0, 1.0)
        if base_other is None
        else (float((mine * base).sum(dim=1).mean()) for mine, base in zip(other, base_other))
    )
    classes, _ = judges.zero_shot(other_images)
    other_class = np.mean([x == c for x, c in zip(classes, [c for _, c in OTHER_PROMPTS for _ in SEEDS])])
    return Scores(
        float(hits.mean()),
        float((embeddings @ subject.T).mean()),
        float(context_accuracy),
        other_dino,
        other_clip,
        float(other_class),
    ), other
