"""Vision on Ray Serve: the same models behind a deployment, replicas spread over a cluster's GPUs and nodes.

    clipchat vision-server --replicas 2 --gpus-per-replica 1     # on the Ray cluster's head node
    CLIPCHAT_INFERENCE=ray CLIPCHAT_RAY_ADDRESS=auto clipchat run  # every bot process

`VisionDeployment` wraps the in-process code: photos and search phrases are
gathered across all bot processes by `@serve.batch`, decoded beside the replica's
model thread, and run through `VisionModels` on it. `RayInference` is the bot's side:
the same async methods as `LocalInference`, so nothing else in the bot changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from dialogue import Answer, Conversation
from vision.errors import ClipchatError
from vision.settings import VisionSettings

from .inference import LocalInference, Seen

log = logging.getLogger(__name__)
APP_NAME = "clipchat-vision"


class RemoteError(ClipchatError):
    """A user-facing error raised in a vision replica, carried back with its message."""


def _failure(error: ClipchatError) -> dict:
    return {"clipchat_error": type(error).__name__, "user_message": error.user_message, "detail": error.detail}


def _unwrap(result):
    if isinstance(result, dict) and "clipchat_error" in result:
        raise RemoteError(result["user_message"], detail=f"{result['clipchat_error']}: {result['detail']}")
    return result


def deployment_class():
    """The Serve deployment, built on first use so that importing clipchat never needs Ray."""
    from ray import serve

    @serve.deployment(name="VisionDeployment", max_ongoing_requests=256)
    class VisionDeployment:
        def __init__(self, settings: dict, max_batch: int = 16, max_wait_s: float = 0.03) -> None:
            from vision import load_models
            from vision.batcher import model_thread

            vision = VisionSettings(**settings)
            self.thread = model_thread("vision")  # load and run on one thread: one OpenMP team
            models = self.thread.submit(load_models, vision.model_set(), vision.device, vision.dtype,
                                        vision.cache_dir, vision.hub_cache_dir).result()
            self.local = LocalInference(models, limits=vision.image_limits(), max_batch=max_batch,
                                        max_wait=max_wait_s, executor=self.thread)
            self.describe_batch.set_max_batch_size(max_batch)
            self.describe_batch.set_batch_wait_timeout_s(max_wait_s)
            self.embed_batch.set_max_batch_size(max_batch)

        def identity(self) -> str:
            return self.local.identity

        async def describe(self, data: bytes):
            try:
                prepared = await asyncio.to_thread(self.local._prepare, data)  # a bad file fails alone, here
            except ClipchatError as error:
                return _failure(error)
            return await self.describe_batch(prepared)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.03)
        async def describe_batch(self, prepared: list) -> list[Seen]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.thread, self.local._describe_batch, prepared)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.03)
        async def embed_batch(self, texts: list[str]) -> list[np.ndarray]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.thread, self.local._embed_text_batch, texts)

        async def embed_text(self, text: str) -> np.ndarray:
            return await self.embed_batch(text)

        async def classify(self, embedding: np.ndarray, labels: Sequence[str]):
            try:
                return await self.local.classify(embedding, labels)
            except ClipchatError as error:
                return _failure(error)

        async def answer(self, conversation: Conversation, question: str) -> Answer:
            return await self.local.answer(conversation, question)

        async def mood(self, embedding: np.ndarray) -> Answer:
            return await self.local.mood(embedding)

    return VisionDeployment


def deploy(vision: VisionSettings, *, replicas: int | None = 1, min_replicas: int = 1, max_replicas: int | None = None,
           gpus_per_replica: float = 0.0, cpus_per_replica: float = 1.0, max_batch: int = 16,
           max_wait_s: float = 0.03, address: str | None = None, blocking: bool = False):
    """Start (or update) the vision application on the Ray cluster at `address` (None: a local one)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    options: dict = {"ray_actor_options": {"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica}}
    if max_replicas:  # Serve adds replicas while requests queue, and removes them when idle
        options["autoscaling_config"] = {"min_replicas": min_replicas, "max_replicas": max_replicas,
                                         "target_ongoing_requests": max_batch}
    else:
        options["num_replicas"] = replicas
    app = deployment_class().options(**options).bind(vision.model_dump(mode="json"), max_batch, max_wait_s)
    return serve.run(app, name=APP_NAME, route_prefix=None, blocking=blocking)


class RayInference:
    """The bot's side: the `Inference` methods, answered by the vision application on Ray Serve."""

    def __init__(self, handle, identity: str, limits) -> None:
        self.handle = handle
        self.identity = identity
        self.limits = limits

    @classmethod
    async def connect(cls, vision: VisionSettings, address: str | None) -> RayInference:
        import ray
        from ray import serve

        if not ray.is_initialized():
            await asyncio.to_thread(ray.init, address=address, include_dashboard=False, ignore_reinit_error=True)
        handle = serve.get_app_handle(APP_NAME)
        identity = await handle.identity.remote()
        log.info("vision on Ray Serve (%s), models %s", address or "local", identity)
        return cls(handle, identity, vision.image_limits())

    async def describe(self, data: bytes) -> Seen:
        return _unwrap(await self.handle.describe.remote(data))

    async def embed_text(self, text: str) -> np.ndarray:
        return await self.handle.embed_text.remote(text)

    async def classify(self, embedding: np.ndarray, labels: Sequence[str]) -> list[dict]:
        return _unwrap(await self.handle.classify.remote(embedding, list(labels)))

    async def answer(self, conversation: Conversation, question: str) -> Answer:
        return await self.handle.answer.remote(conversation, question)

    async def mood(self, embedding: np.ndarray) -> Answer:
        return await self.handle.mood.remote(embedding)

    async def close(self) -> None:
        """The replicas belong to the cluster, not to this bot process: nothing to stop."""
