"""Per-user, per-chat conversation context and image records in SQL (SQLAlchemy 2, async).

Callers open one session per update from the sessionmaker built at start-up and
pass it to the data functions here. This package never imports `telegram`.
"""

from .chat_moves import Moved, move_chat
from .chat_settings import SWITCHES, Switches, chat_switches, set_chat_switch
from .context import (
    NewImage,
    add_sent_photos,
    add_turn,
    image_by_message,
    image_under_discussion,
    recent_turns,
    reset_thread,
    save_image,
)
from .database import (
    connect_database,
    downgrade,
    make_sessionmaker,
    open_database,
    reading,
    storage_down,
    upgrade,
    write_with_retry,
)
from .lifecycle import (
    Removed,
    forget_user,
    maintain,
    purge_older_than,
    rows_about_user,
    statistics,
)
from .models import (
    AccessStatus,
    Base,
    Chat,
    ChatSettings,
    ImageRecord,
    SentPhoto,
    Turn,
    UsageKind,
    UsageScope,
    User,
    decode_embeddings,
    encode_embedding,
)
from .search import EmbeddingIndex, search_images
from .settings import StorageSettings
from .usage import (
    AccessList,
    access_of,
    busiest,
    first_to_tell,
    purge_usage_before,
    set_access,
    usage_on,
    use,
)

__all__ = [
    "SWITCHES",
    "AccessList",
    "AccessStatus",
    "Base",
    "Chat",
    "ChatSettings",
    "EmbeddingIndex",
    "ImageRecord",
    "Moved",
    "NewImage",
    "Removed",
    "SentPhoto",
    "StorageSettings",
    "Switches",
    "Turn",
    "UsageKind",
    "UsageScope",
    "User",
    "access_of",
    "add_sent_photos",
    "add_turn",
    "busiest",
    "chat_switches",
    "connect_database",
    "decode_embeddings",
    "downgrade",
    "encode_embedding",
    "first_to_tell",
    "forget_user",
    "image_by_message",
    "image_under_discussion",
    "maintain",
    "make_sessionmaker",
    "move_chat",
    "open_database",
    "purge_older_than",
    "purge_usage_before",
    "reading",
    "recent_turns",
    "reset_thread",
    "rows_about_user",
    "save_image",
    "search_images",
    "set_access",
    "set_chat_switch",
    "statistics",
    "storage_down",
    "upgrade",
    "usage_on",
    "use",
    "write_with_retry",
]
