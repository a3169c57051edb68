"""clipchat's eyes: CLIP embeddings, captions and zero-shot tags.

    from vision import load_models, load_image
    models = load_models("default")               # or a directory with clipchat.json
    [d] = models.describe([load_image(data)])
    d.caption, d.tags, d.embedding

This package never imports `telegram`.
"""

from .decoding import Caption, DecodingOptions, decode
from .errors import BadImage, ClipchatError, InvalidOptions, ModelNotFound
from .intake import ImageLimits, load_image
from .model_sets import ModelSet, builtin_model_sets, load_model_set
from .pipeline import Description, VisionModels, load_models

__all__ = ["BadImage", "Caption", "ClipchatError", "DecodingOptions", "Description", "ImageLimits",
           "InvalidOptions", "ModelNotFound", "ModelSet", "VisionModels", "builtin_model_sets", "decode",
           "load_image", "load_model_set", "load_models"]
