"""The composition root's product: every heavy object the application uses, built once at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clipchat.metrics import STAGE_SECONDS
from storage import AccessList, EmbeddingIndex, StorageSettings, connect_database, make_sessionmaker, upgrade
from storage.update_order import SharedOrder
from vision import VisionModels, load_models
from vision.catalog.settings import VisionSettings

from ..engine import LocalModels, ModelFeatures, Models
from ..engine.batcher import model_thread
from ..engine.budget import return_large_blocks_to_the_os
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
    access: AccessList = field(default_factory=AccessList)  # the operators' /allow and /ban, checked per update

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads, timed as the `database` stage (writes are timed by `write_with_retry`)."""
        with STAGE_SECONDS.labels("database").time():
            async with self.sessions() as session:
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
    vision_settings: VisionSettings,
    storage_settings: StorageSettings,
    *,
    models: VisionModels | None = None,
    database: AsyncEngine | None = None,
) -> Services:
    """Migrate the database (`database`, else one made from the settings), load the models (unless given)
    and wire them together."""
    database = database or connect_database(storage_settings.url(), timeout=storage_settings.database_timeout_s)
    try:
        await upgrade(database)
        served = await _open_models(settings, vision_settings, models)
    except BaseException:
        await database.dispose()
        raise
    services = Services(settings, storage_settings, served, database, make_sessionmaker(database), EmbeddingIndex())
    try:
        await services.access.refresh(services.sessions)  # so that no update waits for it
    except BaseException:
        await services.close()
        raise
    log.info("services ready: models %s, database %s", served.identity, database.url.render_as_string())
    return services


async def _open_models(settings: BotSettings, vision_settings: VisionSettings, models: VisionModels | None) -> Models:
    if settings.inference == "ray":
        from ..engine.ray_serve import RayModels

        return await RayModels.connect(vision_settings, settings.ray_address, settings.model_timeout_s)
    return_large_blocks_to_the_os()  # decoded photos' memory goes back when they are done
    # The models are loaded on the thread that will run them: each thread that runs PyTorch
    # gets its own OpenMP team, and a second team measured 40-50% slower batches on 2 cores.
    thread = model_thread("vision")
    try:
        if models is None:
            models = await asyncio.get_running_loop().run_in_executor(thread, load_configured_models, vision_settings)
    except BaseException:
        thread.shutdown(wait=False)
        raise
    return serve_locally(models, settings, vision_settings, thread)


def load_configured_models(vision_settings: VisionSettings) -> VisionModels:
    """The operator's model set, device and dtype; call it on the thread that will run them."""
    return load_models(
        vision_settings.model_set(),
        device=vision_settings.device,
        dtype=vision_settings.dtype,
        cache_dir=vision_settings.cache_dir,
        hub_cache_dir=vision_settings.hub_cache_dir,
        allow_random_weights=vision_settings.allow_random_weights,
    )


def serve_locally(
    models: VisionModels, settings: BotSettings, vision_settings: VisionSettings, thread: Executor
) -> LocalModels:
    """The in-process transport as the bot configures it (`clipchat bench` measures this very object)."""
    return LocalModels(
        ModelFeatures.configured(models, vision_settings),
        max_batch=settings.max_batch,
        max_wait=settings.max_wait_ms / 1000,
        max_queue=settings.vision_queue,
        executor=thread,
        decode_workers=settings.decode_workers,
        decode_memory=settings.decode_memory_mb * 2**20,
        timeout=settings.model_timeout_s,
    )
