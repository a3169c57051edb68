"""Per-user order and a bounded queue per user, as a python-telegram-bot update processor.

Updates of different users run concurrently (so one slow photo never stalls
other chats); one user's updates run one after another, in the order Telegram
sent them, and with `shared` set (storage.SharedOrder), across every bot process
on the same database. A user with `per_user` updates already waiting is asked to slow down
(once per chat they flood, private or group, until their queue drains) and the extra update is
dropped, so a flood cannot starve everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import BaseUpdateProcessor

from clipchat.i18n import N_, choose, translator
from clipchat.kinds import ChatKind
from clipchat.metrics import UPDATE_QUEUE, UPDATES_DROPPED

from .telegram_io import sender_id

log = logging.getLogger(__name__)
SLOW_DOWN = N_("You're sending faster than I can look. I'll answer what I have so far; send the rest in a moment.")


def sender_key(update: Update) -> int | None:
    """Whose queue an update joins: the person, the group or channel they write as (never a shared
    account like GroupAnonymousBot, whose queue would be everyone's), or the chat for channel posts.

    A button press joins its presser's queue, whatever its data says: the client writes the data, and a
    press naming someone else could fill their queue (`settled` orders a confirmed /forget behind them)."""
    message = update.effective_message
    if message is not None and update.callback_query is None:
        key = sender_id(message)
        if key is not None:
            return key
    elif update.effective_user is not None:
        return update.effective_user.id
    return update.effective_chat.id if update.effective_chat is not None else None


class PerUserOrder(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 512, per_user: int = 16, shared=None) -> None:
        super().__init__(max_concurrent_updates)
        self.per_user = per_user
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: Counter[int] = Counter()
        self._warned: dict[int, set[int]] = {}  # sender -> the chats it was asked to slow down in, while full
        self.dropped = 0
        self.shared = shared  # storage.SharedOrder when several processes serve this bot

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if not isinstance(update, Update) or (key := sender_key(update)) is None:  # no sender to keep in order
            await coroutine
            return
        if self._waiting[key] >= self.per_user:
            await self._drop(update, key, coroutine)
            return
        self._waiting[key] += 1
        if self._waiting[key] > 1:  # behind one of its sender's updates: queued
            UPDATE_QUEUE.inc()
        lock = self._locks.setdefault(key, asyncio.Lock())
        shared, update_id = self.shared, update.update_id
        # Recorded in the background: no await may come before the lock, whose FIFO queue is this
        # process's arrival order (an update that overtook an older one there would hold the
        # lock while waiting for it, forever).
        recorded = asyncio.ensure_future(shared.arrived(key, update_id)) if shared is not None else None
        try:
            async with lock:
                if recorded is None:
                    await coroutine
                    return
                if await recorded > self.per_user:
                    await shared.done(key, update_id)  # over the limit across all processes: as if full here
                    await self._drop(update, key, coroutine)
                    return
                try:
                    await shared.wait_turn(key, update_id)
                    await coroutine
                finally:
                    await shared.done(key, update_id)
        finally:
            self._waiting[key] -= 1
            if self._waiting[key]:  # the next of its sender's updates leaves the queue
                UPDATE_QUEUE.dec()
            else:
                del self._waiting[key]
                self._locks.pop(key, None)
                self._warned.pop(key, None)

    async def settled(self, key: int, update_id: int) -> None:
        """Return once `key`'s updates that came before `update_id` are done, here and (with `shared`) in every
        process: an admin's /forget of a group identity lands after another admin's work as it in flight.
        Only for an update outside `key`'s queue (inside, its order is kept already; waiting would never end)."""
        lock = self._locks.get(key)
        if lock is not None:
            async with lock:  # behind those already waiting in this process, in their order
                pass
        if self.shared is not None:
            await self.shared.wait_turn(key, update_id)

    async def _drop(self, update: Update, key: int, coroutine) -> None:
        coroutine.close()  # never started: dropping it runs none of its handlers
        self.dropped += 1
        UPDATES_DROPPED.inc()
        await self._slow_down(update, key)

    async def _slow_down(self, update: Update, key: int) -> None:
        log.info("queue of %s is full (%d waiting); dropped an update", key, self.per_user)
        message = update.effective_message
        warned = self._warned.setdefault(key, set())
        if message is None or message.chat.type == ChatKind.CHANNEL or message.chat.id in warned:
            return  # a channel's posts have no one to tell
        warned.add(message.chat.id)
        try:
            user = update.effective_user  # the sender's own language: a flood is no time to read the chat's
            await message.reply_text(translator(choose(None, user.language_code if user else None))(SLOW_DOWN))
        except TelegramError as error:
            log.info("could not ask %s to slow down: %s", key, error)

    async def initialize(self) -> None:
        """Nothing to allocate: locks are made per user as updates arrive."""

    async def shutdown(self) -> None:
        """Nothing to free."""
