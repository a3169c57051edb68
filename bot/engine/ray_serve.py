"""The Ray Serve transport: the same model features behind a deployment, replicas over a cluster's GPUs and nodes.

    clipchat vision-server --replicas 2 --gpus-per-replica 1     # on the Ray cluster's head node
    CLIPCHAT_INFERENCE=ray CLIPCHAT_RAY_ADDRESS=auto clipchat run  # every bot process

Ray 2.60 turns token authentication on for a local cluster, and for `ray start` whenever a token
exists; such a cluster admits only processes started with RAY_AUTH_MODE=token and the head's
token (RAY_AUTH_TOKEN_PATH=FILE). Ray reads both when it is imported; clipchat never reads the
token itself, so it cannot log it. deploy/README.md says how to hand it out.

A replica holds a `LocalModels`: requests from every bot process meet in its
micro-batchers, exactly as chats do in one process. `RayModels` is the bot's side.
User-facing errors (a damaged photo) come back as values and are raised again here,
so a bad file never looks like a failed replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from clipchat.errors import ClipchatError, InvalidConfig, TooSlow
from clipchat.facts import PhotoFacts
from dialogue import Answer, OpenQuestion
from vision import ImageLimits
from vision.catalog.settings import VisionSettings

from .api import (
    FEATURES,
    AnswerRequest,
    CheckRequest,
    ClassifyRequest,
    DescribeRequest,
    Draft,
    LabelScores,
    MoodRequest,
    TextRequest,
    TextVector,
)

if TYPE_CHECKING:
    from ray.serve import Deployment
    from ray.serve.handle import DeploymentHandle

log = logging.getLogger(__name__)
APP_NAME = "clipchat-vision"
T = TypeVar("T")


def deployment_class() -> Deployment:
    """The Serve deployment, built on first use so that importing clipchat never needs Ray."""
    from ray import serve

    @serve.deployment(name="VisionDeployment", max_ongoing_requests=256)
    class VisionDeployment:
        def __init__(
            self,
            settings: dict[str, Any],
            max_batch: int = 16,
            max_wait_s: float = 0.03,
            timeout_s: float = 120.0,
            decode_memory: int = 512 * 2**20,
        ) -> None:
            from vision import load_models

            from .batcher import model_thread
            from .budget import return_large_blocks_to_the_os
            from .features import ModelFeatures
            from .local import LocalModels

            vision = VisionSettings(**settings)
            return_large_blocks_to_the_os()
            self.timeout_s = timeout_s
            thread = model_thread("vision")  # load and run on one thread: one OpenMP team
            models = thread.submit(
                load_models,
                vision.model_set(),
                vision.device,
                vision.dtype,
                vision.cache_dir,
                vision.hub_cache_dir,
                allow_random_weights=vision.allow_random_weights,
            ).result()
            self.local = LocalModels(
                ModelFeatures.configured(models, vision),
                max_batch=max_batch,
                max_wait=max_wait_s,
                executor=thread,
                timeout=timeout_s,
                decode_memory=decode_memory,
            )

        def check_health(self) -> None:
            """Serve calls this every few seconds and replaces a replica that fails it: a hung GPU never
            raises, so a batch stuck past the callers' timeout counts as a failure."""
            stalled = self.local.stalled_for()
            if stalled > self.timeout_s:
                raise RuntimeError(f"the models have been stuck on one batch for {stalled:.0f} s")

        def identity(self) -> str:
            return self.local.identity

        async def forget_caches(self) -> None:
            await self.local.forget_caches()

        async def call(self, feature: str, request: object) -> object:
            if feature not in FEATURES:
                raise ValueError(f"no model feature {feature!r}")
            try:
                return await getattr(self.local, feature)(request)
            except ClipchatError as error:
                return error

    return cast("Deployment", VisionDeployment)  # serve.deployment made it one; Ray types it as the class


def join_cluster(address: str | None) -> None:
    """Connect this process to the Ray cluster at `address` (None: start a local one), once.

    A cluster that refuses us looks, after Ray's retries, like one that is not there; the error
    says what to check, token authentication first, since Ray turns it on by itself.
    """
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    except ConnectionError as error:
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            hint = "check the address, and that RAY_AUTH_TOKEN_PATH names a copy of the head's token file"
        else:
            hint = (
                "if the cluster uses token authentication, start this process with RAY_AUTH_MODE=token "
                "and RAY_AUTH_TOKEN_PATH naming a copy of the head's token file"
            )
        raise InvalidConfig(
            detail=f"could not join the Ray cluster at {address}: {error}; {hint} "
            '(deploy/README.md, "Securing the cluster")'
        ) from error


def deploy(
    vision: VisionSettings,
    *,
    replicas: int | None = 1,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    gpus_per_replica: float = 0.0,
    cpus_per_replica: float = 1.0,
    max_batch: int = 16,
    max_wait_s: float = 0.03,
    address: str | None = None,
    timeout_s: float = 120.0,
    decode_memory: int = 512 * 2**20,
) -> DeploymentHandle[Any]:
    """Start (or update) the vision application on the Ray cluster at `address` (None: a local one).

    Returns once the replicas are up; `clipchat vision-server` then waits for a signal and calls `undeploy`.
    """
    from ray import serve

    join_cluster(address)
    options: dict[str, Any] = {"ray_actor_options": {"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica}}
    if max_replicas:  # Serve adds replicas while requests queue, and removes them when idle
        options["autoscaling_config"] = {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": max_batch,
        }
    else:
        options["num_replicas"] = replicas
    app = (
        deployment_class()
        .options(**options)
        .bind(vision.model_dump(mode="json"), max_batch, max_wait_s, timeout_s, decode_memory)
    )
    return serve.run(app, name=APP_NAME, route_prefix=None)


def undeploy(timeout_s: float) -> bool:
    """Remove the vision application from the cluster; False if that was not confirmed within `timeout_s`.

    The removal runs on a helper thread: when the cluster has gone away, Ray's calls wait for it
    to come back, and someone stopping the server should not wait with them.
    """
    from ray import serve

    outcome: list[BaseException | None] = []

    def remove() -> None:
        try:
            serve.delete(APP_NAME)
            outcome.append(None)
        except Exception as error:  # reported below, on the thread that decides what happens next
            outcome.append(error)

    worker = threading.Thread(target=remove, name="undeploy", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if outcome == [None]:
        log.info("removed %s from the Ray cluster", APP_NAME)
        return True
    reason = outcome[0] if outcome else f"no answer within {timeout_s:g} s: is the cluster still running?"
    log.warning(
        "could not remove %s from the Ray cluster (%s); `serve shutdown` on the head removes it", APP_NAME, reason
    )
    return False


def replicas_see_images(vision: VisionSettings) -> bool:
    """Whether the replicas' answer model sees images, read from the model set's config as `load_models` reads it
    (its config alone, a few kB): then the driver keeps each photo downscaled and sends it with the question."""
    from vision.models.vlm import answer_kind

    ref = vision.model_set().answer_model
    if ref is None:  # the captioner's language model: words
        return False
    try:
        return answer_kind(ref, vision.hub_cache_dir, check=False).sees_images
    except ClipchatError as error:  # the replicas loaded it; this machine may not reach it: questions bring words
        log.warning(
            "could not tell whether answer model %s sees images, so questions go without the photo: %s", ref, error
        )
        return False


class RayModels:
    """`Models`, answered by the vision application on Ray Serve."""

    def __init__(
        self,
        handle: DeploymentHandle[Any],
        identity: str,
        limits: ImageLimits,
        timeout: float = 120.0,
        sees_images: bool = False,
    ) -> None:
        self.handle = handle
        self.identity = identity
        self.limits = limits
        self.sees_images = sees_images  # the replicas' answer model sees the photo: questions bring it
        self.timeout = timeout  # a caller's longest wait, as in LocalModels

    @classmethod
    async def connect(cls, vision: VisionSettings, address: str | None, timeout: float = 120.0) -> RayModels:
        import ray
        from ray import serve

        if not ray.is_initialized():
            await asyncio.to_thread(join_cluster, address)
        handle = serve.get_app_handle(APP_NAME)
        identity = await handle.identity.remote()
        sees = await asyncio.to_thread(replicas_see_images, vision)
        log.info("vision on Ray Serve (%s), models %s", address or "local", identity)
        return cls(handle, identity, vision.image_limits(), timeout, sees)

    async def describe(self, request: DescribeRequest) -> PhotoFacts:
        return await self._call("describe", request, PhotoFacts)

    async def embed_text(self, request: TextRequest) -> TextVector:
        return await self._call("embed_text", request, TextVector)

    async def classify(self, request: ClassifyRequest) -> LabelScores:
        return await self._call("classify", request, LabelScores)

    async def answer(self, request: AnswerRequest) -> Answer:
        return await self._call("answer", request, Answer)

    async def answer_stream(self, request: AnswerRequest) -> AsyncIterator[Draft | Answer]:
        """No drafts from this transport: the checked answer alone, when it is done."""
        yield await self.answer(request)

    async def route(self, request: AnswerRequest) -> Answer | OpenQuestion:
        routed = await self._call("route", request, object)
        if not isinstance(routed, Answer | OpenQuestion):
            raise TypeError(f"route on Ray Serve answered a {type(routed).__name__}")
        return routed

    async def check(self, request: CheckRequest) -> Answer:
        return await self._call("check", request, Answer)

    async def mood(self, request: MoodRequest) -> Answer:
        return await self._call("mood", request, Answer)

    async def forget_caches(self) -> None:
        # Reaches one replica; the others empty theirs before answering the next search or /tags, whose
        # request carries the database's new count of /forgets (see `Models`).
        await self.handle.forget_caches.remote()

    def stalled_for(self) -> float:
        return 0.0  # a replica's health is Ray Serve's to check: it replaces replicas that stop answering

    def queue_depths(self) -> dict[str, int]:
        return {}  # the queues are the replicas'; Ray's dashboard and metrics show them

    async def close(self) -> None:
        """The replicas belong to the cluster, not to this bot process: nothing to stop."""

    async def _call(self, feature: str, request: object, answer_type: type[T]) -> T:
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                result = await self.handle.call.remote(feature, request)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TooSlow(detail=f"{feature} on Ray Serve took over {self.timeout:g} s") from None
        if isinstance(result, ClipchatError):
            raise result
        if not isinstance(result, answer_type):  # the replica runs another clipchat than this process
            raise TypeError(f"{feature} on Ray Serve answered a {type(result).__name__}, not a {answer_type.__name__}")
        return result
