"""Evaluation of generated images: DreamBooth DINO, CLIP-I and CLIP-T under the published protocols.

Reads the generated-images folder written by inference (``GEN/<subject>/<NN>/<seed>.png`` + ``metadata.jsonl``)
and the DreamBooth dataset; imports nothing from training or inference.
"""

from .backbones import Backbone, load_backbone
from .dreambooth import DreamBoothEvalSettings, evaluate_dreambooth, mean_pair_cosines, row_cosines
from .errors import EvaluationInputError
from .preprocessing import ImagePreprocess
from .protocols import PROTOCOLS, EvalProtocol, get_protocol

__all__ = [
    "Backbone", "DreamBoothEvalSettings", "EvalProtocol", "EvaluationInputError", "ImagePreprocess", "PROTOCOLS",
    "evaluate_dreambooth", "get_protocol", "load_backbone", "mean_pair_cosines", "row_cosines",
]
