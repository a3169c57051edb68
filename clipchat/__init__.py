"""clipchat's shared vocabulary: the errors and the photo facts every package speaks.

Nothing here imports torch, SQL or telegram, so `vision`, `dialogue`, `storage`
and `bot` can all depend on it without depending on each other.
"""

from .errors import (
    BadImage,
    Busy,
    ClipchatError,
    InvalidConfig,
    InvalidInput,
    ModelNotFound,
    NotFound,
    OperatorError,
    UserError,
)
from .facts import PhotoFacts, Tag

__all__ = [
    "BadImage",
    "Busy",
    "ClipchatError",
    "InvalidConfig",
    "InvalidInput",
    "ModelNotFound",
    "NotFound",
    "OperatorError",
    "PhotoFacts",
    "Tag",
    "UserError",
]
