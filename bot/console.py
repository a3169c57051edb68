"""`clipchat chat`: the bot's dialogue in a terminal, to try the models without Telegram."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from pathlib import Path

from storage import StorageSettings
from vision.errors import ClipchatError
from vision.settings import VisionSettings

from . import actions, text
from .services import open_services
from .settings import BotSettings

CHAT = actions.Where(chat_id=1, chat_kind="private", user_id=1)
HELP = ("/photo PATH   look at a photo\n/tags [a, b]  tags, or how well each label fits\n/mood         the photo's mood\n"
        "/search TEXT  find an earlier photo\n/reset        forget this conversation\n/quit         leave\n"
        "anything else is a question about the latest photo")


async def console(vision_settings: VisionSettings, database: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="clipchat-chat-") as scratch:
        storage = StorageSettings(database_url=database or f"sqlite+aiosqlite:///{Path(scratch) / 'chat.db'}")
        print("Loading the models…", file=sys.stderr)
        services = await open_services(BotSettings(max_wait_ms=0), vision_settings, storage)
        print(HELP, file=sys.stderr)
        try:
            await _loop(services)
        finally:
            await services.close()
    return 0


async def _loop(services) -> None:
    photos = 0
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
                photos += 1
                print(await _photo(services, Path(rest.strip()).expanduser(), photos))
            elif command == "/tags":
                image, scored = await actions.tags_for(services, CHAT, rest, None)
                print(", ".join(f"{t['label']} {t['score']:.0%}" for t in scored) if image else "No photo yet.")
            elif command == "/mood":
                _, answer = await actions.mood(services, CHAT, None)
                print(answer.text if answer else "No photo yet.")
            elif command == "/search":
                hits = await actions.search(services, CHAT.chat_id, rest)
                print("\n".join(f"{r.file_id}  {r.caption}  ({s:.2f})" for r, s in hits) or "No photos yet.")
            elif command == "/reset":
                await actions.reset(services, CHAT)
                print("Conversation cleared.")
            elif command.startswith("/"):
                print(HELP)
            else:
                answer, image_id = await actions.ask(services, CHAT, line)
                print(answer.text)
                await actions.remember_exchange(services, CHAT, line, answer.text, image_id, None)
        except ClipchatError as error:
            print(error.user_message)
        sys.stdout.flush()


async def _photo(services, path: Path, number: int) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"Can't read {path}: {error.strerror}."
    seen = await services.inference.describe(data)
    reply = text.describe(seen)
    photo = actions.PhotoFile(number, str(path), hashlib.sha1(data).hexdigest()[:32])
    await actions.remember_photos(services, CHAT, [(photo, seen)], str(path), reply, None)
    return reply
