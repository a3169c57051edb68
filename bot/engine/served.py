"""Open questions answered by a model server behind an OpenAI-compatible API, CLIP still in charge.

    models = ServedModels(LocalModels(features), AnswerServer("http://localhost:11434/v1", "qwen2.5:3b"))

`ServedModels` wraps any `Models` and passes everything through but the answer model's part of an open
question. The wrapped models route each question on their model thread (`Models.route`): CLIP's exact
routes answer as they always do, and an open question comes back as the chat messages the in-process answer
model's template would get. The server writes the answer, streamed (each delta a `Draft`); the wrapped
models check it with CLIP (`Models.check`): a reply that contradicts the photo is refused like any other.
The in-process answer model is never loaded, unless the operator asks for it as the fallback.

The server's failures are the bot's own kind. At most `concurrency` calls are out at once, and a question
waits for a free one within its deadline; each question has `deadline_s` for all of it, retries included.
429s, 5xx and dropped connections are retried with back-off (`clipchat.retrying`) until the first words
arrive; a reply cut short is not resumed. A question the server did not answer hears one line saying the
model server is unavailable, then the photo's caption and tags (`dialogue.unavailable`); after `failures`
such questions in a row the circuit opens (`circuit.Circuit`) and questions get that answer at once for
`cooldown_s`, then one question tries the server again. The API key is never logged: it is a SecretStr
until the client gets it, and error texts are scrubbed of it before they reach a log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from PIL import Image
from pydantic import SecretStr

from clipchat.errors import BadImage
from clipchat.facts import PhotoFacts
from clipchat.kinds import AnswerFallback
from clipchat.metrics import ANSWER_ERRORS, ANSWER_SECONDS, ANSWER_TOKENS
from clipchat.retrying import retrying
from dialogue import Answer, OpenQuestion, unavailable
from vision import ImageLimits, load_image

from .api import (
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
from .circuit import Circuit

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGE_SIDE = 512  # a photo sent to a model that sees images fits in this square: what VLMs read at most anyway
# Sampled as the in-process answer model samples (dialogue/generation.sample_answers); a frequency penalty of 0.2 is
# transformers' repetition_penalty 1.2 on `transformers serve`, and as mild elsewhere.
TEMPERATURE, TOP_P, FREQUENCY_PENALTY = 0.8, 0.9, 0.2


class Failure(StrEnum):
    """Why a call to the answer server failed: the `kind` of clipchat_answer_backend_errors."""

    RATE_LIMITED = "rate_limited"  # 429: retried
    SERVER_ERROR = "server_error"  # 5xx, or an error in the stream: retried
    CONNECTION = "connection"  # refused, reset, cut mid-stream: retried until the first words arrived
    TIMEOUT = "timeout"  # past the question's deadline
    REFUSED = "refused"  # any other 4xx (a wrong model name or key): retrying cannot help
    SATURATED = "saturated"  # no free call within the deadline: the server is busy, not down
    CIRCUIT_OPEN = "circuit_open"  # not asked: it failed too often lately


RETRIED = (Failure.RATE_LIMITED, Failure.SERVER_ERROR, Failure.CONNECTION)


@dataclass(frozen=True)
class AnswerServer:
    """Where open questions go, and how long and how often the bot waits for them."""

    url: str  # the API's base, e.g. http://localhost:11434/v1
    model: str  # the model's name at that server
    key: SecretStr | None = field(default=None, repr=False)
    sees_images: bool = False
    deadline_s: float = 30.0  # for all of one question: a free call, retries, the whole stream
    concurrency: int = 8  # calls out at once, all chats together
    candidates: int = 1  # replies asked for per question; CLIP picks the best it finds no contradiction in
    failures: int = 5  # questions failed in a row that open the circuit
    cooldown_s: float = 30.0
    attempts: int = 4  # tries of one call
    fallback: AnswerFallback = AnswerFallback.DESCRIBE

    @property
    def shown(self) -> str:
        """The URL without any user or password in it, for logs and `doctor`."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ServerFailed(Exception):
    def __init__(self, kind: Failure, detail: str, status: int | None = None) -> None:
        self.kind, self.status = kind, status  # status: the HTTP status the server answered, if it did
        super().__init__(f"{kind}: {detail}")


# What a server answers a prompt longer than its model's window (transformers serve, vLLM: 400; others 413, 422)
TOO_LONG = (400, 413, 422)


def downscaled(data: bytes, limits: ImageLimits, side: int = IMAGE_SIDE) -> bytes:
    """The photo checked as every photo is, downscaled to fit `side`, as a JPEG."""
    image = load_image(data, limits)
    image.thumbnail((side, side))
    encoded = io.BytesIO()
    image.convert("RGB").save(encoded, "JPEG", quality=85)
    return encoded.getvalue()


def photo_url(data: bytes, limits: ImageLimits, side: int = IMAGE_SIDE) -> str:
    """The photo as a JPEG data URL that fits `side`: one already so (`downscaled` by the core) goes as it is."""
    return "data:image/jpeg;base64," + base64.b64encode(
        _small_jpeg(data, side) or downscaled(data, limits, side)
    ).decode("ascii")


def _small_jpeg(data: bytes, side: int) -> bytes | None:
    """`data`, if it is a JPEG that fits `side` (read from its header alone), else None."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            return data if max(image.size) <= side else None
    except (OSError, ValueError):
        return None


class ServedModels:
    """`Models` whose open questions a model server answers; everything else, and CLIP's check, `inner`'s."""

    def __init__(self, inner: Models, server: AnswerServer, client: AsyncOpenAI | None = None) -> None:
        from openai import AsyncOpenAI

        self.inner, self.server = inner, server
        self.identity, self.limits = inner.identity, inner.limits
        self.sees_images = server.sees_images
        key = server.key.get_secret_value() if server.key is not None else ""
        self._secret = key
        # max_retries=0: retries are clipchat's own (back-off, the question's deadline); local servers take any key
        self._client = client or AsyncOpenAI(
            base_url=server.url, api_key=key or "unused", max_retries=0, timeout=server.deadline_s
        )
        self._slots = asyncio.Semaphore(server.concurrency)
        self.circuit = Circuit(server.failures, server.cooldown_s, name=f"the answer server at {server.shown}")

    # Everything but open questions: the wrapped models'.
    async def describe(self, request: DescribeRequest) -> PhotoFacts:
        return await self.inner.describe(request)

    async def embed_text(self, request: TextRequest) -> TextVector:
        return await self.inner.embed_text(request)

    async def classify(self, request: ClassifyRequest) -> LabelScores:
        return await self.inner.classify(request)

    async def mood(self, request: MoodRequest) -> Answer:
        return await self.inner.mood(request)

    async def route(self, request: AnswerRequest) -> Answer | OpenQuestion:
        return await self.inner.route(request)

    async def check(self, request: CheckRequest) -> Answer:
        return await self.inner.check(request)

    async def forget_caches(self) -> None:
        await self.inner.forget_caches()

    def stalled_for(self) -> float:
        return self.inner.stalled_for()

    def queue_depths(self) -> dict[str, int]:
        return self.inner.queue_depths()

    async def close(self) -> None:
        await self._client.close()
        await self.inner.close()

    async def answer(self, request: AnswerRequest) -> Answer:
        """The checked answer, once it is done: `answer_stream` without the drafts."""
        async with contextlib.aclosing(self.answer_stream(request)) as events:
            async for event in events:
                if isinstance(event, Answer):
                    return event
        raise RuntimeError("an answer stream ended without its answer")

    async def answer_stream(self, request: AnswerRequest) -> AsyncGenerator[Draft | Answer, None]:
        """CLIP's answer at once, or the server's reply as it is written, then the checked answer (or the fallback)."""
        routed = await self.inner.route(request)
        if isinstance(routed, Answer):
            yield routed
            return
        facts = routed.facts
        if not self.circuit.admits():
            ANSWER_ERRORS.labels("served", Failure.CIRCUIT_OPEN).inc()
            yield await self._fallback(request, facts)
            return
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.server.deadline_s
        messages = await self._messages(routed, request.photo)
        others = [
            asyncio.create_task(self._written(messages, routed.max_tokens, deadline))
            for _ in range(self.server.candidates - 1)
        ]
        replies: list[str] = []
        failures: list[ServerFailed] = []
        verdict = False
        try:
            written = ""
            try:
                async with contextlib.aclosing(self._streamed(messages, routed.max_tokens, deadline)) as stream:
                    async for written in stream:
                        yield Draft(written)
                replies.append(written)
            except ServerFailed as error:
                failures.append(error)
            for outcome in await asyncio.gather(*others, return_exceptions=True):
                if isinstance(outcome, str):
                    replies.append(outcome)
                elif isinstance(outcome, ServerFailed):
                    failures.append(outcome)
                elif isinstance(outcome, BaseException):
                    raise outcome
            verdict = True
        finally:
            for other in others:
                other.cancel()
            if not verdict:  # the caller left mid-stream: neither the server's success nor its failure
                self.circuit.abandoned()
        if replies:
            self.circuit.succeeded()
            answer = await self.inner.check(CheckRequest(facts, tuple(replies)))
            ANSWER_SECONDS.labels("served").observe(time.monotonic() - started)
            yield answer
            return
        if all(failure.kind == Failure.SATURATED for failure in failures):
            self.circuit.abandoned()  # busy is not down
        else:
            self.circuit.failed()
        log.warning("the answer server at %s did not answer: %s", self.server.shown, failures[0])
        yield await self._fallback(request, facts)

    async def _fallback(self, request: AnswerRequest, facts: PhotoFacts) -> Answer:
        with ANSWER_SECONDS.labels("local").time():
            if self.server.fallback == AnswerFallback.LOCAL:
                return await self.inner.answer(request)
            return unavailable(facts)

    async def _messages(self, question: OpenQuestion, photo: bytes | None) -> list[dict[str, Any]]:
        """The question's chat messages; with a model that sees images, the photo goes with the question."""
        messages: list[dict[str, Any]] = [dict(message) for message in question.messages]
        if not self.server.sees_images or photo is None:
            return messages
        try:
            url = await asyncio.to_thread(photo_url, photo, self.limits)
        except BadImage as error:  # described already, so this is rare: the words still go
            log.info("the photo was not sent to the answer server: %s", error.detail)
            return messages
        text = messages[-1]["content"]
        messages[-1] = {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
        }
        return messages

    async def _streamed(
        self, messages: list[dict[str, Any]], max_tokens: int, deadline: float
    ) -> AsyncGenerator[str, None]:
        """One reply's text so far, each time words arrive; raises ServerFailed."""
        async with self._slot(deadline):
            stream: Any = await self._call(
                lambda messages: self._completion(
                    messages, max_tokens, stream=True, stream_options={"include_usage": True}
                ),
                messages,
                deadline,
            )
            text = ""
            try:
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(stream)
                    except StopAsyncIteration:
                        return
                    except Exception as error:
                        raise self._failed(error) from error
                    self._count(chunk.usage)
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta:
                        text += delta
                        yield text  # not inside the deadline's block: the caller's time between words is its own
            finally:
                await stream.close()

    async def _written(self, messages: list[dict[str, Any]], max_tokens: int, deadline: float) -> str:
        """One more reply, whole (another candidate for CLIP to choose from); raises ServerFailed."""
        async with self._slot(deadline):
            reply: Any = await self._call(
                lambda messages: self._completion(messages, max_tokens),
                messages,
                deadline,
            )
        self._count(reply.usage)
        return str(reply.choices[0].message.content or "") if reply.choices else ""

    def _completion(self, messages: list[dict[str, Any]], max_tokens: int, **streaming: Any) -> Awaitable[Any]:
        """The chat completion request, one sampling for every reply whether streamed or whole."""
        return self._client.chat.completions.create(
            model=self.server.model,
            messages=cast(Any, messages),
            max_tokens=max_tokens,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            frequency_penalty=FREQUENCY_PENALTY,
            **streaming,
        )

    async def _call(
        self, ask: Callable[[list[dict[str, Any]]], Awaitable[T]], messages: list[dict[str, Any]], deadline: float
    ) -> T:
        """`ask(messages)`, retried; a server that refuses them (no tokenizer here can fit a prompt to its model's
        window) is asked again with the earlier turns left out: the facts and the question always go."""
        try:
            return await self._retried(lambda: ask(messages), deadline)
        except ServerFailed as error:
            if error.kind != Failure.REFUSED or error.status not in TOO_LONG or len(messages) <= 2:
                raise
            log.info("the answer server refused the prompt (%s): asked again without the earlier turns", error)
            return await self._retried(lambda: ask([messages[0], messages[-1]]), deadline)

    async def _retried(self, start: Callable[[], Awaitable[T]], deadline: float) -> T:
        """`start()` within the deadline, retried with back-off while the server is rate-limiting, failing or
        unreachable."""
        loop = asyncio.get_running_loop()
        async for attempt in retrying(
            lambda error: isinstance(error, ServerFailed) and error.kind in RETRIED,
            attempts=self.server.attempts,
            first_delay=0.25,
            max_delay=2.0,
            deadline=max(0.0, deadline - loop.time()),
            what=f"the answer server at {self.server.shown}",
        ):
            with attempt:
                try:
                    async with asyncio.timeout_at(deadline):
                        return await start()
                except Exception as error:
                    raise self._failed(error) from error
        raise AssertionError("retrying ends with a result or the last error")

    @contextlib.asynccontextmanager
    async def _slot(self, deadline: float) -> AsyncIterator[None]:
        """One of the `concurrency` calls, waited for until the deadline at most."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            ANSWER_ERRORS.labels("served", Failure.SATURATED).inc()
            raise ServerFailed(Failure.SATURATED, f"all {self.server.concurrency} calls busy") from None
        try:
            yield
        finally:
            self._slots.release()

    def _failed(self, error: BaseException) -> ServerFailed:
        """The failure `error` is, counted; anything that is not the server's failure is raised as it is."""
        import openai

        if isinstance(error, ServerFailed):
            return error
        if isinstance(error, TimeoutError | openai.APITimeoutError):
            kind = Failure.TIMEOUT
        elif isinstance(error, openai.RateLimitError):
            kind = Failure.RATE_LIMITED
        elif isinstance(error, openai.APIConnectionError):
            kind = Failure.CONNECTION
        elif isinstance(error, openai.APIStatusError):
            kind = Failure.SERVER_ERROR if error.status_code >= 500 else Failure.REFUSED
        elif isinstance(error, openai.OpenAIError):  # an error event in the stream, a reply that is no JSON
            kind = Failure.SERVER_ERROR
        else:
            raise error
        ANSWER_ERRORS.labels("served", kind).inc()
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if self._secret:
            detail = detail.replace(self._secret, "<key>")
        return ServerFailed(kind, detail[:300], error.status_code if isinstance(error, openai.APIStatusError) else None)

    @staticmethod
    def _count(usage: Any) -> None:
        if usage is not None:
            ANSWER_TOKENS.labels("served", "prompt").inc(usage.prompt_tokens or 0)
            ANSWER_TOKENS.labels("served", "completion").inc(usage.completion_tokens or 0)
