#!/usr/bin/env python
"""DreamBooth with a DeLoRA / ETHER / ETHER+ / LoRA / DoRA adapter on the UNet, on accelerate.

    accelerate launch train_dreambooth.py --config configs/demo.yaml      # the offline CPU demo
    accelerate launch train_dreambooth.py --config configs/dreambooth_sd15_delora.yaml \
        --instance_data_dir /data/dreambooth/dog --instance_prompt "a photo of sks dog" \
        --class_prompt "a photo of dog" --output_dir outputs/dog-delora

All flags: ``python train_dreambooth.py --help``. The code lives in ``delora_diffusion/training``.
"""

import sys

from delora_diffusion.training.dreambooth import main

if __name__ == "__main__":
    sys.exit(main())
