"""Generate evaluation images with a base Stable Diffusion model and an optional delora-diffusion adapter.

    python generate.py --pretrained_model_name_or_path stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --adapter outputs/dog/adapter.safetensors --subject dog --class_noun dog --output_dir outputs/images

Thin entry: the command lives in ``delora_diffusion.inference.generate`` (``python generate.py --help``).
"""

import sys

from delora_diffusion.inference.generate import main

if __name__ == "__main__":
    sys.exit(main())
