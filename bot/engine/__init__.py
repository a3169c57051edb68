"""Model serving: the engine's typed interface and its transports (in-process, Ray Serve).

    models = LocalModels(ModelEngine(load_models("default")))
    facts = await models.describe(DescribeRequest(photo_bytes))

Never imports `telegram`.
"""

from .api import (
    FEATURES,
    AnswerRequest,
    ClassifyRequest,
    DescribeRequest,
    LabelScores,
    Models,
    MoodRequest,
    TextRequest,
    TextVector,
)
from .engine import ModelEngine
from .local import LocalModels

__all__ = [
    "FEATURES",
    "AnswerRequest",
    "ClassifyRequest",
    "DescribeRequest",
    "LabelScores",
    "LocalModels",
    "ModelEngine",
    "Models",
    "MoodRequest",
    "TextRequest",
    "TextVector",
]
