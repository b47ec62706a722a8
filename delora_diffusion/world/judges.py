"""The world's judges: a DINO-style ViT and a CLIP, trained on renders, saved as transformers models.

``delora-eval`` loads them exactly as it loads ``facebook/dino-vits16`` and ``openai/clip-vit-large-patch14``
(224 × 224 inputs, the protocols' preprocessing), so the DreamBooth metrics run unchanged:

- **DINO-style ViT** (``ViTModel``, CLS feature): trained for instance discrimination, the property the
  DINO metric relies on — two pictures of the same instance in other poses and contexts are positives,
  every other instance in the batch a negative (InfoNCE on the normalised CLS tokens). Instances come in
  sibling pairs of the same class and colours (another pattern, parts or proportions), both in every batch
  they are drawn for, so colour alone never tells an instance. Nothing tells it classes; they emerge.
- **CLIP** (``CLIPModel``): contrastive image-caption training on pretraining-style scenes with the
  captions alt-text gives, which describe the instance ("a striped orange toy with teal parts in the
  snow", or without the place), and the DreamBooth templates ("a toy in the snow") the zero-shot checks
  use. A batch takes eight places with twelve images of each, so most captions must be found from the
  object, not the backdrop: the image embedding is meant to rank the same instance elsewhere above another
  instance in the same place, which CLIP-I needs (the cards measure it). Captions repeat within a batch, so each image is scored against the batch's
  distinct captions, and each caption against all its images.

Training images get the degradations a generator adds (blur, noise, small shifts) so the judges score
generated pictures as they score renders.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 224
PATCH = 32
VISION = dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384)
CLIP_TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
CLIP_EMBED = 64
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def build_dino():
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(image_size=IMAGE_SIZE, patch_size=PATCH, **VISION), add_pooling_layer=False)


def save_dino_processor(out) -> None:
    """The ``ViTImageProcessor`` settings of ``facebook/dino-vits16`` (bilinear 224, mean = std = 0.5)."""
    from transformers import ViTImageProcessor
    from transformers.image_utils import PILImageResampling

    ViTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=PILImageResampling.BILINEAR,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    ).save_pretrained(out)


def build_clip(vocab_size: int, max_tokens: int):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            max_position_embeddings=max_tokens,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **CLIP_TEXT,
        ),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=PATCH, **VISION),
        projection_dim=CLIP_EMBED,
    )
    return CLIPModel(config)


def save_clip_processor(tokenizer, out) -> None:
    """OpenAI CLIP's image processor settings with the world's tokenizer."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(out)


def _degrade(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 64, 64) in [0, 1] -> the same with a random shift/zoom, blur and noise per image."""
    b = x.shape[0]
    scale = 1 + 0.15 * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) - 0.5) * 0.12
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    blur = torch.rand(b, generator=generator) < 0.5
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25])
        kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    noise = torch.rand(b, 1, 1, 1, generator=generator) * 0.06
    return (x + noise * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def preprocess(images: np.ndarray, protocol_mean, protocol_std, mode: str, generator=None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, 224, 224) normalised, as the evaluation protocols feed the judges."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    if generator is not None:
        x = _degrade(x, generator)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode=mode, align_corners=False).clamp(0, 1)
    mean = torch.tensor(protocol_mean).view(1, 3, 1, 1)
    std = torch.tensor(protocol_std).view(1, 3, 1, 1)
    return (x - mean) / std


def _projected(output) -> torch.Tensor:
    # transformers 5 returns a ModelOutput from get_*_features (the projection in pooler_output)
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _Progress:
    """The optimiser step both judges take (clipped gradients), their smoothed-loss log every 50 steps, and
    their periodic checkpoints (``resume.LoopCheckpoints``: model, optimiser, random generators, log)."""

    def __init__(self, name: str, steps: int, log: Callable[[str], None], checkpoints=None):
        self.name, self.steps, self.log, self.checkpoints = name, steps, log, checkpoints
        self.history: list[dict] = []
        self.start, self.smooth = time.perf_counter(), None

    def resume(self, model, optimizer, generator: torch.Generator, rng: random.Random) -> int:
        """Restore the newest checkpoint, if any, into the given objects; the first step still to take."""
        state = self.checkpoints.restore() if self.checkpoints else None
        if state is None:
            return 1
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        rng.setstate(state["rng"])
        self.history, self.smooth = state["history"], state["smooth"]
        self.log(f"{self.name}: resumed at step {state['step']} from {self.checkpoints.folder}")
        return state["step"] + 1

    def checkpoint(self, step: int, model, optimizer, generator: torch.Generator, rng: random.Random) -> None:
        if self.checkpoints:
            self.checkpoints.save(
                step,
                lambda: {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "rng": rng.getstate(),
                    "history": self.history,
                    "smooth": self.smooth,
                },
            )

    def step(self, model, optimizer, loss: torch.Tensor, step: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        value = loss.item()
        self.smooth = value if self.smooth is None else 0.98 * self.smooth + 0.02 * value
        if step % 50 == 0:
            elapsed = time.perf_counter() - self.start
            self.history.append({"step": step, "seconds": round(elapsed, 1), "loss": round(self.smooth, 4)})
            self.log(f"{self.name} step {step}/{self.steps}: loss {self.smooth:.3f} ({elapsed:.0f} s)")


def _lr_at(step_frac: float, lr: float, warm: float) -> float:
    if step_frac < warm:
        return lr * step_frac / warm
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step_frac - warm) / (1 - warm))))


def train_dino(
    views: np.ndarray,
    steps: int,
    seed: int,
    log: Callable[[str], None],
    batch_instances: int = 48,
    lr: float = 1e-3,
    temperature: float = 0.1,
    siblings: int = 2,
    checkpoints=None,
):
    """``views`` (I, V, H, W, 3) uint8: V pictures of each of I instances, in families of ``siblings``
    consecutive instances (``views.instance_views``) that enter a batch together. Returns (ViTModel, history)."""
    torch.manual_seed(seed)
    model = build_dino()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    generator, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    progress = _Progress("dino", steps, log, checkpoints)
    n_inst, n_views = views.shape[:2]
    batch_instances = min(batch_instances, n_inst) // siblings * siblings
    for step in range(progress.resume(model, optimizer, generator, rng), steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step / steps, lr, 0.05)
        families = rng.sample(range(n_inst // siblings), batch_instances // siblings)
        inst = [f * siblings + k for f in families for k in range(siblings)]
        pairs = [rng.sample(range(n_views), 2) for _ in inst]
        batch = np.stack([views[i, p[0]] for i, p in zip(inst, pairs)] + [views[i, p[1]] for i, p in zip(inst, pairs)])
        x = preprocess(batch, (0.5,) * 3, (0.5,) * 3, "bilinear", generator)
        z = F.normalize(model(pixel_values=x).last_hidden_state[:, 0], dim=-1)
        a, b = z[:batch_instances], z[batch_instances:]
        logits = a @ b.T / temperature
        target = torch.arange(batch_instances)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        progress.step(model, optimizer, loss, step)
        progress.checkpoint(step, model, optimizer, generator, rng)
    return model.eval(), progress.history


CAPTION_SHARES = (0.2, 0.4, 0.4)  # template, described with the place, described alone


def train_clip(
    images: np.ndarray,
    captions: list[list[str]],
    settings: list[str],
    tokenizer,
    max_tokens: int,
    steps: int,
    seed: int,
    log: Callable[[str], None],
    batch_size: int = 96,
    groups: int = 8,
    lr: float = 1e-3,
    plain_first: float = 0.15,
    checkpoints=None,
):
    """Contrastive image-caption training on ``images`` (N, H, W, 3) uint8. Returns (CLIPModel, history).

    ``captions[k]`` holds image k's template caption, its alt-text caption and its description alone; each
    draw of the image takes one of them with probabilities ``CAPTION_SHARES``.

    ``settings`` names each image's context, ``studio`` or ``prop:<property>``. A batch takes ``groups``
    settings and fills each with images of mixed classes, so the class must be told apart to find the
    right caption (in random batches the context alone nearly always finds it). For the first
    ``plain_first`` of the steps only plain-backdrop settings (studio photos, properties) are drawn:
    a ViT from scratch learns the object's class there, and barely at all among busy backgrounds.
    """
    torch.manual_seed(seed)
    model = build_clip(len(tokenizer.get_vocab()), max_tokens)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    generator, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    distinct = sorted({c for variants in captions for c in variants})
    position = {c: k for k, c in enumerate(distinct)}
    caption_index = torch.tensor([[position[c] for c in variants] for variants in captions])
    shares = torch.tensor(CAPTION_SHARES)
    by_setting: dict[str, list[int]] = {}
    for k, name in enumerate(settings):
        by_setting.setdefault(name, []).append(k)
    names = sorted(by_setting)
    plain = [n for n in names if n == "studio" or n.startswith("prop:")]
    token_ids = tokenizer(
        distinct, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt"
    ).input_ids
    progress = _Progress("clip", steps, log, checkpoints)
    for step in range(progress.resume(model, optimizer, generator, rng), steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step / steps, lr, 0.05)
        pool = plain if step <= plain_first * steps and plain else names
        idx = torch.tensor(
            [
                k
                for name in rng.sample(pool, min(groups, len(pool)))
                for k in rng.choices(by_setting[name], k=batch_size // groups)
            ]
        )
        labels = caption_index[idx, torch.multinomial(shares, len(idx), replacement=True, generator=generator)]
        texts, target = torch.unique(labels, return_inverse=True)
        x = preprocess(images[idx.numpy()], CLIP_MEAN, CLIP_STD, "bicubic", generator)
        image_embeds = F.normalize(_projected(model.get_image_features(pixel_values=x)), dim=-1)
        text_embeds = F.normalize(_projected(model.get_text_features(input_ids=token_ids[texts])), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * image_embeds @ text_embeds.T
        positives = F.one_hot(target, len(texts)).float()
        loss_image = F.cross_entropy(logits, target)
        loss_text = -(F.log_softmax(logits.T, dim=-1) * positives.T / positives.T.sum(1, keepdim=True)).sum(1).mean()
        loss = 0.5 * (loss_image + loss_text)
        progress.step(model, optimizer, loss, step)
        progress.checkpoint(step, model, optimizer, generator, rng)
    return model.eval(), progress.history
