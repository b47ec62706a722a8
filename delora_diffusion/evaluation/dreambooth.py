"""DreamBooth subject-fidelity and prompt-fidelity metrics: DINO, CLIP-I, CLIP-T (Ruiz et al., 2023, Sec. 4.1).

For a subject with real-image embeddings r_1..r_R and generated-image embeddings g_1..g_G (all-black,
safety-filtered images skipped):

- DINO   = mean over all (i, j) of cos(g_i, r_j), with DINO ViT-S/16 CLS embeddings;
- CLIP-I = the same with CLIP image embeddings;
- CLIP-T = mean over i of cos(g_i, t_i), t_i the CLIP text embedding of image i's prompt.

Reported per (subject, prompt), per subject, as the unweighted mean over subjects, and pooled over every
(generated, real) pair of every subject (what OFT's eval.py prints; subjects with more photos weigh more).
Plain cosine similarities: no ×100, no clipping at 0.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..fileio import file_sha256
from .backbones import Backbone, load_backbone
from .embedding_cache import EmbeddingCache
from .errors import EvaluationInputError
from .folders import (
    GENERATION_KEYS,
    GeneratedImage,
    clip_t_prompt,
    generated_subjects,
    load_class_nouns,
    read_generated,
    real_images,
)
from .images import is_black, load_rgb
from .preprocessing import ImagePreprocess
from .protocols import DEFAULT_PROTOCOL, get_protocol
from .protocols import DREAMBOOTH_METRICS as METRICS
from .protocols import DREAMBOOTH_RESULTS_FORMAT as RESULTS_FORMAT

DEFINITIONS = {
    "dino": "mean cosine similarity of DINO CLS embeddings over (generated, real) image pairs",
    "clip_i": "mean cosine similarity of CLIP image embeddings over (generated, real) image pairs",
    "clip_t": "mean cosine similarity of CLIP image and prompt embeddings over generated images",
    "per_prompt": "one subject and prompt: DINO/CLIP-I over its images x the subject's real images; CLIP-T over its images",
    "per_subject": "all (generated, real) pairs of the subject; CLIP-T over all its images",
    "mean_over_subjects": "unweighted mean of the per-subject values (every subject counts once)",
    "pooled": "mean over all (generated, real) pairs of all subjects, CLIP-T over all images (OFT eval.py's number; "
    "subjects with more real or generated images weigh more)",
}


@dataclass
class DreamBoothEvalSettings:
    """Inputs of one evaluation run (the CLI flags of ``delora-eval dreambooth``)."""

    real_dir: Path
    generated_dir: Path
    subjects: list[str] | None = None
    protocol: str = DEFAULT_PROTOCOL
    dino_model: str | None = None  # None: the protocol's default
    clip_model: str | None = None
    class_nouns: Path | None = None
    clip_t_prompt: str = "without_token"
    batch_size: int = 32
    workers: int = 2  # threads decoding and preprocessing images
    device: str = "cpu"
    cache_dir: Path | None = None  # None: no embedding cache
    name: str | None = None
    progress: bool = True
    max_images_per_prompt: int | None = None  # None: every image; OFT's eval.py scores the first 4


@dataclass
class _Encoder:
    """One role (DINO or CLIP image): its backbone, the protocol's preprocessing and the real-image cache."""

    role: str
    backbone: Backbone
    preprocess: ImagePreprocess
    cache: EmbeddingCache


def _normalized(embeddings: torch.Tensor) -> np.ndarray:
    array = embeddings.double().numpy()
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def mean_pair_cosines(generated: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """(G, D), (R, D) embeddings -> (G,) float64: for each generated image, its mean cosine to the R real ones."""
    return (_normalized(generated) @ _normalized(real).T).mean(axis=1)


def row_cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(N, D), (N, D) -> (N,) float64 cosine similarity of matching rows."""
    return (_normalized(a) * _normalized(b)).sum(axis=1)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Embedder:
    """Batched, no-grad embedding of image files, decoding on a few threads, with a progress bar."""

    def __init__(self, encoders: list[_Encoder], batch_size: int, workers: int, bar: tqdm):
        self.encoders = encoders
        self.batch_size = batch_size
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self.bar = bar

    def close(self) -> None:
        self.pool.shutdown()

    def _decode(self, path: Path, roles: tuple[str, ...], skip_black: bool):
        image = load_rgb(path)
        if skip_black and is_black(image):
            return None
        return {e.role: e.preprocess(image) for e in self.encoders if e.role in roles}

    def _decoded(self, chunks, decode):
        """Yield (chunk, decoded items); the next chunk decodes on the pool while the caller embeds this one."""
        pending = None
        for chunk in chunks:
            futures = [self.pool.submit(decode, item) for item in chunk]
            if pending is not None:
                yield pending[0], [future.result() for future in pending[1]]
            pending = (chunk, futures)
        if pending is not None:
            yield pending[0], [future.result() for future in pending[1]]

    def real(self, files: list[Path]) -> dict[str, torch.Tensor]:
        """Embeddings (R, D) per role of the real images, from the cache where possible."""
        hashes = [file_sha256(path) for path in files]
        found = {e.role: [e.cache.get(h) for h in hashes] for e in self.encoders}
        missing = [i for i in range(len(files)) if any(found[role][i] is None for role in found)]
        self.bar.update(len(files) - len(missing))

        def decode(i: int):
            return self._decode(files[i], tuple(role for role in found if found[role][i] is None), False)

        for chunk, decoded in self._decoded(_batches(missing, self.batch_size), decode):
            for encoder in self.encoders:
                todo = [(n, i) for n, i in enumerate(chunk) if found[encoder.role][i] is None]
                if not todo:
                    continue
                pixels = torch.stack([decoded[n][encoder.role] for n, _ in todo])
                for (_, i), embedding in zip(todo, encoder.backbone.embed_images(pixels)):
                    found[encoder.role][i] = embedding
                    encoder.cache.put(hashes[i], embedding)
            self.bar.update(len(chunk))
        return {role: torch.stack(embeddings) for role, embeddings in found.items()}

    def generated(self, images: list[GeneratedImage]) -> tuple[list[bool], dict[str, torch.Tensor]]:
        """(black flag per image, embeddings (N_kept, D) per role of the images that are not all black)."""
        roles = tuple(e.role for e in self.encoders)
        black: list[bool] = []
        kept: dict[str, list[torch.Tensor]] = {role: [] for role in roles}

        def decode(image: GeneratedImage):
            return self._decode(image.path, roles, True)

        for chunk, decoded in self._decoded(_batches(images, self.batch_size), decode):
            black.extend(d is None for d in decoded)
            present = [d for d in decoded if d is not None]
            if present:
                for encoder in self.encoders:
                    kept[encoder.role].append(
                        encoder.backbone.embed_images(torch.stack([d[encoder.role] for d in present]))
                    )
            self.bar.update(len(chunk))
        return black, {role: torch.cat(parts) if parts else torch.empty(0) for role, parts in kept.items()}


def _embed_texts(backbone: Backbone, texts: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    unique = sorted(set(texts))
    embeddings = torch.cat([backbone.embed_texts(chunk) for chunk in _batches(unique, batch_size)])
    return dict(zip(unique, embeddings))


def _score(
    generated: dict[str, torch.Tensor], real: dict[str, torch.Tensor], clip: Backbone, texts: list[str], batch_size: int
) -> dict[str, list[float]]:
    """Per scored generated image: DINO and CLIP-I (mean over the real images) and CLIP-T (against its text)."""
    if not texts:
        return {metric: [] for metric in METRICS}
    text_embeddings = _embed_texts(clip, texts, batch_size)
    return {
        "dino": mean_pair_cosines(generated["dino"], real["dino"]).tolist(),
        "clip_i": mean_pair_cosines(generated["clip_i"], real["clip_i"]).tolist(),
        "clip_t": row_cosines(generated["clip_i"], torch.stack([text_embeddings[t] for t in texts])).tolist(),
    }


def _subject_tables(
    subject: str,
    class_noun: str | None,
    images: list[GeneratedImage],
    texts: list[str],
    black: list[bool],
    scores: dict[str, list[float]],
    n_real: int,
) -> tuple[list, list, dict]:
    """Rows of one subject: per image, per prompt, and the subject's own summary (None where nothing scored)."""
    kept = [i for i, is_black_image in enumerate(black) if not is_black_image]
    by_image = {i: {metric: scores[metric][k] for metric in METRICS} for k, i in enumerate(kept)}
    image_rows = [
        {
            "subject": subject,
            "prompt_index": image.prompt_index,
            "file": image.file,
            "seed": image.seed,
            "black": black[i],
            "clip_t_prompt": texts[i],
            **by_image.get(i, dict.fromkeys(METRICS)),
        }
        for i, image in enumerate(images)
    ]
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_prompt[image.prompt_index].append(i)
    prompt_rows = []
    for prompt_index, members in sorted(by_prompt.items()):
        scored = [i for i in members if i in by_image]
        prompts = {images[i].prompt for i in members} - {None}
        clip_texts = {texts[i] for i in members}
        prompt_rows.append(
            {
                "subject": subject,
                "prompt_index": prompt_index,
                "prompt": prompts.pop() if len(prompts) == 1 else None,
                "clip_t_prompt": clip_texts.pop() if len(clip_texts) == 1 else None,
                "n_images": len(scored),
                "n_black": len(members) - len(scored),
                "n_real": n_real,
                "n_pairs": len(scored) * n_real,
                **{metric: _mean(by_image[i][metric] for i in scored) for metric in METRICS},
            }
        )
    # every image's DINO / CLIP-I is a mean over the same n_real photos, so their mean is the mean over all pairs
    subject_row = {
        "subject": subject,
        "class_noun": class_noun,
        "n_images": len(kept),
        "n_black": len(images) - len(kept),
        "n_real": n_real,
        "n_pairs": len(kept) * n_real,
        **{metric: _mean(scores[metric]) for metric in METRICS},
    }
    return image_rows, prompt_rows, subject_row


def _pooled(subject_rows: list[dict]) -> dict:
    """Means over all pairs (DINO, CLIP-I) and all images (CLIP-T) of the subjects, from their per-subject means."""
    n_pairs = sum(row["n_pairs"] for row in subject_rows)
    n_images = sum(row["n_images"] for row in subject_rows)
    pooled = {"n_pairs": n_pairs, "n_images": n_images}
    for metric, weight in (("dino", "n_pairs"), ("clip_i", "n_pairs"), ("clip_t", "n_images")):
        total = sum(row[weight] for row in subject_rows)
        pooled[metric] = sum(row[metric] * row[weight] for row in subject_rows) / total if total else None
    return pooled


def _check_input_size(encoder: _Encoder, flag: str, protocol: str) -> None:
    expected = encoder.backbone.image_size
    size = encoder.preprocess.output_size
    if expected is not None and expected != size:
        raise EvaluationInputError(
            f"{flag} {encoder.backbone.spec!r} takes {expected}x{expected} images, but protocol {protocol!r} "
            f"feeds {size}x{size}; pick a backbone trained at {size}x{size}"
        )


def first_per_prompt(images: list[GeneratedImage], limit: int | None) -> list[GeneratedImage]:
    """The first ``limit`` images of each prompt (lowest seeds, then file names), in the input order."""
    if limit is None:
        return images
    keep: set[int] = set()
    by_prompt: dict[int, list[int]] = {}
    for k, image in enumerate(images):
        by_prompt.setdefault(image.prompt_index, []).append(k)
    for members in by_prompt.values():
        members.sort(key=lambda k: (images[k].seed is None, images[k].seed or 0, images[k].file))
        keep.update(members[:limit])
    return [image for k, image in enumerate(images) if k in keep]


def _select_subjects(settings: DreamBoothEvalSettings) -> list[str]:
    available = generated_subjects(settings.generated_dir)
    if not settings.subjects:
        return available
    unknown = [s for s in settings.subjects if s not in available]
    if unknown:
        raise EvaluationInputError(
            f"--subjects {','.join(unknown)}: not in --generated_dir {settings.generated_dir} "
            f"(it has: {', '.join(available)})"
        )
    return list(dict.fromkeys(settings.subjects))


def _summarize_generation(images: list[GeneratedImage]) -> dict:
    values: dict[str, dict[str, object]] = defaultdict(dict)
    for image in images:
        for key, value in image.generation.items():
            values[key][json.dumps(value, sort_keys=True)] = value
    return {
        key: (next(iter(v.values())) if len(v) == 1 else [v[k] for k in sorted(v)])
        for key, v in values.items()
        if key in GENERATION_KEYS
    }


def evaluate_dreambooth(settings: DreamBoothEvalSettings) -> dict:
    """Run the evaluation; returns the results document (JSON-ready; ``None`` where nothing was scored).

    Raises ``EvaluationInputError`` for bad folders, files, subjects or backbones, naming them.
    """
    protocol = get_protocol(settings.protocol)
    if settings.batch_size < 1:
        raise EvaluationInputError(f"--batch_size must be >= 1, got {settings.batch_size}")
    real_dir, gen_dir = Path(settings.real_dir), Path(settings.generated_dir)
    if not real_dir.is_dir():
        raise EvaluationInputError(f"--real_dir {real_dir}: not a folder")
    subjects = _select_subjects(settings)
    class_nouns = load_class_nouns(real_dir, settings.class_nouns)
    reals = {subject: real_images(real_dir, subject) for subject in subjects}
    generated = {
        subject: first_per_prompt(read_generated(gen_dir, subject), settings.max_images_per_prompt)
        for subject in subjects
    }
    texts = {
        s: [clip_t_prompt(image, settings.clip_t_prompt, class_nouns.get(s)) for image in generated[s]]
        for s in subjects
    }

    specs = {"dino": settings.dino_model or protocol.dino_model, "clip": settings.clip_model or protocol.clip_model}
    dino = load_backbone(specs["dino"], "dino", settings.device, flag="--dino_model")
    clip = load_backbone(specs["clip"], "clip", settings.device, flag="--clip_model")
    encoders = []
    for role, backbone, preprocess, flag in (
        ("dino", dino, protocol.dino_preprocess, "--dino_model"),
        ("clip_i", clip, protocol.clip_preprocess, "--clip_model"),
    ):
        key = {
            "backbone": backbone.spec,
            "weights": backbone.fingerprint,
            "role": role,
            "protocol": protocol.name,
            "preprocess": preprocess.describe(),
        }
        cache_root = None if settings.cache_dir is None else Path(settings.cache_dir)
        encoder = _Encoder(role, backbone, preprocess, EmbeddingCache(cache_root, key))
        _check_input_size(encoder, flag, protocol.name)
        encoders.append(encoder)

    total = sum(len(reals[s]) + len(generated[s]) for s in subjects)
    start = time.perf_counter()
    bar = tqdm(total=total, unit="img", desc="delora-eval", disable=not settings.progress, leave=False)
    embedder = _Embedder(encoders, settings.batch_size, settings.workers, bar)
    per_image, per_prompt, per_subject = [], [], []
    try:
        for subject in subjects:
            real = embedder.real(reals[subject])
            black, generated_embeddings = embedder.generated(generated[subject])
            kept_texts = [text for text, is_black_image in zip(texts[subject], black) if not is_black_image]
            scores = _score(generated_embeddings, real, clip, kept_texts, settings.batch_size)
            class_noun = class_nouns.get(subject) or next(
                (image.class_noun for image in generated[subject] if image.class_noun), None
            )
            images, prompts, summary = _subject_tables(
                subject, class_noun, generated[subject], texts[subject], black, scores, len(reals[subject])
            )
            per_image += images
            per_prompt += prompts
            per_subject.append(summary)
    finally:
        embedder.close()
        bar.close()
    seconds = time.perf_counter() - start

    n_generated = sum(len(generated[s]) for s in subjects)
    n_scored = sum(row["n_images"] for row in per_subject)
    scored_subjects = [row for row in per_subject if row["n_images"]]
    return {
        "format": RESULTS_FORMAT,
        "name": settings.name or gen_dir.resolve().name,
        "protocol": protocol.name,
        "protocol_summary": protocol.summary,
        "clip_t_prompt": settings.clip_t_prompt,
        "max_images_per_prompt": settings.max_images_per_prompt,
        "real_dir": str(real_dir),
        "generated_dir": str(gen_dir),
        "subjects": subjects,
        "backbones": {
            "dino": {**dino.describe(), "preprocess": protocol.dino_preprocess.describe()},
            "clip": {**clip.describe(), "preprocess": protocol.clip_preprocess.describe()},
        },
        "generation": _summarize_generation([image for s in subjects for image in generated[s]]),
        "definitions": DEFINITIONS,
        "counts": {
            "generated_images": n_generated,
            "scored_images": n_scored,
            "black_skipped": n_generated - n_scored,
            "real_images": sum(len(reals[s]) for s in subjects),
            "pairs": sum(row["n_pairs"] for row in per_subject),
            "subjects": len(subjects),
            "scored_subjects": len(scored_subjects),
        },
        "mean_over_subjects": {
            **{m: _mean(row[m] for row in scored_subjects) for m in METRICS},
            "n_subjects": len(scored_subjects),
        },
        "pooled": _pooled(scored_subjects),
        "per_subject": per_subject,
        "per_prompt": per_prompt,
        "per_image": per_image,
        "black_images": [f"{row['subject']}/{row['file']}" for row in per_image if row["black"]],
        "cache": {
            "dir": None if settings.cache_dir is None else str(settings.cache_dir),
            **{f"{e.role}_hits": e.cache.hits for e in encoders},
            **{f"{e.role}_misses": e.cache.misses for e in encoders},
        },
        "timing": {
            "seconds": seconds,
            "device": settings.device,
            "generated_images_per_second": n_generated / seconds if seconds > 0 else None,
        },
    }
