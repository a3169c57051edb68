"""The core's `Chat` port on Telegram: fetch the photo, show "typing…", a draft of the reply, reply, edit a channel
post's caption."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from telegram import Bot, Message
from telegram.constants import ChatAction
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.request import HTTPXRequest

from clipchat.errors import BadImage, Unavailable
from clipchat.i18n import N_
from clipchat.metrics import STAGE_SECONDS

from ..core.incoming import PhotoFile
from ..core.text import Said
from .sending import chat_action, reply, send_draft, spoilers, with_retries
from .telegram_io import topic_of

log = logging.getLogger(__name__)

SLOW_DOWNLOAD = N_("Telegram took too long to give me that file. Could you send it again in a moment?")


class TelegramChat:
    """The `Chat` (and `Channel`) the core answers through, for one incoming message."""

    def __init__(self, message: Message, retries: int, max_bytes: int, download_timeout: float = 60.0) -> None:
        self.message = message
        self.retries = retries
        self.max_bytes = max_bytes
        self.download_timeout = download_timeout

    async def fetch(self, photo: PhotoFile) -> bytes:
        # PTB's timeouts bound each read; this bounds the whole file, which a slow server could drip-feed
        deadline = asyncio.timeout(self.download_timeout)
        try:
            with STAGE_SECONDS.labels("download").time():
                async with deadline:
                    return await download(self.message.get_bot(), photo, self.max_bytes, self.download_timeout)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise Unavailable(
                SLOW_DOWNLOAD, detail=f"download of {photo.file_unique_id} took over {self.download_timeout:g} s"
            ) from None

    def working(self, action: str = ChatAction.TYPING) -> contextlib.AbstractAsyncContextManager[None]:
        return chat_action(self.message.get_bot(), self.message.chat_id, action, topic_of(self.message))

    async def reply(self, text: str | Said) -> int | None:
        sent = await reply(self.message, text, retries=self.retries)
        return sent.message_id if sent else None

    async def draft(self, text: Said) -> bool:
        """The question's message id names the draft: one per question, non-zero, and a later one replaces it."""
        return await send_draft(self.message.get_bot(), self.message.chat_id, self.message.message_id, text)

    async def edit_caption(self, caption: Said) -> None:
        """The author's entities stay where they were (the caption starts with their words, untouched), and
        what `caption` hides goes behind spoilers."""
        post = self.message
        entities = sorted([*post.caption_entities, *spoilers(caption)], key=lambda entity: entity.offset)
        await with_retries(
            lambda: post.get_bot().edit_message_caption(
                chat_id=post.chat_id,
                message_id=post.message_id,
                caption=caption.text,
                caption_entities=entities or None,
            ),
            self.retries,
        )


async def download(bot: Bot, photo: PhotoFile, max_bytes: int, timeout: float = 60.0) -> bytes:
    """The photo's bytes; too-large files are refused before any download. A slow answer is waited
    for up to `timeout` (PTB's 5 s read timeout failed whole albums on a busy CPU) and a network
    blip retried; what still fails is Unavailable, which the user can act on."""
    size = photo.size
    limit_mb = max_bytes // (1024 * 1024)
    too_big = BadImage(
        "too_large",
        N_(
            "That file is too big for me: please send an image under {limit_mb} MB "
            "(as a photo, Telegram compresses it for you)."
        ),
        params={"limit_mb": limit_mb},
        detail=f"{size} bytes > {max_bytes}",
    )
    if size is not None and size > max_bytes:
        raise too_big
    try:
        telegram_file = await with_retries(
            lambda: bot.get_file(photo.file_id, read_timeout=timeout), retries=2, what="getFile", idempotent=True
        )
    except BadRequest as error:
        if "too big" in str(error).lower():  # the public Bot API serves at most 20 MB
            raise too_big from error
        raise Unavailable(detail=f"getFile refused: {error}") from error
    except NetworkError as error:
        raise Unavailable(detail=f"getFile failed: {error!r}") from error
    try:
        # as `bytes`, which intake's BytesIO shares (a bytearray it copies); PTB's bytearray is dropped at once
        data = bytes(
            await with_retries(
                lambda: telegram_file.download_as_bytearray(read_timeout=timeout),
                retries=2,
                what="downloading a photo",
                idempotent=True,
            )
        )
    except InvalidToken as error:
        # PTB reads any 401 or 404 from the file server as a bad token; the token just worked for
        # getFile, so the file is gone (an expired file_path, a deleted file)
        raise Unavailable(detail=f"file download refused: {error}") from error
    except NetworkError as error:
        raise Unavailable(detail=f"file download failed: {error!r}") from error
    if len(data) > max_bytes:
        raise too_big
    return data


class QuietRequest(HTTPXRequest):
    """PTB's HTTP client, without its ERROR and traceback for an answer that is not JSON.

    The file server answers an expired or deleted file with 404 and a plain-text body; PTB logged that body as
    "Can not load invalid JSON data" with a traceback, then raised the 404 anyway, which `download` handles
    (the sender is told, the log gets one INFO line). The error raised is PTB's own, with the body in its
    message, so nothing is lost: the body is logged here at DEBUG only."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict:
        try:
            return json.loads(payload.decode("utf-8", "replace"))
        except ValueError as error:
            log.debug("not JSON: %r", payload[:200])
            raise TelegramError("Invalid server response") from error
