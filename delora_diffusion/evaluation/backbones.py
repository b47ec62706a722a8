"""Embedding backbones for DINO, CLIP-I and CLIP-T, from transformers, timm or open_clip.

A backbone spec is one string:

- a transformers hub id or local folder (``facebook/dino-vits16``, ``openai/clip-vit-large-patch14``,
  ``outputs/tiny/dino``): a CLIP checkpoint gives projected image and text embeddings
  (``get_image_features`` / ``get_text_features``); any other vision model gives the CLS token of
  ``last_hidden_state`` (DINO's image embedding);
- ``timm:NAME`` (``timm:vit_small_patch16_224.dino``, ``timm:local-dir:PATH``): the model built with
  ``num_classes=0``, whose output is the pooled (for DINO ViTs: CLS) embedding;
- ``open_clip:ARCH/PRETRAINED`` (``open_clip:ViT-B-32/openai``) or ``open_clip:local-dir:PATH`` /
  ``open_clip:hf-hub:ORG/REPO``: ``encode_image`` / ``encode_text``.

Embeddings are returned unnormalised, float32 on the CPU; metrics normalise them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .errors import EvaluationInputError

TIMM_PREFIX = "timm:"
OPEN_CLIP_PREFIX = "open_clip:"
# values sampled per tensor for the weights fingerprint (a fine-tuned or rebuilt model changes them all)
FINGERPRINT_SAMPLES = 4096


@dataclass
class Backbone:
    """A loaded embedding model. ``image_size`` is the square input side the model requires (None: any)."""

    spec: str
    library: str
    model: torch.nn.Module
    device: torch.device
    image_size: int | None
    _images: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    _texts: Callable[[list[str]], torch.Tensor] | None = field(default=None, repr=False)
    fingerprint: str = ""

    @property
    def has_text(self) -> bool:
        return self._texts is not None

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed images -> (B, D) float32 embeddings on the CPU."""
        with torch.inference_mode():
            return _as_tensor(self._images(pixels.to(self.device))).float().cpu()

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """``len(texts)`` prompts -> (T, D) float32 embeddings in the image embedding space."""
        if self._texts is None:
            raise EvaluationInputError(f"backbone {self.spec!r} has no text tower")
        with torch.inference_mode():
            return _as_tensor(self._texts(texts)).float().cpu()

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "library": self.library,
            "fingerprint": self.fingerprint,
            "image_size": self.image_size,
        }


def _as_tensor(output) -> torch.Tensor:
    # transformers 5 returns a ModelOutput from get_*_features (projection in pooler_output); 4.x a tensor
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A cheap identity of the weights: every tensor's name, shape, dtype and a strided sample of its values."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(flat[::step][:FINGERPRINT_SAMPLES].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:20]


def _square(size) -> int | None:
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        return int(size[0]) if len(set(size)) == 1 else None
    return int(size)


def _load_transformers(spec: str, role: str, device: torch.device) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPModel

    config = AutoConfig.from_pretrained(spec)
    if config.model_type == "clip":
        model = CLIPModel.from_pretrained(spec)
        tokenizer = AutoTokenizer.from_pretrained(spec)

        def texts(prompts: list[str]) -> torch.Tensor:
            tokens = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(device)
            return model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])

        return Backbone(
            spec,
            "transformers",
            model.to(device).eval(),
            device,
            _square(config.vision_config.image_size),
            lambda pixels: model.get_image_features(pixel_values=pixels),
            texts,
        )
    if role == "clip":
        raise EvaluationInputError(
            f"{spec!r} is a {config.model_type!r} model; CLIP-I and CLIP-T need a CLIP model (image and text towers)"
        )
    extra = {"add_pooling_layer": False} if config.model_type == "vit" else {}
    model = AutoModel.from_pretrained(spec, **extra)
    # DINOv2 interpolates its position embeddings to any input size; ViT-style models need their own size
    size = None if config.model_type.startswith("dinov2") else _square(getattr(config, "image_size", None))
    return Backbone(
        spec,
        "transformers",
        model.to(device).eval(),
        device,
        size,
        lambda pixels: model(pixel_values=pixels).last_hidden_state[:, 0],
    )


def _load_timm(spec: str, role: str, device: torch.device) -> Backbone:
    import timm

    name = spec[len(TIMM_PREFIX) :]
    if role == "clip":
        raise EvaluationInputError(f"{spec!r}: timm models have no text tower; use a CLIP model for CLIP-I/CLIP-T")
    model = timm.create_model(name, pretrained=True, num_classes=0)
    patch_embed = getattr(model, "patch_embed", None)
    size = None
    if patch_embed is not None and not getattr(patch_embed, "dynamic_img_size", False):
        size = _square(getattr(patch_embed, "img_size", None))
    return Backbone(spec, "timm", model.to(device).eval(), device, size, model)


def _load_open_clip(spec: str, role: str, device: torch.device) -> Backbone:
    import open_clip

    name = spec[len(OPEN_CLIP_PREFIX) :]
    if name.startswith(("local-dir:", "hf-hub:")):
        model = open_clip.create_model(name)
    elif "/" in name:
        arch, pretrained = name.split("/", 1)
        model = open_clip.create_model(arch, pretrained=pretrained)
        name = arch
    else:
        raise EvaluationInputError(
            f"{spec!r}: expected open_clip:ARCH/PRETRAINED (e.g. open_clip:ViT-B-32/openai), "
            "open_clip:local-dir:PATH or open_clip:hf-hub:ORG/REPO"
        )
    tokenizer = open_clip.get_tokenizer(name)
    return Backbone(
        spec,
        "open_clip",
        model.to(device).eval(),
        device,
        _square(model.visual.image_size),
        lambda pixels: model.encode_image(pixels),
        lambda prompts: model.encode_text(tokenizer(prompts).to(device)),
    )


def load_backbone(spec: str, role: str, device: str | torch.device = "cpu", flag: str | None = None) -> Backbone:
    """Load the backbone named by ``spec`` for ``role`` ("dino" or "clip"; CLIP needs a text tower).

    Errors (unknown id, missing folder, no network, wrong kind of model) raise ``EvaluationInputError``
    naming ``flag`` (e.g. ``--dino_model``) and the spec.
    """
    if role not in ("dino", "clip"):
        raise ValueError(f"role must be 'dino' or 'clip', got {role!r}")
    device = torch.device(device)
    label = f"{flag} {spec!r}" if flag else repr(spec)
    if spec.startswith(TIMM_PREFIX):
        loader = _load_timm
    elif spec.startswith(OPEN_CLIP_PREFIX):
        loader = _load_open_clip
    else:
        loader = _load_transformers
    try:
        backbone = loader(spec, role, device)
    except EvaluationInputError as exc:
        raise EvaluationInputError(f"{flag}: {exc}" if flag else str(exc)) from None
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise EvaluationInputError(f"{label}: cannot load the backbone ({type(exc).__name__}: {exc})") from None
    backbone.fingerprint = weights_fingerprint(backbone.model)
    return backbone
