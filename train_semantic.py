#!/usr/bin/env python
"""Semantic map → image: an adapter on the UNet plus a hint encoder (or a ControlNet), on accelerate.

    accelerate launch train_semantic.py --config configs/semantic_demo.yaml     # the offline CPU demo
    accelerate launch train_semantic.py --config configs/semantic_sd15_delora.yaml \
        --data_dir /data/ADEChallengeData2016 --output_dir outputs/ade20k-delora

All flags: ``python train_semantic.py --help``. The code lives in ``delora_diffusion/training/semantic.py``.
"""

import sys

from delora_diffusion.training.semantic import main

if __name__ == "__main__":
    sys.exit(main())
