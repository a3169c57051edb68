"""The Ray Serve transport: the same engine behind a deployment, replicas spread over a cluster's GPUs and nodes.

    clipchat vision-server --replicas 2 --gpus-per-replica 1     # on the Ray cluster's head node
    CLIPCHAT_INFERENCE=ray CLIPCHAT_RAY_ADDRESS=auto clipchat run  # every bot process

A replica holds a `LocalModels`: requests from every bot process meet in its
micro-batchers, exactly as chats do in one process. `RayModels` is the bot's side.
User-facing errors (a damaged photo) come back as values and are raised again here,
so a bad file never looks like a failed replica.
"""

from __future__ import annotations

import asyncio
import logging

from clipchat.errors import ClipchatError
from clipchat.facts import PhotoFacts
from dialogue import Answer
from vision.settings import VisionSettings

from .api import (
    FEATURES,
    AnswerRequest,
    ClassifyRequest,
    DescribeRequest,
    LabelScores,
    MoodRequest,
    TextRequest,
    TextVector,
)

log = logging.getLogger(__name__)
APP_NAME = "clipchat-vision"


def deployment_class():
    """The Serve deployment, built on first use so that importing clipchat never needs Ray."""
    from ray import serve

    @serve.deployment(name="VisionDeployment", max_ongoing_requests=256)
    class VisionDeployment:
        def __init__(self, settings: dict, max_batch: int = 16, max_wait_s: float = 0.03) -> None:
            from vision import load_models

            from .batcher import model_thread
            from .engine import ModelEngine
            from .local import LocalModels

            vision = VisionSettings(**settings)
            thread = model_thread("vision")  # load and run on one thread: one OpenMP team
            models = thread.submit(load_models, vision.model_set(), vision.device, vision.dtype,
                                   vision.cache_dir, vision.hub_cache_dir).result()
            self.local = LocalModels(ModelEngine(models, vision.image_limits()), max_batch=max_batch,
                                     max_wait=max_wait_s, executor=thread)

        def identity(self) -> str:
            return self.local.identity

        async def forget_caches(self) -> None:
            await self.local.forget_caches()

        async def call(self, feature: str, request):
            if feature not in FEATURES:
                raise ValueError(f"no model feature {feature!r}")
            try:
                return await getattr(self.local, feature)(request)
            except ClipchatError as error:
                return error

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


class RayModels:
    """`Models`, answered by the vision application on Ray Serve."""

    def __init__(self, handle, identity: str, limits) -> None:
        self.handle = handle
        self.identity = identity
        self.limits = limits

    @classmethod
    async def connect(cls, vision: VisionSettings, address: str | None) -> RayModels:
        import ray
        from ray import serve

        if not ray.is_initialized():
            await asyncio.to_thread(ray.init, address=address, include_dashboard=False, ignore_reinit_error=True)
        handle = serve.get_app_handle(APP_NAME)
        identity = await handle.identity.remote()
        log.info("vision on Ray Serve (%s), models %s", address or "local", identity)
        return cls(handle, identity, vision.image_limits())

    async def describe(self, request: DescribeRequest) -> PhotoFacts:
        return await self._call("describe", request)

    async def embed_text(self, request: TextRequest) -> TextVector:
        return await self._call("embed_text", request)

    async def classify(self, request: ClassifyRequest) -> LabelScores:
        return await self._call("classify", request)

    async def answer(self, request: AnswerRequest) -> Answer:
        return await self._call("answer", request)

    async def mood(self, request: MoodRequest) -> Answer:
        return await self._call("mood", request)

    async def forget_caches(self) -> None:
        # Reaches one replica; the others' caches are bounded and age out as they fill.
        await self.handle.forget_caches.remote()

    def queue_depths(self) -> dict[str, int]:
        return {}  # the queues are the replicas'; Ray's dashboard and metrics show them

    async def close(self) -> None:
        """The replicas belong to the cluster, not to this bot process: nothing to stop."""

    async def _call(self, feature: str, request):
        result = await self.handle.call.remote(feature, request)
        if isinstance(result, ClipchatError):
            raise result
        return result
