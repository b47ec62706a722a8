"""Inference: a base pipeline plus an adapter file -> images in the layout the evaluator reads.

``pipeline.py`` loads the pipeline and puts the adapter on its UNet; ``schedulers.py`` names the
solvers; ``sampling.py`` renders one image per seed; ``prompt_sets.py`` builds a subject's prompts;
``layout.py`` is the output contract; ``generate.py`` is the ``generate.py`` command.
"""

import lazy_loader

# Names resolve on first use, so light commands (--help, flag errors) never import torch.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "pipeline": ["LoadedAdapter", "PipelineLoadError", "apply_adapter", "load_pipeline", "remove_adapter"],
        "sampling": ["Samples", "default_size", "sample_images"],
        "schedulers": ["SCHEDULERS", "set_scheduler"],
    },
)
