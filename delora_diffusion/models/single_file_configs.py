"""The diffusers configs single-file checkpoints of SD 1.x, SD 2.x and SDXL convert with, built offline.

diffusers' ``from_single_file`` takes the component configs (and tokenizer files) from a hub repository;
here they are written from the published configs into the cache once, and the CLIP tokenizer's
vocabulary and merges are derived from the BPE file open_clip ships (the same 49,408 tokens), so a
single file loads with no network. SD 2.x files are taken as SD 2.1 at 768 px (v-prediction); for a
512-px ε-prediction 2.x file give ``--single_file_config`` a folder with its configs.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

from .sd15 import SD15_TEXT_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG
from .sdxl import SDXL_UNET_CONFIG

BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
CLIP_L = {**SD15_TEXT_CONFIG, "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
OPEN_CLIP_H = {
    **CLIP_L,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,  # SD 2.x drops the last
    "num_attention_heads": 16,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
OPEN_CLIP_BIGG = {
    **CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
SD21_UNET_CONFIG = {
    **SD15_UNET_CONFIG,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "sample_size": 96,
}

# version -> (pipeline class, {component: its diffusers config, or (transformers class, config) for a text
# encoder}, (scheduler class, settings beyond the shared betas))
PIPELINES = {
    "sd1": (
        "StableDiffusionPipeline",
        {"unet": SD15_UNET_CONFIG, "vae": SD15_VAE_CONFIG, "text_encoder": ("CLIPTextModel", CLIP_L)},
        ("PNDMScheduler", {"skip_prk_steps": True, "steps_offset": 1, "set_alpha_to_one": False, "clip_sample": False}),
    ),
    "sd2": (
        "StableDiffusionPipeline",
        {
            "unet": SD21_UNET_CONFIG,
            "vae": {**SD15_VAE_CONFIG, "sample_size": 768},
            "text_encoder": ("CLIPTextModel", OPEN_CLIP_H),
        },
        (
            "DDIMScheduler",
            {"prediction_type": "v_prediction", "steps_offset": 1, "set_alpha_to_one": False, "clip_sample": False},
        ),
    ),
    "sdxl": (
        "StableDiffusionXLPipeline",
        {
            "unet": SDXL_UNET_CONFIG,
            "vae": {**SD15_VAE_CONFIG, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
            "text_encoder": ("CLIPTextModel", CLIP_L),
            "text_encoder_2": ("CLIPTextModelWithProjection", OPEN_CLIP_BIGG),
        },
        ("EulerDiscreteScheduler", {"steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear"}),
    ),
}


def clip_tokenizer_files(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """``vocab.json``, ``merges.txt`` and the tokenizer config of CLIP's tokenizer (SD's, SDXL's) in ``folder``.

    CLIP's vocabulary is the 256 byte symbols, the same ending a word, one token per BPE merge and the two
    special tokens, in that order: which is how open_clip builds it from its merges file too."""
    import open_clip.tokenizer as clip_bpe

    with gzip.open(clip_bpe.default_bpe()) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(clip_bpe.bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "do_lower_case": True,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": pad_token,
            }
        ),
        encoding="utf-8",
    )


def _write(folder: Path, version: str) -> None:
    pipeline, components, (scheduler, settings) = PIPELINES[version]
    index = {"_class_name": pipeline, "_diffusers_version": "0.30.0", "scheduler": ["diffusers", scheduler]}
    for name, spec in components.items():
        sub = folder / name
        sub.mkdir(parents=True)
        if isinstance(spec, tuple):  # a transformers text encoder and its tokenizer
            model_class, config = spec
            index[name] = ["transformers", model_class]
            (sub / "config.json").write_text(
                json.dumps({**config, "model_type": "clip_text_model", "architectures": [model_class]})
            )
            tokenizer = name.replace("text_encoder", "tokenizer")
            index[tokenizer] = ["transformers", "CLIPTokenizer"]
            # OpenCLIP's tokenizers (SD 2.x's, SDXL's second) pad with "!" (id 0), CLIP-L's with the end token
            clip_tokenizer_files(folder / tokenizer, "<|endoftext|>" if config is CLIP_L else "!")
        else:
            model_class = "UNet2DConditionModel" if name == "unet" else "AutoencoderKL"
            index[name] = ["diffusers", model_class]
            (sub / "config.json").write_text(json.dumps({"_class_name": model_class, **spec}))
    if pipeline == "StableDiffusionPipeline":
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": scheduler, **BETAS, **settings})
    )
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))


def builtin_config(version: str, cache: Path) -> Path:
    """The config folder of ``version`` (sd1, sd2, sdxl) under the ``cache`` folder, written on first use."""
    target = cache / "configs" / version
    if (target / "model_index.json").exists():
        return target
    tmp = target.with_name(f".{version}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _write(tmp, version)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
