"""The names of what a training run writes into ``--output_dir`` (torch-free, like ``layout.py``).

The loop, checkpoints, the end-of-run summary, the model card, the hub upload and the studies all find a
run's files through these names, so a rename happens here once.
"""

from __future__ import annotations

ADAPTER_FILE = "adapter.safetensors"  # the run's self-describing adapter (and each checkpoint's)
ADAPTER_EMA_FILE = "adapter_ema.safetensors"  # the EMA copy, with --adapter_ema_decay
TRAINING_ARGS_FILE = "training_args.json"  # every setting, as resolved
METRICS_FILE = "metrics.jsonl"  # one JSON object per optimizer step
MODEL_CARD_FILE = "README.md"
CHECKPOINT_PREFIX = "checkpoint-"  # checkpoint-N/ folders
VALIDATION_DIR = "validation"  # validation grids, step-NNNNNN.png
CLASS_IMAGES_DIR = "class_images"  # prior-preservation images unless --class_data_dir
