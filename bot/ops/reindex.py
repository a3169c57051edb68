"""`clipchat db reindex`: re-embed the photos an earlier CLIP saw, with the current one.

/search compares only vectors of the CLIP it runs, so after the operator changes CLIP
(CLIPCHAT_CLIP_MODEL, CLIPCHAT_MODELS) older photos cannot be found until they are
embedded again. The database keeps no pixels, so each photo is fetched again from
Telegram by its file id, decoded as the bot decodes photos, and embedded; caption
and tags stay as first seen (they describe the photo, whichever CLIP looks).

It is paced (--rate downloads a second, and PTB's flood control), resumable (a photo
once re-embedded is no longer waiting; one Telegram no longer has is marked and never
asked for again) and bounded (every download and every model call has a deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from aiolimiter import AsyncLimiter  # PTB's rate-limiter extra installs it
from sqlalchemy.exc import SQLAlchemyError
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, ExtBot
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from clipchat.errors import BadImage, ClipchatError, OperatorError, StorageDown
from storage import StorageSettings, connect_database, make_sessionmaker, upgrade, write_with_retry
from storage.database import unavailable
from storage.reindex import (
    BEAT_S,
    Waiting,
    beat,
    end_run,
    mark_gone,
    next_waiting,
    photos_waiting,
    replace_embedding,
    start_run,
)
from vision import ImageLimits, load_image
from vision.catalog.devices import resolve_device, resolve_dtype
from vision.catalog.settings import VisionSettings
from vision.models.encoder import ClipEncoder, clip_identity, load_clip

from ..adapter.redaction import redact_token_in_logs
from ..adapter.sending import with_retries
from ..core.settings import BotSettings

log = logging.getLogger(__name__)
IN_FLIGHT = 8  # photos being fetched or embedded at once; --rate paces how fast new ones start
PAGE = 200  # waiting photos read from the database at a time
# File ids belong to the bot that received them: with another bot's token every photo looks gone. Until one
# photo comes back, gone ones are only noted, and this many in a row stop the run with nothing marked.
GONE_BEFORE_ANY = 5
# getFile's refusals (BadRequest) of a file that is still there: over the public Bot API's 20 MB, or not served
# for now (a later run asks again); any other refusal ("wrong file identifier", "invalid file_id") is a gone file
THERE_BUT_NOT_SERVED = ("too big", "temporarily unavailable")


class Gone(Exception):
    """Telegram no longer has this photo's file."""


class WrongBot(OperatorError):
    """Every photo so far was unknown to Telegram: the token is likely another bot's."""


@dataclass
class Tally:
    reembedded: int = 0
    gone: int = 0
    failed: int = 0
    too_big: int = 0  # over the Bot API's 20 MB or CLIPCHAT_MAX_IMAGE_BYTES: no run can fetch them, no failure
    unconfirmed: list = field(default_factory=list)  # gone photos not yet marked: no photo has come back yet

    def summary(self, identity: str) -> str:
        line = (
            f"Re-indexed for CLIP {identity}: {self.reembedded} re-embedded, {self.gone} gone from Telegram, "
            f"{self.failed} failed" + (f", {self.too_big} too big to fetch." if self.too_big else ".")
        )
        return line + (" Run `clipchat db reindex` again to retry the failed ones." if self.failed else "")


def add_command(db_actions: argparse._SubParsersAction) -> None:
    """Register `db reindex` beside storage's own `db` actions (storage knows neither Telegram nor models)."""
    command = db_actions.add_parser(
        "reindex",
        help="re-embed photos stored under another CLIP with the current "
        "one (after changing CLIPCHAT_CLIP_MODEL or the model set)",
    )
    command.add_argument("--chat", type=int, help="only this chat id (default: every chat)")
    command.add_argument("--rate", type=_positive, default=5.0, help="photo downloads per second (default 5)")
    command.add_argument("--url", help="database URL (default: DATABASE_URL, else SQLite in the user data dir)")
    command.set_defaults(handler=run_reindex)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1000:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"give downloads a second as a number above 0 and at most 1000, not {text}")
    return value


def run_reindex(args: argparse.Namespace, vision_settings: VisionSettings) -> int:
    from vision.catalog.hub import ensure_available

    settings = BotSettings()
    redact_token_in_logs(settings.bot_token())  # checked first: a missing token says how to get one
    # as every model command: no models (offline, not prefetched) fails now, in one line, before the database
    ensure_available(vision_settings.model_set(), vision_settings.hub_cache_dir)
    storage = StorageSettings()
    url = args.url or storage.url()
    try:
        tally = asyncio.run(_main(settings, vision_settings, url, storage.database_timeout_s, args.chat, args.rate))
    except KeyboardInterrupt:  # what was re-embedded is kept; the next run starts with what is left
        print("\nStopped: run `clipchat db reindex` again to carry on where it stopped.", file=sys.stderr)
        return 130
    return 1 if tally is not None and tally.failed else 0


async def _main(
    settings: BotSettings,
    vision_settings: VisionSettings,
    url: str,
    db_timeout: float,
    chat_id: int | None,
    rate: float,
) -> Tally | None:
    model_set = vision_settings.model_set()
    identity = clip_identity(model_set.clip, model_set.clip_pretrained)  # cheap: no weights loaded
    database = connect_database(url, timeout=db_timeout)
    try:
        await upgrade(database)
        sessions = make_sessionmaker(database)
        async with sessions() as session:
            waiting = await photos_waiting(session, identity, chat_id)
        if not waiting:
            print(f"Nothing to re-index: every stored photo{_where(chat_id)} is embedded by CLIP {identity}.")
            return None
        embedder = await Embedder.load(vision_settings, settings.model_timeout_s)
        try:
            async with _bot(settings) as bot:
                tally = await reindex(
                    bot,
                    sessions,
                    embedder,
                    chat_id=chat_id,
                    rate=rate,
                    total=waiting,
                    download_timeout=settings.download_timeout_s,
                )
        finally:
            embedder.close()
    except (SQLAlchemyError, StorageDown) as error:
        if not unavailable(error):
            raise
        raise OperatorError(
            f"The database stopped answering ({type(error).__name__}); run "
            "`clipchat db reindex` again to carry on where it stopped."
        ) from error
    finally:
        await database.dispose()
    print(tally.summary(embedder.identity))
    return tally


def _where(chat_id: int | None) -> str:
    return f" of chat {chat_id}" if chat_id is not None else ""


class _bot:
    """The Bot API client as the bot configures it, with PTB's flood control (it waits out a 429)."""

    def __init__(self, settings: BotSettings) -> None:
        self.bot = ExtBot(
            settings.bot_token(),
            base_url=settings.base_url,
            base_file_url=settings.base_file_url,
            local_mode=settings.local_mode,
            rate_limiter=AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=2),
        )
        self.base_url = settings.base_url

    async def __aenter__(self) -> ExtBot:
        try:
            await self.bot.initialize()  # getMe: a refused token or an unreachable server fails here, once
        except InvalidToken as error:
            raise OperatorError(
                "Telegram refused the bot token in TELEGRAM_BOT_TOKEN: check it with @BotFather (/mybots > API Token)."
            ) from error
        except NetworkError as error:
            raise OperatorError(
                f"Could not reach the Bot API at {self.base_url} ({error}); check CLIPCHAT_BASE_URL and the network."
            ) from error
        return self.bot

    async def __aexit__(self, *exc) -> None:
        await self.bot.shutdown()


class Embedder:
    """CLIP alone (no captioner: the captions stay), on its own thread, behind the bot's image checks."""

    def __init__(self, encoder: ClipEncoder, limits: ImageLimits, thread: ThreadPoolExecutor, timeout: float):
        self.encoder, self.limits, self.thread, self.timeout = encoder, limits, thread, timeout
        self.identity = encoder.identity

    @classmethod
    async def load(cls, settings: VisionSettings, timeout: float) -> Embedder:
        model_set = settings.model_set()
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)  # the bot's rule: /search compares their vectors
        # One thread loads and runs CLIP: PyTorch gives each thread its own OpenMP team (see services.py)
        thread = ThreadPoolExecutor(1, thread_name_prefix="reindex-clip")
        encoder = await asyncio.get_running_loop().run_in_executor(
            thread,
            lambda: load_clip(
                model_set.clip,
                model_set.clip_pretrained,
                device,
                dtype,
                settings.hub_cache_dir,
                allow_random_weights=settings.allow_random_weights,
            ),
        )
        return cls(encoder, settings.image_limits(), thread, timeout)

    async def embed(self, data: bytes) -> np.ndarray:
        """The photo's (D,) normalised vector; BadImage for a file the bot would refuse too."""
        async with asyncio.timeout(self.timeout):
            return await asyncio.get_running_loop().run_in_executor(self.thread, self._embed, data)

    @torch.inference_mode()
    def _embed(self, data: bytes) -> np.ndarray:
        prepared = self.encoder.prepare(load_image(data, self.limits))
        return self.encoder.embed_pixels(self.encoder.pixels_from([prepared]))[0].float().cpu().numpy()

    def close(self) -> None:
        self.thread.shutdown(wait=False, cancel_futures=True)


async def reindex(
    bot: ExtBot, sessions, embedder: Embedder, *, chat_id: int | None, rate: float, total: int, download_timeout: float
) -> Tally:
    """Re-embed every waiting photo (of one chat, or all) once, `rate` downloads a second at most."""
    tally = Tally()
    run_id = await write_with_retry(sessions, lambda session: start_run(session, embedder.identity, chat_id))
    heart = asyncio.create_task(_heartbeat(sessions, run_id))
    limiter = AsyncLimiter(1, 1 / rate)  # evenly spaced starts, no burst: gentle on Telegram
    slots = asyncio.Semaphore(IN_FLIGHT)
    try:
        with logging_redirect_tqdm(), tqdm(total=total, unit="photo", desc="re-indexing") as bar:
            redact_token_in_logs(bot.token)  # the redirected log handler gets the filter too

            async def one(photo: Waiting) -> None:
                try:
                    await _reembed(bot, sessions, embedder, photo, download_timeout, tally)
                finally:
                    slots.release()
                    bar.update(1)
                    bar.set_postfix(gone=tally.gone, failed=tally.failed, refresh=False)

            after = 0
            while True:
                async with sessions() as session:
                    page = await next_waiting(session, embedder.identity, chat_id, after, PAGE)
                if not page:
                    break
                after = page[-1].id
                try:
                    async with asyncio.TaskGroup() as group:
                        for photo in page:
                            await slots.acquire()
                            await limiter.acquire()  # paced before its deadline starts: waiting here is not slow
                            group.create_task(one(photo))
                except ExceptionGroup as errors:  # a photo's own trouble is tallied; this is the database
                    raise errors.exceptions[0] from errors
            await _confirm_gone(sessions, tally)  # too few to doubt the token
    finally:
        heart.cancel()
        try:
            await write_with_retry(sessions, lambda session: end_run(session, run_id))
        except (
            SQLAlchemyError,
            StorageDown,
        ) as error:  # its heartbeat stops, so bots stop announcing it within a minute
            log.warning("could not remove the re-index run's row (%s); it expires on its own", error)
    return tally


async def _reembed(bot: ExtBot, sessions, embedder: Embedder, photo: Waiting, timeout: float, tally: Tally) -> None:
    try:
        vector = await embedder.embed(await _fetch(bot, photo.file_id, timeout, embedder.limits.max_bytes))
    except Gone as error:
        log.info("photo %d (chat %d) is gone from Telegram: %s", photo.id, photo.chat_id, error)
        if not tally.reembedded:
            tally.unconfirmed.append(photo)
            if len(tally.unconfirmed) >= GONE_BEFORE_ANY:
                raise WrongBot(
                    detail=f"Telegram knew none of the first {len(tally.unconfirmed)} photos: is "
                    "TELEGRAM_BOT_TOKEN the token of the bot that received them? Nothing was "
                    "marked gone."
                ) from None
            return
        await write_with_retry(sessions, partial(mark_gone, photo=photo))
        tally.gone += 1
        return
    except (TelegramError, TimeoutError, OSError, ClipchatError) as error:
        if _too_big(error):  # no later run can fetch it either: said, not a failure to retry
            log.info("photo %d (chat %d) is too big to fetch: %s", photo.id, photo.chat_id, error)
            tally.too_big += 1
            return
        reason = str(getattr(error, "detail", None) or error) or f"no answer within {timeout:g} s"
        log.warning(
            "photo %d (chat %d) not re-embedded, a later run retries it: %s: %s",
            photo.id,
            photo.chat_id,
            type(error).__name__,
            reason,
        )
        tally.failed += 1
        return
    if await write_with_retry(sessions, lambda session: replace_embedding(session, photo, vector, embedder.identity)):
        tally.reembedded += 1  # else deleted meanwhile (/forget, retention) or done by another run
    await _confirm_gone(sessions, tally)


def _too_big(error: BaseException) -> bool:
    """getFile's "file is too big" (over the public Bot API's 20 MB), or a size over the bot's own limit."""
    if isinstance(error, BadImage):
        return error.reason == "too_large"
    return isinstance(error, BadRequest) and "too big" in str(error).lower()


async def _confirm_gone(sessions, tally: Tally) -> None:
    """Mark the gone photos noted before any came back: the token is right, they really are gone."""
    while tally.unconfirmed:
        photo = tally.unconfirmed.pop()
        await write_with_retry(sessions, partial(mark_gone, photo=photo))
        tally.gone += 1


async def _fetch(bot: ExtBot, file_id: str, timeout: float, max_bytes: int) -> bytes:
    """The file's bytes, all of it within `timeout` seconds; Gone when Telegram no longer has it."""
    async with asyncio.timeout(timeout):
        try:
            telegram_file = await with_retries(
                lambda: bot.get_file(file_id, read_timeout=timeout), retries=2, what="getFile", idempotent=True
            )
        except BadRequest as error:
            if any(there in str(error).lower() for there in THERE_BUT_NOT_SERVED):  # not gone: no marking it
                raise
            raise Gone(str(error)) from error  # "invalid file_id", "wrong file identifier", ...
        if telegram_file.file_size and telegram_file.file_size > max_bytes:  # refused before downloading it
            raise BadImage(
                "too_large",
                "too large",
                detail=f"{telegram_file.file_size} bytes > {max_bytes} (CLIPCHAT_MAX_IMAGE_BYTES)",
            )
        try:
            return bytes(
                await with_retries(
                    lambda: telegram_file.download_as_bytearray(read_timeout=timeout),
                    retries=2,
                    what="downloading a photo",
                    idempotent=True,
                )
            )
        except InvalidToken as error:
            # PTB reads the file server's 401 or 404 as a bad token; the token just worked for getFile
            raise Gone(f"the file server refused it: {error}") from error


async def _heartbeat(sessions, run_id: int) -> None:
    """Tell the bots this run is alive; they stop announcing it once the beats stop (a crash)."""
    while True:
        await asyncio.sleep(BEAT_S)
        try:
            await write_with_retry(sessions, lambda session: beat(session, run_id))
        except (SQLAlchemyError, StorageDown) as error:
            log.warning("re-index heartbeat not written (%s); trying again in %g s", error, BEAT_S)
