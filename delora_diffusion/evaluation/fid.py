"""FID between generated and real images, through torchmetrics.

The default features are the standard ones: the 2048-d pool features of the FID Inception-v3
(torchmetrics' ``FrechetInceptionDistance`` on torch-fidelity's port; the weights are downloaded by
torch-fidelity on first use, or read from ``weights_path``). Images go in as uint8 at their own size (the
extractor resizes them), batched by size. The extractor is injectable: any module mapping uint8
(B, 3, H, W) to (B, D) features — in Python, or as a ``torch.export`` program file (``.pt2``) from the
command line (``--fid_extractor``), which is how the tests run FID offline with a tiny random one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import EvaluationInputError
from .images import load_rgb
from .protocols import INCEPTION

INCEPTION_FEATURES = 2048


@dataclass
class FidExtractor:
    """What computes the features: ``module`` None means torchmetrics' Inception (``weights_path`` optional)."""

    spec: str
    module: nn.Module | None = None
    weights_path: str | None = None

    def describe(self) -> dict:
        if self.module is None:
            return {"spec": INCEPTION, "features": INCEPTION_FEATURES, "weights": self.weights_path or "torch-fidelity"}
        return {"spec": self.spec, "features": "custom"}


def load_fid_extractor(
    spec: str = INCEPTION, weights_path: str | Path | None = None, flag: str = "--fid_extractor"
) -> FidExtractor:
    """``inception`` (the standard FID features) or the path of a ``torch.export`` program (``.pt2``)."""
    if spec == INCEPTION:
        if weights_path is not None and not Path(weights_path).is_file():
            raise EvaluationInputError(f"--fid_weights {weights_path} does not exist")
        return FidExtractor(INCEPTION, None, str(weights_path) if weights_path else None)
    if weights_path is not None:
        raise EvaluationInputError("--fid_weights goes with --fid_extractor inception")
    path = Path(spec)
    if not path.is_file():
        raise EvaluationInputError(
            f"{flag} {spec!r}: expected 'inception' or an existing torch.export program "
            "file (.pt2) mapping uint8 images (B, 3, H, W) to features (B, D)"
        )
    try:
        module = torch.export.load(str(path)).module()
    except Exception as exc:  # torch.export raises many kinds on a foreign or corrupt file
        raise EvaluationInputError(
            f"{flag} {spec}: not a loadable torch.export program ({type(exc).__name__}: {exc})"
        ) from None
    return FidExtractor(str(path), module)


def _metric(extractor: FidExtractor, device: torch.device):
    from torchmetrics.image.fid import FrechetInceptionDistance

    if extractor.module is not None:
        return FrechetInceptionDistance(feature=extractor.module, reset_real_features=False).to(device)
    try:
        return FrechetInceptionDistance(
            feature=INCEPTION_FEATURES, reset_real_features=False, feature_extractor_weights_path=extractor.weights_path
        ).to(device)
    except ModuleNotFoundError as exc:
        raise EvaluationInputError(
            f"FID with Inception features needs torch-fidelity ({exc}); pip install torch-fidelity"
        ) from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise EvaluationInputError(
            f"cannot load the FID Inception weights ({type(exc).__name__}: {exc}); "
            "torch-fidelity downloads them on first use — offline, pass --fid_weights "
            "with a copy (weights-inception-2015-12-05-6726825d.pth)"
        ) from None


def _batches_by_size(paths: list[Path], batch_size: int) -> Iterable[torch.Tensor]:
    """uint8 (B, 3, H, W) tensors of consecutive images sharing a size."""
    batch: list[np.ndarray] = []
    for path in paths:
        array = np.asarray(load_rgb(path), dtype=np.uint8)
        if batch and (array.shape != batch[0].shape or len(batch) == batch_size):
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
            batch = []
        batch.append(array)
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)


def compute_fid(
    real: list[Path],
    generated: list[Path],
    extractor: FidExtractor | nn.Module | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> float:
    """FID between the ``real`` and ``generated`` image files (at least 2 of each).

    ``extractor``: a ``FidExtractor``, a module (uint8 (B, 3, H, W) → (B, D)), or None for Inception.
    ``progress`` is called with the number of images of each batch fed.
    """
    if len(real) < 2 or len(generated) < 2:
        raise EvaluationInputError(
            f"FID needs at least 2 real and 2 generated images, got {len(real)} and {len(generated)}"
        )
    if extractor is None or isinstance(extractor, nn.Module):
        extractor = FidExtractor("module" if extractor is not None else INCEPTION, extractor)
    device = torch.device(device)
    metric = _metric(extractor, device)
    with torch.no_grad():
        for paths, is_real in ((real, True), (generated, False)):
            for batch in _batches_by_size(paths, batch_size):
                metric.update(batch.to(device), real=is_real)
                if progress:
                    progress(batch.shape[0])
        return float(metric.compute())
