"""What the bot keeps, and letting go of it: /reset, /forget, chat switches, who was seen in each group and
since when, a group's upgrade, statistics and upkeep."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.i18n import N_, choose, translator
from clipchat.kinds import ChatKind
from storage import (
    Moved,
    Removed,
    chat_switches,
    forget_image,
    forget_user,
    image_by_message,
    maintain,
    member_left,
    member_since,
    move_chat,
    purge_older_than,
    purge_usage_before,
    reset_thread,
    see_members,
    set_chat_switch,
    statistics,
    write_with_retry,
)
from storage import Switches as Switches  # re-exported: what switches() returns, for the adapter to read

from .incoming import Where
from .services import Services

log = logging.getLogger(__name__)
ONLY_OPERATORS = N_("Only the bot's operators can see statistics.")
GROUPS = (ChatKind.GROUP, ChatKind.SUPERGROUP)
FORGET_WHICH = N_("Reply to the photo you want me to forget with /forget this.")
FORGET_NOT_FOUND = N_("I don't have that photo (any more): there is nothing to forget.")
FORGET_NOT_YOURS = N_("Sorry, only the person who sent that photo can make me forget it.")


async def reset(services: Services, where: Where) -> int:
    """Clear this user's conversation in this chat (in a forum, in this topic only); returns the turns removed."""
    return await write_with_retry(
        services.sessions, lambda session: reset_thread(session, where.chat_id, where.thread_user, where.topic)
    )


async def forget(services: Services, user_id: int) -> Removed:
    removed = await write_with_retry(services.sessions, lambda session: forget_user(session, user_id))
    services.members.forget_user(user_id)  # their rows went: their next message in a group is noted again
    services.pixels.drop_person(user_id)  # their photos, downscaled for an answer model that sees images
    await services.models.forget_caches()  # their search phrases and /tags labels, among everyone's
    return removed


async def forget_photo(services: Services, where: Where, reply_to: int | None) -> str:
    """/forget this, in reply to a photo (or to the bot's answer about one): that photo and what was said
    about it go, if the sender sent it, or is one of the bot's operators. Returns what to say."""
    _ = translator(await language(services, where))
    if reply_to is None:
        return _(FORGET_WHICH)
    operator = where.user_id is not None and where.user_id in services.settings.admin_ids

    forgotten: list[str] = []  # the photo's file_unique_id, once it is found

    async def work(session: AsyncSession) -> Removed | str:
        image = await image_by_message(session, where.chat_id, reply_to)
        if image is None:
            return FORGET_NOT_FOUND
        if image.sender_id != where.user_id and not operator:
            return FORGET_NOT_YOURS
        forgotten.append(image.file_unique_id)
        return await forget_image(session, image)

    removed = await write_with_retry(services.sessions, work)
    if isinstance(removed, str):
        return _(removed)
    if forgotten:
        services.pixels.drop_file(forgotten[-1])  # downscaled for an answer model that sees images
    log.info("chat %s: photo forgotten at the request of %s", where.chat_id, where.user_id)
    if not removed.turns:
        return _("Done: I forgot that photo, and /search won't find it any more.")
    return _.plural(
        "Done: I forgot that photo and the {count} message about it; /search won't find it any more.",
        "Done: I forgot that photo and the {count} messages about it; /search won't find it any more.",
        removed.turns,
        count=removed.turns,
    )


async def seen(services: Services, chat_id: int, people: Sequence[int]) -> None:
    """These people wrote in a group: the first time the bot saw each of them there is kept. Only the
    first message of each (per process) writes."""
    fresh = services.members.unseen(chat_id, people)
    if fresh:
        await write_with_retry(services.sessions, lambda session: see_members(session, chat_id, fresh))
        services.members.saw(chat_id, fresh)


async def joined(services: Services, chat_id: int, people: Sequence[int]) -> None:
    """These people just joined a group: they came now, whatever was kept from an earlier stay."""
    await write_with_retry(services.sessions, lambda session: see_members(session, chat_id, people, joined=True))
    services.members.saw(chat_id, people)


async def left(services: Services, chat_id: int, user_id: int) -> None:
    """Someone left a group (or was removed): should they come back, they come anew."""
    await write_with_retry(services.sessions, lambda session: member_left(session, chat_id, user_id))
    services.members.left(chat_id, user_id)


async def searchable_since(services: Services, where: Where) -> datetime | None:
    """From when the sender may find this chat's photos: in a group, since the bot first saw them there (as
    a group that hides its history from new members shows them); None, all of them, in a private chat, and
    for a group's anonymous admins (they write as the group itself, and admins see all its history)."""
    if where.chat_kind not in GROUPS or where.user_id is None or where.user_id == where.chat_id:
        return None
    user_id = where.user_id
    async with services.reading() as session:
        since = await member_since(session, where.chat_id, user_id)
    if since is not None:
        return since

    async def note_now(session: AsyncSession) -> datetime | None:  # not noted yet: seen from now on
        await see_members(session, where.chat_id, [user_id])
        return await member_since(session, where.chat_id, user_id)

    return await write_with_retry(services.sessions, note_now) or datetime.now(UTC)


async def switches(services: Services, chat_id: int) -> Switches:
    async with services.reading() as session:
        return await chat_switches(session, chat_id)


async def language(services: Services, where: Where) -> str:
    """The language replies here are written in: the chat's /settings language, else the sender's, else English."""
    return choose((await switches(services, where.chat_id)).language, where.language)


async def set_switch(services: Services, where: Where, name: str, value: bool | int | str | None) -> Switches:
    return await write_with_retry(
        services.sessions,
        lambda session: set_chat_switch(session, where.chat_id, where.chat_kind, name, value, where.user_id),
    )


async def chat_upgraded(services: Services, old_id: int, new_id: int) -> Moved:
    """A group became a supergroup, which Telegram gives a new id: its settings, photos, conversations,
    budgets and bans follow it there, in one transaction. Both chats announce the upgrade, in either order
    and maybe to two processes; whichever comes second finds nothing left to move."""
    moved = await write_with_retry(services.sessions, lambda session: move_chat(session, old_id, new_id))
    services.access.changed(old_id, None)  # the old id holds no operator's word now, whoever moved it
    if moved.access is not None:
        services.access.changed(new_id, moved.access)
    if moved.anything:
        log.info(
            "group %s became supergroup %s: moved %d photos, %d turns, %s, %d usage counts, %d members, access %s",
            old_id,
            new_id,
            moved.images,
            moved.turns,
            "its settings" if moved.settings else "no settings",
            moved.usage,
            moved.members,
            moved.access or "unchanged",
        )
    return moved


async def statistics_for(services: Services, user_id: int | None, language: str | None = None) -> str:
    """Row counts, for operators only."""
    if user_id is None or user_id not in services.settings.admin_ids:
        return translator(language)(ONLY_OPERATORS)
    async with services.reading() as session:
        counts = await statistics(session)
    return "\n".join(f"{name}: {value}" for name, value in counts.items())


async def purge_expired(services: Services) -> tuple[int, Removed]:
    """Delete turns and photo records older than the retention period; returns (days, what went)."""
    age = timedelta(days=services.storage_settings.retention_days)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)

    async def work(session: AsyncSession) -> Removed:
        await purge_usage_before(session, yesterday)  # budgets are daily; a day's grace for clocks in other zones
        return await purge_older_than(session, age)

    return age.days, await write_with_retry(services.sessions, work)


async def upkeep(services: Services) -> str:
    """Refresh planner statistics and trim the SQLite log; returns a line saying what the bot holds."""
    done = await maintain(services.database)
    async with services.reading() as session:
        counts = await statistics(session)
    return f"database maintenance ({done}); rows {counts}; model queues {services.models.queue_depths()}"
