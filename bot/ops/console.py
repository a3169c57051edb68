"""`clipchat chat`: the bot's dialogue in a terminal, to try the models without Telegram.

The same core functions as the Telegram adapter, answering through a `Chat` that prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import tempfile
from pathlib import Path

from clipchat.errors import ClipchatError, Unavailable
from clipchat.kinds import ChatKind
from storage import StorageSettings
from vision.catalog.settings import VisionSettings

from ..adapter.application import open_models
from ..core import photos, records, talk
from ..core.incoming import PhotoFile, PhotoMessage, Where
from ..core.services import Services, open_services
from ..core.settings import BotSettings
from ..core.text import Said

HERE = Where(chat_id=1, chat_kind=ChatKind.PRIVATE, user_id=1)
HELP = (
    "/photo PATH   look at a photo\n/tags [a, b]  tags, or how well each label fits\n/mood         the photo's mood\n"
    "/search TEXT  find an earlier photo\n/reset        forget this conversation\n/quit         leave\n"
    "anything else is a question about the latest photo"
)


class Terminal:
    """The core's `Chat` port on standard output; photos are files on this machine."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.sent = 0

    async def fetch(self, photo: PhotoFile) -> bytes:
        """The file read for `/photo`, once; a later look (an answer model that sees images, asking about a photo
        no longer kept in memory) reads it from disk again, as the bot downloads it again from Telegram."""
        data = self.files.pop(photo.file_id, None)
        if data is not None:
            return data
        try:
            return Path(photo.file_id).read_bytes()
        except OSError as error:
            raise Unavailable(detail=f"{photo.file_id}: {error.strerror}") from error

    def working(self, action: str = "typing") -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def reply(self, text: str | Said) -> int | None:
        print(text.text if isinstance(text, Said) else text)  # the terminal is its user's own: nothing to hide
        self.sent += 1
        return None

    async def draft(self, text: Said) -> bool:
        """Nothing: a terminal cannot take back what it printed, and the answer follows in a moment."""
        return False


async def console(vision_settings: VisionSettings, database: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="clipchat-chat-") as scratch:
        storage = StorageSettings(database_url=database or f"sqlite+aiosqlite:///{Path(scratch) / 'chat.db'}")
        print("Loading the models…", file=sys.stderr)
        settings = BotSettings(max_wait_ms=0)
        services = await open_services(settings, storage, lambda: open_models(settings, vision_settings))
        print(HELP, file=sys.stderr)
        try:
            await _loop(services, Terminal())
        finally:
            await services.close()
    return 0


async def _loop(services: Services, terminal: Terminal) -> None:
    photo_number = 0
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        command, _, rest = line.partition(" ")
        try:
            if command in ("/quit", "/exit"):
                return
            if command == "/photo":
                photo_number += 1
                await _photo(services, terminal, Path(rest.strip()).expanduser(), photo_number)
            elif command == "/tags":
                print((await talk.tags(services, HERE, rest, None)).text)
            elif command == "/mood":
                print((await talk.mood(services, HERE, None)).text)
            elif command == "/search":
                answer = await talk.search(services, HERE, rest)
                print(
                    "\n".join(
                        [f"{hit.file_id}  {hit.caption}" for hit in answer.found]
                        + ([answer.note] if answer.note else [])
                    )
                )
            elif command == "/reset":
                await records.reset(services, HERE)
                print("Conversation cleared.")
            elif command.startswith("/"):
                print(HELP)
            else:
                await talk.on_question(services, HERE, line, None, terminal)
        except ClipchatError as error:
            print(error.user_message)
        sys.stdout.flush()


async def _photo(services: Services, terminal: Terminal, path: Path, number: int) -> None:
    try:
        data = path.read_bytes()
    except OSError as error:
        print(f"Can't read {path}: {error.strerror}.")
        return
    terminal.files[str(path)] = data
    photo = PhotoFile(number, str(path), hashlib.sha1(data).hexdigest()[:32], size=len(data))
    await photos.on_photo(services, PhotoMessage(HERE, photo, str(path), addressed=True), terminal)
