"""DreamBooth (Ruiz et al., CVPR 2023) as a plug-in of the training loop (its flags and CLI: ``dreambooth.py``).

What is DreamBooth-specific lives here: subject images under one prompt naming the subject, class
images under the class prompt (generated with the base model when missing) trained jointly with
the prior-preservation loss  L = mean(instance) + w · mean(class),  and validation prompts.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from ..adapters.io import TEXT_ENCODERS
from ..data.buckets import BucketSpec
from ..data.captions import CaptionPolicy
from ..data.dreambooth import CLASS, DreamBoothDataset, ImageDataError, ImageSet, collate_dreambooth
from ..inference.sampling import sample_images
from ..models.families import SD, SDXL
from .class_images import generate_class_images
from .components import encode_prompts, encode_text, sampling_pipeline, stack_text, unet_conditioning
from .determinism import BucketBatchSampler
from .latents import batch_latents, cache_posteriors
from .ranks import main_process_first
from .task import RunContext, TrainingTask

# --prior_generation_precision (diffusers' names) -> dtype; "no" is full precision, as in diffusers.
PRECISION_DTYPES = {"no": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def validation_seeds(args: argparse.Namespace) -> list[int]:
    """Image j of every validation prompt uses seed ``--seed`` + j, as ``generate.py --seed`` does."""
    return [args.seed + j for j in range(args.num_validation_images)]


class DreamBoothTask(TrainingTask):
    name = "dreambooth"
    families = (SD, SDXL)

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prompt_embeds: dict[str, dict[str, torch.Tensor]] = {}  # prompt -> its encode_prompts entry
        self.dataset: DreamBoothDataset | None = None
        self.instance: ImageSet | None = None

    # --- data -------------------------------------------------------------------------------
    def check_inputs(self, args: argparse.Namespace) -> None:
        self.instance = ImageSet.load(
            args.instance_data_dir,
            args.instance_prompt,
            args.resolution,
            "instance_data_dir",
            background=args.alpha_background,
            caption_extension=args.caption_extension,
            interpolation=args.image_interpolation_mode,
        )

    def validation_prompts(self, args: argparse.Namespace) -> list[str]:
        """``--validation_prompt``; else, with captions, the first image's caption (what the data says)."""
        if args.validation_prompt:
            return list(args.validation_prompt)
        if self.instance is not None and any(c is not None for c in self.instance.captions):
            return [next(c for c in self.instance.captions if c is not None)]
        return []

    def build_dataset(self, run: RunContext) -> DreamBoothDataset:
        args = self.args
        if self.instance is None:
            self.check_inputs(args)
        instance, class_images = self.instance, None
        if args.with_prior_preservation:
            with main_process_first(run.accelerator):
                if run.is_main_process:
                    self._fill_class_images(run)
            class_images = ImageSet.load(
                args.class_data_dir,
                args.class_prompt,
                args.resolution,
                "class_data_dir",
                limit=args.num_class_images,
                background=args.alpha_background,
                interpolation=args.image_interpolation_mode,
            )
        for images in (instance, class_images):
            run.notes += [f"warning: {note}" for note in (images.notes if images else [])]
            if images and images.caption_note:
                run.notes.append(images.caption_note)
            if images and not args.enable_bucket:
                narrow = [p.name for p, (w, h) in zip(images.paths, images.original_sizes) if max(w, h) > 2 * min(w, h)]
                if narrow:  # the square crop keeps min/max of such an image: under half of it
                    run.notes.append(
                        f"warning: {len(narrow)} image(s) of {images.folder} are over twice as long as wide and lose "
                        f"more than half to the square crop: {', '.join(narrow[:5])}; --enable_bucket keeps them whole"
                    )
        dataset = DreamBoothDataset(
            instance,
            class_images,
            args.resolution,
            args.center_crop,
            args.random_flip,
            args.seed,
            CaptionPolicy(args.caption_dropout_rate, args.shuffle_caption, args.keep_tokens),
            self._buckets(run),
        )
        if dataset.buckets is not None:
            counts = Counter(dataset.item_sizes)
            run.notes.append(
                f"{dataset.buckets.describe()}: "
                + ", ".join(f"{w}x{h} ({n} example{'s' if n > 1 else ''})" for (w, h), n in sorted(counts.items()))
            )
        self._cache(run, dataset)
        self.dataset = dataset
        return dataset

    def _buckets(self, run: RunContext) -> BucketSpec | None:
        """``--enable_bucket``'s spec, its sides checked against what this VAE and UNet can halve down."""
        args = self.args
        if not args.enable_bucket:
            return None
        spec = BucketSpec(args.resolution, args.min_bucket_reso, args.max_bucket_reso, args.bucket_reso_steps)
        vae, unet = run.components.vae.config, run.components.unet.config
        factor = 2 ** (len(vae.block_out_channels) - 1) * 2 ** (len(unet.down_block_types) - 1)
        if spec.step % factor:
            raise ImageDataError(
                f"--bucket_reso_steps {spec.step}: bucket sides of this model must be multiples of "
                f"{factor} (the VAE's and the UNet's downsampling together)"
            )
        return spec

    def batch_sampler(self, batch_size: int, seed: int) -> BucketBatchSampler | None:
        if self.dataset is None or self.dataset.buckets is None:
            return None
        return BucketBatchSampler(self.dataset.item_sizes, batch_size, seed, self.dataset.buckets.describe())

    def _fill_class_images(self, run: RunContext) -> None:
        args, components = self.args, run.components
        dtype, half = run.weight_dtype, run.weight_dtype != torch.float32
        if args.prior_generation_precision:  # diffusers' flag: a pipeline of its own in that dtype
            from ..inference.pipeline import load_pipeline

            dtype = PRECISION_DTYPES[args.prior_generation_precision]
            pipeline, half = (
                load_pipeline(
                    args.pretrained_model_name_or_path,
                    revision=args.revision,
                    single_file_config=args.single_file_config,
                    variant=args.variant,
                    dtype=dtype,
                    device=run.device,
                    safety_checker=False,
                ),
                False,
            )
        else:
            components.unet.to(run.device)
            pipeline = sampling_pipeline(components)
        # The UNet is still fp32 here (the adapter is attached to full-precision weights), the text
        # encoder and VAE already in the mixed-precision dtype: autocast reconciles them.
        with torch.autocast(device_type=run.device.type, dtype=dtype, enabled=half):
            written = generate_class_images(
                pipeline,
                args.class_data_dir,
                args.class_prompt,
                args.num_class_images,
                args.seed,
                batch_size=args.sample_batch_size,
                num_inference_steps=args.class_inference_steps,
                resolution=args.resolution,
            )
        if written:
            run.notes.append(f"generated {len(written)} class images of “{args.class_prompt}” in {args.class_data_dir}")

    def _cache(self, run: RunContext, dataset: DreamBoothDataset) -> None:
        """Encode prompts once; encode images once too unless their pixels change between steps."""
        args, components = self.args, run.components
        reason = dataset.fresh_encode_reason()
        if args.cache_latents and reason:
            raise ImageDataError(f"--cache_latents cannot be used: {reason}")
        if args.cache_latents is False or (args.cache_latents is None and reason):
            why = reason or "--no_cache_latents"
            run.notes.append(f"latents: fresh VAE encode every step ({why})")
        else:
            crops, dataset.latent_cache = dataset.item_crops(), {}
            for size in dict.fromkeys(size for _, _, size in crops):  # one stack per crop size (bucket)
                keys = [key for key in crops if key[2] == size]
                pixels = [dataset.pixels(role, i, dataset.fixed_view(role, i, size)) for role, i, _ in keys]
                dataset.latent_cache.update(zip(keys, cache_posteriors(pixels, components.vae)))
            dataset.release_images()
            view = "centre crop" if args.center_crop else "each crop is the whole resized image"
            run.notes.append(f"latents: {len(crops)} crops encoded once and cached ({view}, no flip)")
        if args.train_text_encoder:  # the embeddings change with every step of the text-encoder adapter
            run.notes.append("text embeddings: encoded every step (--train_text_encoder trains the text encoder)")
            return
        # Every prompt an item can get, encoded once; shuffled captions are encoded per batch (model_inputs).
        self.prompt_embeds = encode_prompts(components, dataset.fixed_prompts(), run.device, run.weight_dtype)
        if dataset.captions.shuffle:
            run.notes.append("captions: shuffled every step (--shuffle_caption): text embeddings encoded per batch")

    def collate(self, items: list) -> dict:
        return collate_dreambooth(items)

    # --- conditioning and loss --------------------------------------------------------------
    def model_inputs(self, batch: dict, run: RunContext, generator: torch.Generator):
        latents = batch_latents(batch, run.components.vae, generator)
        prompts = batch["prompts"]
        trained = [run.trainable[name] for name in TEXT_ENCODERS if name in run.trainable]
        if trained:  # the prepared (DDP-wrapped) encoders, so their gradients are synchronised
            text = encode_text(run.components, prompts, run.device, run.weight_dtype, trained)
        else:
            missing = [p for p in prompts if p not in self.prompt_embeds]
            embeds = self.prompt_embeds  # shuffled captions are new every step: encoded here, not kept
            if missing:
                embeds = {**embeds, **encode_prompts(run.components, missing, run.device, run.weight_dtype)}
            text = stack_text(embeds, prompts)
        return latents, unet_conditioning(text, batch["time_ids"].to(run.device))

    def reduce_loss(self, per_example: torch.Tensor, batch: dict):
        prior = batch["is_prior"]
        if not bool(prior.any()):
            return per_example.mean(), {}
        instance_loss, prior_loss = per_example[~prior].mean(), per_example[prior].mean()
        loss = instance_loss + self.args.prior_loss_weight * prior_loss
        return loss, {"loss/instance": instance_loss, "loss/prior": prior_loss}

    # --- validation and records -------------------------------------------------------------
    def validation_images(self, run: RunContext, unet, step: int):
        args = self.args
        pipeline = sampling_pipeline(run.components, unet)
        seeds = validation_seeds(args)
        rows = []
        for prompt in self.validation_prompts(args):
            images = sample_images(
                pipeline,
                [prompt] * len(seeds),
                seeds,
                num_inference_steps=args.validation_inference_steps,
                guidance_scale=args.validation_guidance_scale,
                height=args.resolution,
                width=args.resolution,
            ).images
            rows.append((prompt, images))
        return rows

    def adapter_metadata(self) -> dict:
        args = self.args
        return {
            "instance_prompt": args.instance_prompt,
            "class_prompt": args.class_prompt,
            "resolution": args.resolution,
            "captions": self.instance.caption_source if self.instance else "none",
        }

    def example_prompt(self) -> str | None:
        return self.args.instance_prompt

    def model_card_facts(self) -> dict[str, str]:
        args, dataset = self.args, self.dataset
        facts = {
            "instance prompt": f"“{args.instance_prompt}”",
            "instance images": f"{len(dataset.sets['instance'])} from `{args.instance_data_dir}`",
        }
        instance = dataset.sets["instance"]
        found = sum(c is not None for c in instance.captions)
        if found:
            policy = dataset.captions
            changes = [
                f"dropout {policy.dropout_rate:g}" if policy.dropout_rate else "",
                f"tags shuffled after the first {policy.keep_tokens}" if policy.shuffle else "",
            ]
            facts["captions"] = f"{found} of {len(instance)} images from {instance.caption_source}" + "".join(
                f"; {c}" for c in changes if c
            )
        if CLASS in dataset.sets:
            facts["prior preservation"] = (
                f"{len(dataset.sets[CLASS])} class images of “{args.class_prompt}”, weight {args.prior_loss_weight:g}"
            )
        else:
            facts["prior preservation"] = "off"
        if args.train_text_encoder:
            rate = args.learning_rate if args.text_encoder_lr is None else args.text_encoder_lr
            facts["text encoder"] = f"adapted too (attention and MLP linears), learning rate {rate:g}"
        crop = "centre crop" if args.center_crop else "random crop"
        facts["resolution"] = f"{args.resolution} px, {crop}{', random flips' if args.random_flip else ''}"
        if dataset.buckets is not None:
            facts["resolution"] += f"; aspect-ratio {dataset.buckets.describe()}"
        return facts
