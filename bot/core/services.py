"""The composition root's product: every heavy object the application uses, built once at start-up.

The core receives its `Models` ready made: the composition root (`adapter/application`) chooses them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clipchat.metrics import STAGE_SECONDS
from storage import (
    AccessList,
    EmbeddingIndex,
    MembersSeen,
    StorageSettings,
    connect_database,
    make_sessionmaker,
    reading,
    upgrade,
)
from storage.update_order import SharedOrder

from ..engine import Models
from .downloads import Downloads
from .pixels import Pixels
from .settings import BotSettings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: BotSettings
    storage_settings: StorageSettings
    models: Models
    database: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    index: EmbeddingIndex
    downloads: Downloads  # the bytes of photos being looked at, all chats together
    access: AccessList = field(default_factory=AccessList)  # the operators' /allow and /ban, checked per update
    members: MembersSeen = field(default_factory=MembersSeen)  # who this process has noted as seen in each group
    # photos under discussion, downscaled, for an answer model that sees images (`core/pixels`)
    pixels: Pixels = field(default_factory=lambda: Pixels(32 * 2**20))

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads, timed as the `database` stage (writes are timed by `write_with_retry`); a
        database that cannot serve raises StorageDown."""
        with STAGE_SECONDS.labels("database").time():
            async with reading(self.sessions) as session:
                yield session

    async def close(self) -> None:
        await self.access.close()
        await self.models.close()
        await self.database.dispose()


def plan_database(settings: BotSettings, storage_settings: StorageSettings) -> tuple[AsyncEngine, SharedOrder | None]:
    """The database engine (it connects on first use) and, when several processes serve the bot, the
    order they share: cheap to build before the event loop runs, so the update processor can take it."""
    database = connect_database(storage_settings.url(), timeout=storage_settings.database_timeout_s)
    shared = (
        SharedOrder(make_sessionmaker(database), reorder_window=settings.reorder_wait_s)
        if settings.shared_ordering
        else None
    )
    return database, shared


async def open_services(
    settings: BotSettings,
    storage_settings: StorageSettings,
    open_models: Callable[[], Awaitable[Models]],
    *,
    database: AsyncEngine | None = None,
) -> Services:
    """Migrate the database (`database`, else one made from the settings), then open the models with
    `open_models` and wire them together. Which models (in this process, on Ray, a stand-in in tests)
    is the composition root's choice; migrating first fails a bad database before minutes of loading."""
    database = database or connect_database(storage_settings.url(), timeout=storage_settings.database_timeout_s)
    try:
        await upgrade(database)
        models = await open_models()
    except BaseException:
        await database.dispose()
        raise
    downloads = Downloads(settings.download_memory_mb * 2**20, models.limits.max_bytes)
    services = Services(
        settings,
        storage_settings,
        models,
        database,
        make_sessionmaker(database),
        EmbeddingIndex(),
        downloads,
        pixels=Pixels(settings.answer_photo_cache_mb * 2**20),
    )
    try:
        await services.access.refresh(services.sessions)  # so that no update waits for it
    except BaseException:
        await services.close()
        raise
    log.info("services ready: models %s, database %s", models.identity, database.url.render_as_string())
    return services
