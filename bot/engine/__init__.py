"""Model serving: the engine's typed interface and its transports (in-process, Ray Serve).

    models = LocalModels(ModelFeatures(load_models("default")))
    facts = await models.describe(DescribeRequest(photo_bytes))

Never imports `telegram`.
"""

from .api import (
    FEATURES,
    AnswerRequest,
    CheckRequest,
    ClassifyRequest,
    DescribeRequest,
    Draft,
    LabelScores,
    Models,
    MoodRequest,
    TextRequest,
    TextVector,
)
from .features import ModelFeatures
from .local import LocalModels

__all__ = [
    "FEATURES",
    "AnswerRequest",
    "CheckRequest",
    "ClassifyRequest",
    "DescribeRequest",
    "Draft",
    "LabelScores",
    "LocalModels",
    "ModelFeatures",
    "Models",
    "MoodRequest",
    "TextRequest",
    "TextVector",
]
