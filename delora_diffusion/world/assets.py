"""Where the shipped toy-world models live: package data, found the same way in a clone or an install."""

from __future__ import annotations

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
COMPONENTS = ("sd", "dino", "clip")


def pretrained_path(component: str) -> Path:
    """Folder of a shipped component: ``sd`` (the StableDiffusionPipeline), ``dino`` or ``clip`` (the judges)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown toy-world component {component!r}; shipped: {', '.join(COMPONENTS)}")
    path = PRETRAINED_DIR / component
    if not (path / "config.json").exists() and not (path / "model_index.json").exists():
        raise FileNotFoundError(
            f"the toy-world {component} model is missing from {path}; "
            "rebuild it with delora-world-pretrain (see its README.md)"
        )
    return path
