"""The core's `Chat` port on Telegram: fetch the photo, show "typing…", reply, edit a channel post's caption."""

from __future__ import annotations

import contextlib

from telegram import Bot, Message
from telegram.constants import ChatAction
from telegram.error import BadRequest, InvalidToken, NetworkError

from clipchat.errors import BadImage, Unavailable

from ..core.incoming import PhotoFile
from .sending import chat_action, reply, with_retries


class TelegramChat:
    """The `Chat` (and `Channel`) the core answers through, for one incoming message."""

    def __init__(self, message: Message, retries: int, max_bytes: int) -> None:
        self.message = message
        self.retries = retries
        self.max_bytes = max_bytes

    async def fetch(self, photo: PhotoFile) -> bytes:
        return await download(self.message.get_bot(), self.message, photo, self.max_bytes)

    def working(self, action: str = ChatAction.TYPING) -> contextlib.AbstractAsyncContextManager[None]:
        return chat_action(self.message.get_bot(), self.message.chat_id, action)

    async def reply(self, text: str) -> int | None:
        sent = await reply(self.message, text, retries=self.retries)
        return sent.message_id if sent else None

    async def edit_caption(self, caption: str) -> None:
        post = self.message
        await with_retries(lambda: post.get_bot().edit_message_caption(
            chat_id=post.chat_id, message_id=post.message_id, caption=caption,
            caption_entities=post.caption_entities or None), self.retries)


def file_size(message: Message) -> int | None:
    if message.photo:
        return message.photo[-1].file_size
    return message.document.file_size if message.document else None


async def download(bot: Bot, message: Message, photo: PhotoFile, max_bytes: int) -> bytes:
    """The photo's bytes; too-large files are refused before any download."""
    size = file_size(message)
    limit_mb = max_bytes // (1024 * 1024)
    too_big = BadImage("too_large", f"That file is too big for me: please send an image under {limit_mb} MB "
                                    f"(as a photo, Telegram compresses it for you).",
                       detail=f"{size} bytes > {max_bytes}")
    if size is not None and size > max_bytes:
        raise too_big
    try:
        telegram_file = await bot.get_file(photo.file_id)
    except BadRequest as error:
        if "too big" in str(error).lower():  # the public Bot API serves at most 20 MB
            raise too_big from error
        raise Unavailable(detail=f"getFile refused: {error}") from error
    try:
        data = bytes(await telegram_file.download_as_bytearray())
    except InvalidToken as error:
        # PTB reads any 401 or 404 from the file server as a bad token; the token just worked for
        # getFile, so the file is gone (an expired file_path, a deleted file)
        raise Unavailable(detail=f"file download refused: {error}") from error
    except NetworkError as error:
        raise Unavailable(detail=f"file download failed: {error!r}") from error
    if len(data) > max_bytes:
        raise too_big
    return data
