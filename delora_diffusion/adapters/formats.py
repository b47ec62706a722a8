"""The plain-LoRA formats other tools load (written by ``export.py``) and the file name each gets beside an
adapter (no torch here: flag parsers read it)."""

from __future__ import annotations

FORMATS = ("diffusers", "kohya")
# diffusers' name is the one ``pipe.load_lora_weights(folder)`` looks for; kohya's keys are for ComfyUI / A1111.
FORMAT_FILES = {"diffusers": "pytorch_lora_weights.safetensors", "kohya": "lora_kohya.safetensors"}
