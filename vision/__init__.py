"""clipchat's eyes: CLIP embeddings, captions and zero-shot tags.

    from vision import load_models, load_image
    models = load_models("default")               # or a directory with clipchat.json
    [facts] = models.describe([load_image(data)])  # clipchat.PhotoFacts
    facts.caption, facts.tags, facts.embedding

This package never imports `telegram`; its errors are `clipchat.errors`'.
"""

from .catalog.model_sets import ModelSet, builtin_model_sets, load_model_set
from .decoding.strategies import Caption, DecodingOptions, decode
from .intake.images import ImageLimits, load_image
from .pipeline import VisionModels, load_models

__all__ = [
    "Caption",
    "DecodingOptions",
    "ImageLimits",
    "ModelSet",
    "VisionModels",
    "builtin_model_sets",
    "decode",
    "load_image",
    "load_model_set",
    "load_models",
]
