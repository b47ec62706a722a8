"""Segmentation consistency of generated images: a transformers segmentation model and mmseg's metrics.

``Segmenter`` wraps any ``AutoModelForSemanticSegmentation`` checkpoint (SegFormer, UperNet, ... by hub
id or local folder) with its own image processor; predictions are resized to the ground truth's size by
the processor's ``post_process_semantic_segmentation`` (logits interpolated, then argmax), as mmseg
scores at the annotation's resolution.

The metrics are mmseg's ``IoU`` / ``Acc`` / ``aAcc``, accumulated over the whole set (not averaged per
image) from one confusion matrix over the pixels whose ground truth is not ``ignore_index``:
IoU_c = TP_c / (GT_c + PRED_c − TP_c), Acc_c = TP_c / GT_c, aAcc = Σ TP / Σ GT; mIoU and mAcc are the
means over classes where they are defined (a class never in the ground truth nor predicted has no IoU; one
never in the ground truth has no Acc — as mmseg's nanmean). A class predicted where the ground truth is
another counts as IoU 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .backbones import weights_fingerprint
from .errors import EvaluationInputError


@dataclass
class Segmenter:
    spec: str
    model: torch.nn.Module
    processor: object
    device: torch.device
    fingerprint: str

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "library": "transformers",
            "architecture": type(self.model).__name__,
            "num_labels": self.num_labels,
            "fingerprint": self.fingerprint,
        }

    @torch.inference_mode()
    def predict(self, images: list[Image.Image], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Class ids (height, width) int64 of each RGB image, at ``sizes`` [(height, width)]."""
        inputs = self.processor(images=images, return_tensors="pt")
        outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device))
        maps = self.processor.post_process_semantic_segmentation(outputs, target_sizes=list(sizes))
        return [m.cpu().numpy().astype(np.int64) for m in maps]


def load_segmenter(spec: str, device: str | torch.device = "cpu", flag: str = "--seg_model") -> Segmenter:
    """A segmentation model and its image processor from a hub id or local folder; ``EvaluationInputError``
    naming ``flag`` when it cannot be loaded or is not a semantic-segmentation model."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    device = torch.device(device)
    try:
        model = AutoModelForSemanticSegmentation.from_pretrained(spec)
        processor = AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError, KeyError) as exc:
        raise EvaluationInputError(
            f"{flag} {spec!r}: cannot load a semantic-segmentation model and its image "
            f"processor ({type(exc).__name__}: {exc})"
        ) from None
    if not hasattr(processor, "post_process_semantic_segmentation"):
        raise EvaluationInputError(
            f"{flag} {spec!r}: its image processor ({type(processor).__name__}) has no "
            "semantic-segmentation post-processing"
        )
    model.to(device).eval()
    return Segmenter(spec, model, processor, device, weights_fingerprint(model))


def confusion_matrix(
    prediction: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(K, K) int64 counts of (ground truth, prediction) over pixels whose label is a class (< K, not ignored)."""
    if prediction.shape != label.shape:
        raise ValueError(f"prediction {prediction.shape} and label {label.shape} differ in shape")
    valid = (label != ignore_index) & (label >= 0) & (label < num_classes)
    pairs = label[valid].astype(np.int64) * num_classes + np.clip(
        prediction[valid].astype(np.int64), 0, num_classes - 1
    )
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def segmentation_scores(confusion: np.ndarray) -> dict:
    """mmseg's metrics of a confusion matrix: ``iou``/``acc`` per class (NaN where undefined), ``mIoU``,
    ``mAcc``, ``aAcc`` (None when nothing was scored) and the per-class pixel areas."""
    confusion = np.asarray(confusion, dtype=np.int64)
    intersect = np.diag(confusion)
    area_label = confusion.sum(axis=1)
    area_pred = confusion.sum(axis=0)
    union = area_label + area_pred - intersect
    iou, acc = _ratio(intersect, union), _ratio(intersect, area_label)
    total = int(area_label.sum())

    def mean(values: np.ndarray) -> float | None:
        return float(np.nanmean(values)) if np.isfinite(values).any() else None

    return {
        "iou": iou,
        "acc": acc,
        "intersect": intersect,
        "area_label": area_label,
        "area_pred": area_pred,
        "mIoU": mean(iou),
        "mAcc": mean(acc),
        "aAcc": float(intersect.sum() / total) if total else None,
        "classes_with_iou": int(np.isfinite(iou).sum()),
        "classes_with_acc": int(np.isfinite(acc).sum()),
    }
