"""The composition root's product: every heavy object the handlers use, built once at start-up."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import EmbeddingIndex, StorageSettings, open_database
from vision import VisionModels, load_models
from vision.batcher import model_thread
from vision.settings import VisionSettings

from .inference import Inference, LocalInference
from .settings import BotSettings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: BotSettings
    storage_settings: StorageSettings
    inference: Inference
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    index: EmbeddingIndex

    async def close(self) -> None:
        await self.inference.close()
        await self.engine.dispose()


async def open_services(settings: BotSettings, vision_settings: VisionSettings, storage_settings: StorageSettings,
                        models: VisionModels | None = None) -> Services:
    """Load the models (unless given), open and migrate the database, and wire them together."""
    engine, sessions = await open_database(storage_settings.url())
    if settings.inference == "ray":
        from .ray_serve import RayInference

        try:
            inference = await RayInference.connect(vision_settings, settings.ray_address)
        except BaseException:
            await engine.dispose()
            raise
        return Services(settings, storage_settings, inference, engine, sessions, EmbeddingIndex())
    # The models are loaded on the thread that will run them: each thread that runs PyTorch
    # gets its own OpenMP team, and a second team measured 40-50% slower batches on 2 cores.
    thread = model_thread("vision")
    try:
        if models is None:
            models = await asyncio.get_running_loop().run_in_executor(thread, partial(
                load_models, vision_settings.model_set(), device=vision_settings.device, dtype=vision_settings.dtype,
                cache_dir=vision_settings.cache_dir, hub_cache_dir=vision_settings.hub_cache_dir))
    except BaseException:
        thread.shutdown(wait=False)
        await engine.dispose()
        raise
    inference = LocalInference(models, limits=vision_settings.image_limits(), max_batch=settings.max_batch,
                               max_wait=settings.max_wait_ms / 1000, max_queue=settings.vision_queue,
                               executor=thread)
    log.info("services ready: models %s, database %s", inference.identity, engine.url.render_as_string())
    return Services(settings, storage_settings, inference, engine, sessions, EmbeddingIndex())
