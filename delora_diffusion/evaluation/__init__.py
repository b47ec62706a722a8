"""Evaluation of generated images: DreamBooth DINO, CLIP-I and CLIP-T under the published protocols.

Reads the generated-images folder written by inference (``GEN/<subject>/<NN>/<seed>.png`` + ``metadata.jsonl``)
and the DreamBooth dataset; imports nothing from training or inference.
"""

import lazy_loader

# Names resolve on first use, so light commands (--help, flag errors) never import torch.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "backbones": ["Backbone", "load_backbone"],
        "dreambooth": ["DreamBoothEvalSettings", "evaluate_dreambooth", "mean_pair_cosines", "row_cosines"],
        "errors": ["EvaluationInputError"],
        "preprocessing": ["ImagePreprocess"],
        "protocols": ["PROTOCOLS", "EvalProtocol", "get_protocol"],
    },
)
