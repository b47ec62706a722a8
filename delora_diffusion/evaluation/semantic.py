"""Semantic-map → image metrics: segmentation consistency (mIoU, mean class accuracy, pixel accuracy) and FID.

Reads the folder ``generate.py semantic`` writes (``GEN/<map stem>/00/<seed>.png`` + ``metadata.jsonl``,
whose ``map_crop`` says which region of the map file each image shows), the maps (``--maps``: colour maps,
looked up in the palette, or class-id annotations) and real images (``--real``, for FID).

- Segmentation: a semantic-segmentation model segments every generated image; its prediction, resized to
  the ground truth's size, is compared with the map's class ids (``IGNORE_INDEX`` where the map says
  "other" or has a colour outside the palette). Scores accumulate over all images (``segmentation.py``).
- FID: generated images against the real ones (``fid.py``).

All-black images (safety-filtered) are skipped by both and counted. Imports nothing from training or
inference.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.ade20k import IGNORE_INDEX
from ..data.semantic_maps import MAP_EXTENSIONS, MapError, default_palette, label_ids, open_map, read_palette
from ..images import IMAGE_SUFFIXES
from .errors import EvaluationInputError
from .fid import compute_fid, load_fid_extractor
from .folders import GeneratedImage, generated_subjects, read_generated
from .images import is_black, list_images, load_rgb
from .protocols import DEFAULT_SEG_MODEL, INCEPTION
from .protocols import SEMANTIC_RESULTS_FORMAT as RESULTS_FORMAT
from .segmentation import confusion_matrix, load_segmenter, segmentation_scores

GENERATION_FIELDS = (
    "adapter",
    "adapter_method",
    "control",
    "control_scale",
    "scale",
    "base_model",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "height",
    "width",
)
DEFINITIONS = {
    "mIoU": "mean over classes of TP / (GT + PRED - TP), pixels accumulated over all images (mmseg IoU)",
    "mAcc": "mean over classes of TP / GT (mean class accuracy, mmseg Acc)",
    "aAcc": "sum of TP / sum of GT over all classes (overall pixel accuracy, mmseg aAcc)",
    "ignored": f"ground-truth pixels that are 'other' or a colour outside the palette (id {IGNORE_INDEX}) are not "
    "scored (mmseg reduce_zero_label)",
    "fid": "Frechet distance between feature statistics of the generated and the real images",
}


@dataclass
class SemanticEvalSettings:
    """Inputs of ``delora-eval semantic``; ``maps_dir`` None skips segmentation, ``real_dir`` None skips FID."""

    generated_dir: Path
    maps_dir: Path | None = None
    real_dir: Path | None = None
    seg_model: str = DEFAULT_SEG_MODEL
    palette: Path | None = None
    fid_extractor: str = INCEPTION
    fid_weights: Path | None = None
    batch_size: int = 16
    device: str = "cpu"
    name: str | None = None
    progress: bool = True


def _map_files(maps_dir: Path) -> dict[str, Path]:
    if not maps_dir.is_dir():
        raise EvaluationInputError(f"--maps {maps_dir}: not a folder")
    suffixes = set(MAP_EXTENSIONS) | set(IMAGE_SUFFIXES)
    return {p.stem: p for p in sorted(maps_dir.iterdir()) if p.is_file() and p.suffix.lower() in suffixes}


def _ground_truth(map_file: Path, image: GeneratedImage, palette) -> np.ndarray:
    """Class ids of the region of ``map_file`` that ``image`` shows (``map_crop`` of its record)."""
    try:
        source = open_map(map_file)
    except MapError as exc:
        raise EvaluationInputError(str(exc)) from None
    recorded = image.record.get("map_size")
    if recorded is not None and list(recorded) != list(source.size):
        raise EvaluationInputError(
            f"{map_file} is {source.size[0]}×{source.size[1]}, but {image.path} was generated "
            f"from a {recorded[0]}×{recorded[1]} map: is --maps the folder given to generate.py?"
        )
    ids = label_ids(source, palette)
    box = image.record.get("map_crop")
    if box is not None:
        left, top, right, bottom = (int(v) for v in box)
        if not (0 <= left < right <= source.size[0] and 0 <= top < bottom <= source.size[1]):
            raise EvaluationInputError(
                f"{image.path.parent.parent / 'metadata.jsonl'}: map_crop {box} lies outside "
                f"{map_file} ({source.size[0]}×{source.size[1]})"
            )
        ids = ids[top:bottom, left:right]
    return ids


def _generation_summary(images: list[GeneratedImage]) -> dict:
    values: dict[str, dict[str, object]] = defaultdict(dict)
    for image in images:
        for key in GENERATION_FIELDS:
            if key in image.record:
                values[key][json.dumps(image.record[key], sort_keys=True)] = image.record[key]
    return {key: (next(iter(v.values())) if len(v) == 1 else [v[k] for k in sorted(v)]) for key, v in values.items()}


def _float(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _segmentation(settings: SemanticEvalSettings, images: list[GeneratedImage], black: dict[Path, bool], bar) -> dict:
    names, palette = read_palette(settings.palette) if settings.palette else default_palette()
    segmenter = load_segmenter(settings.seg_model, settings.device)
    if segmenter.num_labels != len(palette):
        raise EvaluationInputError(
            f"--seg_model {settings.seg_model!r} predicts {segmenter.num_labels} classes but "
            f"the palette has {len(palette)} ({settings.palette or 'ADE20K'}); they must match"
        )
    maps = _map_files(Path(settings.maps_dir))
    truths: dict[str, np.ndarray] = {}
    confusion = np.zeros((len(palette), len(palette)), dtype=np.int64)
    per_image, ignored = [], 0
    scored = [image for image in images if not black[image.path]]
    for start in range(0, len(scored), settings.batch_size):
        batch = scored[start : start + settings.batch_size]
        labels = []
        for image in batch:
            key = f"{image.subject}/{json.dumps(image.record.get('map_crop'))}"
            if key not in truths:
                if image.subject not in maps:
                    raise EvaluationInputError(
                        f"generated map {image.subject!r} has no map in --maps "
                        f"{settings.maps_dir} (expected {image.subject}.png)"
                    )
                truths[key] = _ground_truth(maps[image.subject], image, palette)
            labels.append(truths[key])
        predictions = segmenter.predict([load_rgb(image.path) for image in batch], [label.shape for label in labels])
        for image, prediction, label in zip(batch, predictions, labels):
            own = confusion_matrix(prediction, label, len(palette), IGNORE_INDEX)
            confusion += own
            valid = int(own.sum())
            ignored += int(label.size - valid)
            per_image.append(
                {
                    "map": image.subject,
                    "seed": image.seed,
                    "file": image.file,
                    "valid_pixels": valid,
                    "pixel_accuracy": float(np.trace(own) / valid) if valid else None,
                }
            )
        bar.update(len(batch))
        # Images come map by map: keep only the current map's ground truth (ADE20K has 2000 of them).
        truths = {k: v for k, v in truths.items() if k.startswith(f"{batch[-1].subject}/")}
    scores = segmentation_scores(confusion)
    per_class = [
        {
            "id": k,
            "name": names[k],
            "iou": _float(scores["iou"][k]),
            "acc": _float(scores["acc"][k]),
            "gt_pixels": int(scores["area_label"][k]),
            "pred_pixels": int(scores["area_pred"][k]),
            "tp_pixels": int(scores["intersect"][k]),
        }
        for k in range(len(palette))
    ]
    return {
        "model": segmenter.describe(),
        "palette": str(settings.palette) if settings.palette else "ade20k",
        "ignore_index": IGNORE_INDEX,
        "mIoU": scores["mIoU"],
        "mAcc": scores["mAcc"],
        "aAcc": scores["aAcc"],
        "classes_with_iou": scores["classes_with_iou"],
        "classes_with_acc": scores["classes_with_acc"],
        "scored_pixels": int(confusion.sum()),
        "ignored_pixels": ignored,
        "per_class": per_class,
        "per_image": per_image,
    }


def evaluate_semantic(settings: SemanticEvalSettings, fid_extractor=None) -> dict:
    """Run the evaluation; returns the results document (JSON-ready; ``None`` where nothing was scored).

    ``fid_extractor`` (a module mapping uint8 (B, 3, H, W) to (B, D)) replaces ``settings.fid_extractor``.
    Raises ``EvaluationInputError`` naming the folder, file or model that cannot be used.
    """
    if settings.maps_dir is None and settings.real_dir is None:
        raise EvaluationInputError("nothing to score: give --maps (segmentation metrics) and/or --real (FID)")
    if settings.batch_size < 1:
        raise EvaluationInputError(f"--batch_size must be >= 1, got {settings.batch_size}")
    gen_dir = Path(settings.generated_dir)
    stems = generated_subjects(gen_dir)
    images = [image for stem in stems for image in read_generated(gen_dir, stem)]
    real = []
    if settings.real_dir is not None:
        real_dir = Path(settings.real_dir)
        if not real_dir.is_dir():
            raise EvaluationInputError(f"--real {real_dir}: not a folder")
        real = list_images(real_dir)
        if not real:
            raise EvaluationInputError(f"--real {real_dir}: no images (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    extractor = None
    if settings.real_dir is not None and fid_extractor is None:
        extractor = load_fid_extractor(settings.fid_extractor, settings.fid_weights)

    start = time.perf_counter()
    black = {image.path: is_black(load_rgb(image.path)) for image in images}
    kept = [image for image in images if not black[image.path]]
    total = (len(kept) if settings.maps_dir is not None else 0) + (len(real) + len(kept) if real else 0)
    bar = tqdm(total=total, unit="img", desc="delora-eval semantic", disable=not settings.progress, leave=False)
    try:
        segmentation = _segmentation(settings, images, black, bar) if settings.maps_dir is not None else None
        fid = None
        if real:
            value = compute_fid(
                real,
                [image.path for image in kept],
                fid_extractor or extractor,
                batch_size=settings.batch_size,
                device=settings.device,
                progress=bar.update,
            )
            described = (
                extractor.describe() if extractor is not None else {"spec": "injected module", "features": "custom"}
            )
            fid = {"value": value, "extractor": described, "n_real": len(real), "n_generated": len(kept)}
    finally:
        bar.close()
    return {
        "format": RESULTS_FORMAT,
        "name": settings.name or gen_dir.resolve().name,
        "generated_dir": str(gen_dir),
        "maps_dir": None if settings.maps_dir is None else str(settings.maps_dir),
        "real_dir": None if settings.real_dir is None else str(settings.real_dir),
        "summary": {
            "mIoU": segmentation["mIoU"] if segmentation else None,
            "mAcc": segmentation["mAcc"] if segmentation else None,
            "aAcc": segmentation["aAcc"] if segmentation else None,
            "fid": fid["value"] if fid else None,
        },
        "segmentation": segmentation,
        "fid": fid,
        "counts": {
            "maps": len(stems),
            "generated_images": len(images),
            "scored_images": len(kept),
            "black_skipped": len(images) - len(kept),
            "real_images": len(real),
        },
        "black_images": [f"{image.subject}/{image.file}" for image in images if black[image.path]],
        "generation": _generation_summary(images),
        "definitions": DEFINITIONS,
        "timing": {"seconds": time.perf_counter() - start},
    }
