"""Inference: a base pipeline plus an adapter file -> images in the layout the evaluator reads.

``pipeline.py`` loads the pipeline and puts the adapter on its UNet; ``schedulers.py`` names the
solvers; ``sampling.py`` renders one image per seed; ``prompt_sets.py`` builds a subject's prompts;
``layout.py`` is the output contract; ``generate.py`` is the ``generate.py`` command.
"""

from ..layout import METADATA_FILE, image_file, read_metadata
from .pipeline import LoadedAdapter, PipelineLoadError, apply_adapter, load_pipeline, remove_adapter
from .sampling import Samples, default_size, sample_images
from .schedulers import SCHEDULERS, set_scheduler

__all__ = [
    "METADATA_FILE", "SCHEDULERS", "LoadedAdapter", "PipelineLoadError", "Samples", "apply_adapter",
    "default_size", "image_file", "load_pipeline", "read_metadata", "remove_adapter", "sample_images",
    "set_scheduler",
]
