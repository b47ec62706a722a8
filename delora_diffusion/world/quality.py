"""What the world's judges say about images: zero-shot class and context, and subject retrieval.

Images are embedded exactly as ``delora-eval`` embeds them (``evaluation.backbones`` with the OFT
protocol's preprocessing), so a figure here is a figure the evaluator would give.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .objects import CLASS_NOUNS, Instance, sample_instance
from .render import caption
from .scenes import CONTEXT_NAMES
from .views import sibling

GALLERY_SIBLINGS, GALLERY_OTHERS = 4, 5  # per target: others of its class and colours, and of its class


@dataclass
class Judges:
    """The DINO-style and CLIP judges loaded through the evaluator's backbone loader."""

    dino: object
    clip: object

    @classmethod
    def load(cls, dino_path: str, clip_path: str) -> Judges:
        from ..evaluation.backbones import load_backbone

        return cls(
            load_backbone(str(dino_path), "dino", flag="--dino_model"),
            load_backbone(str(clip_path), "clip", flag="--clip_model"),
        )

    def embed(self, images: list[Image.Image], role: str, batch_size: int = 64) -> torch.Tensor:
        """(N, D) L2-normalised embeddings of RGB images by the ``dino`` or ``clip`` judge."""
        from ..evaluation.protocols import get_protocol

        protocol = get_protocol("oft")
        backbone, preprocess = (
            (self.dino, protocol.dino_preprocess) if role == "dino" else (self.clip, protocol.clip_preprocess)
        )
        out = [
            backbone.embed_images(torch.stack([preprocess(im) for im in images[i : i + batch_size]]))
            for i in range(0, len(images), batch_size)
        ]
        return F.normalize(torch.cat(out), dim=-1)

    def zero_shot(self, images: list[Image.Image]) -> tuple[list[str], list[str]]:
        """CLIP's (class noun, context) for each image: the best of every "a {class} {context}" prompt."""
        pairs = [(c, x) for c in CLASS_NOUNS for x in CONTEXT_NAMES]
        texts = F.normalize(self.clip.embed_texts([caption(c, x) for c, x in pairs]), dim=-1)
        best = (self.embed(images, "clip") @ texts.T).argmax(dim=1).tolist()
        return [pairs[k][0] for k in best], [pairs[k][1] for k in best]


def retrieval_gallery(target: Instance, rng: random.Random) -> list[tuple[str, Instance]]:
    """The target and the instances it must be told from: ``GALLERY_SIBLINGS`` of its class and colours
    (another pattern or parts, so colour alone cannot pass) and ``GALLERY_OTHERS`` random ones of its class."""
    others = [sibling(target, rng) for _ in range(GALLERY_SIBLINGS)]
    others += [sample_instance(target.class_noun, rng) for _ in range(GALLERY_OTHERS)]
    return [("target", target)] + [(f"other{k}", o) for k, o in enumerate(others)]


def retrieval_hits(queries: torch.Tensor, gallery: torch.Tensor, gallery_labels: list[str], target: str) -> np.ndarray:
    """Per query: is its nearest gallery image (cosine, normalised embeddings) labelled ``target``?"""
    nearest = (queries @ gallery.T).argmax(dim=1).tolist()
    return np.array([gallery_labels[k] == target for k in nearest])


def instance_over_backdrop(
    judges: Judges, role: str, reference: list[Image.Image], elsewhere: list[Image.Image], lookalike: list[Image.Image]
) -> tuple[float, float, float]:
    """Does the ``role`` judge's embedding follow the instance rather than the backdrop?

    ``reference``: studio photos of an instance; ``elsewhere``: the same instance in other places;
    ``lookalike``: other instances in the reference photos' own place and pose. Returns the mean cosine of
    ``elsewhere`` to ``reference``, that of ``lookalike`` to ``reference``, and the share of (elsewhere,
    look-alike) pairs in which the same instance is the nearer one.
    """
    anchor = judges.embed(reference, role)
    same = (judges.embed(elsewhere, role) @ anchor.T).mean(dim=1)
    other = (judges.embed(lookalike, role) @ anchor.T).mean(dim=1)
    ranked_right = (same[:, None] > other[None, :]).float().mean()
    return float(same.mean()), float(other.mean()), float(ranked_right)
