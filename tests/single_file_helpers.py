"""Write a diffusers pipeline folder as one original-format (LDM / sgm) ``.safetensors`` file, the way
checkpoints circulate, so single-file loading is tested on the tiny pipelines. The key names are the
original repositories' (``model.diffusion_model.input_blocks.1.0.in_layers.0.weight``, ...); a test checks
that diffusers' own conversion maps them back to the folder's exact weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_key(key: str, config: dict) -> str:
    step = config["layers_per_block"] + 1
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "mid_block.resnets.0": "middle_block.0",
        "mid_block.attentions.0": "middle_block.1",
        "mid_block.resnets.1": "middle_block.2",
    }
    for old, new in fixed.items():
        if key.startswith(old + "."):
            rest = key[len(old) + 1 :]
            return f"{new}.{_resnet(rest) if 'resnets' in old else rest}"
    kind, i, part, j, rest = re.match(
        r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.*)", key
    ).groups()
    i, j = int(i), int(j)
    if part == "downsamplers":
        return f"input_blocks.{(i + 1) * step}.0.op.{rest.removeprefix('conv.')}"
    if part == "upsamplers":
        has_attention = config["up_block_types"][i].startswith("CrossAttn")
        return f"output_blocks.{i * step + step - 1}.{2 if has_attention else 1}.{rest}"
    index = 1 + i * step + j if kind == "down" else i * step + j
    blocks = "input_blocks" if kind == "down" else "output_blocks"
    return f"{blocks}.{index}.{0 if part == 'resnets' else 1}.{_resnet(rest) if part == 'resnets' else rest}"


def _resnet(rest: str) -> str:
    name, _, tail = rest.partition(".")
    return f"{RESNET[name]}.{tail}"


def _vae_key(key: str, blocks: int) -> str:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    key = key.replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2")
    for old, new in VAE_ATTENTION.items():
        key = key.replace(f"mid_block.attentions.0.{old}.", f"mid.attn_1.{new}.")
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    # the decoder's levels are numbered from the bottom in the original code
    key = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block.", key)
    return re.sub(
        r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample.", key
    )


def _clip(state: dict, prefix: str) -> dict:
    return {
        prefix + (k if k.startswith("text_model.") or k.startswith("text_projection") else "text_model." + k): v
        for k, v in state.items()
    }


def _open_clip(state: dict, prefix: str) -> dict:
    """A CLIPTextModelWithProjection's weights in OpenCLIP's names (SDXL's second text encoder)."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {
        f"{prefix}positional_embedding": state.pop("embeddings.position_embedding.weight"),
        f"{prefix}token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        f"{prefix}text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    state.pop("embeddings.position_ids", None)
    for key in [k for k in state if ".q_proj." in k]:
        kind = key.rsplit(".", 1)[1]
        layer = key.split(".self_attn.")[0].replace("encoder.layers.", "transformer.resblocks.")
        out[f"{prefix}{layer}.attn.in_proj_{kind}"] = torch.cat(
            [state.pop(key.replace("q_proj", p)) for p in ("q_proj", "k_proj", "v_proj")]
        )
    names = {
        "encoder.layers.": "transformer.resblocks.",
        "self_attn.out_proj": "attn.out_proj",
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "final_layer_norm": "ln_final",
    }
    for key, value in state.items():
        for old, new in names.items():
            key = key.replace(old, new)
        out[prefix + key] = value
    return out


def write_single_file(folder: Path, out: Path) -> Path:
    """``folder`` (a saved SD or SDXL pipeline) as one original-format safetensors file at ``out``."""
    index = json.loads((folder / "model_index.json").read_text())
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    tensors = {
        f"model.diffusion_model.{_unet_key(k, unet_config)}": v
        for k, v in load_file(folder / "unet" / "diffusion_pytorch_model.safetensors").items()
    }
    for key, value in load_file(folder / "vae" / "diffusion_pytorch_model.safetensors").items():
        if ".attentions." in key and value.ndim == 2:
            value = value[:, :, None, None]  # the original VAE attention is 1×1 convolutions
        tensors[f"first_stage_model.{_vae_key(key, len(vae_config['block_out_channels']))}"] = value
    text = load_file(folder / "text_encoder" / "model.safetensors")
    if index["_class_name"] == "StableDiffusionXLPipeline":
        tensors.update(_clip(text, "conditioner.embedders.0.transformer."))
        tensors.update(
            _open_clip(load_file(folder / "text_encoder_2" / "model.safetensors"), "conditioner.embedders.1.model.")
        )
    else:
        tensors.update(_clip(text, "cond_stage_model.transformer."))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
    return out
