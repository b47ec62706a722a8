"""Load pretrained components by hub id or local path, the way users point at real checkpoints."""

from __future__ import annotations

from pathlib import Path


def load_unet(name_or_path: str, revision: str | None = None, variant: str | None = None):
    """The UNet of a Stable Diffusion pipeline (``<path>/unet``) or of a bare UNet folder."""
    from diffusers import UNet2DConditionModel

    local = Path(name_or_path)
    subfolder = None if (local / "config.json").is_file() else "unet"
    try:
        return UNet2DConditionModel.from_pretrained(
            name_or_path, subfolder=subfolder, revision=revision, variant=variant
        )
    except (OSError, ValueError) as exc:
        raise OSError(
            f"could not load a UNet from {name_or_path!r} (expected a diffusers pipeline folder or hub id with a "
            f"unet/ subfolder, or a UNet folder with config.json): {exc}"
        ) from exc


def load_text_encoder(
    name_or_path: str, subfolder: str = "text_encoder", revision: str | None = None, variant: str | None = None
):
    """A CLIP text encoder of a Stable Diffusion pipeline (``<path>/text_encoder``; SDXL's second, with its
    projection, in ``text_encoder_2``)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    model_class = CLIPTextModelWithProjection if subfolder == "text_encoder_2" else CLIPTextModel
    try:
        return model_class.from_pretrained(name_or_path, subfolder=subfolder, revision=revision, variant=variant)
    except (OSError, ValueError) as exc:
        raise OSError(
            f"could not load the {subfolder} of {name_or_path!r} (expected a diffusers pipeline folder "
            f"or hub id with a {subfolder}/ subfolder): {exc}"
        ) from exc
