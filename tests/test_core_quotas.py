"""Daily budgets, bans and allows (bot/core/quotas.py) on fixed model results and an in-memory database.
(Through the whole bot on the trained world: test_community.py.)"""

from __future__ import annotations

import pytest

from bot.core import photos, quotas, records, talk
from bot.core.incoming import Where
from bot.core.settings import BotSettings
from clipchat.kinds import ChatKind
from storage import AccessList, AccessStatus, connect_database, make_sessionmaker
from tests.fakes import PRIVATE, FakeChat, fake_services, in_group, photo_message

OPERATOR, ALICE, BOB, CAROL = 1, 21, 22, 23


def settings(**values) -> BotSettings:
    return BotSettings(_env_file=None, admin_ids=[OPERATOR], **values)


async def test_a_sender_over_the_photo_budget_is_told_once_then_ignored_and_no_model_runs() -> None:
    async with fake_services(settings(daily_photos_per_user=2)) as services:
        chat = FakeChat()
        for number in (1, 2):
            await photos.on_photo(services, photo_message(PRIVATE, message_id=number), chat)
        with pytest.raises(quotas.OverBudget) as told:
            await photos.on_photo(services, photo_message(PRIVATE, message_id=3), chat)
        assert "daily budget of photos (2)" in told.value.user_message and "midnight UTC" in told.value.user_message
        with pytest.raises(quotas.OverBudget) as again:
            await photos.on_photo(services, photo_message(PRIVATE, message_id=4), chat)
        assert again.value.user_message == "", "told once a day, then quiet"
        assert services.models.calls == ["describe", "describe"] and len(chat.replies) == 2
        report = await quotas.usage_of(services, "user", PRIVATE.user_id)
        assert report.used["photos"] == 4 and report.limits["photos"] == 2


async def test_questions_have_their_own_budget() -> None:
    async with fake_services(settings(daily_photos_per_user=1, daily_questions_per_user=1)) as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(PRIVATE), chat)
        await talk.on_question(services, PRIVATE, "what colour?", None, chat)
        with pytest.raises(quotas.OverBudget, match="questions"):
            await talk.on_question(services, PRIVATE, "and the shape?", None, chat)
        with pytest.raises(quotas.OverBudget, match="questions"):
            await talk.search(services, PRIVATE, "a red circle")
        assert services.models.calls == ["describe", "answer"]


async def test_operators_are_never_counted() -> None:
    operator = in_group(OPERATOR)
    async with fake_services(settings(daily_photos_per_user=1, daily_photos_per_group=1)) as services:
        chat = FakeChat()
        for number in range(3):
            await photos.on_photo(services, photo_message(operator, addressed=True, message_id=number), chat)
        assert len(chat.replies) == 3
        assert (await quotas.usage_of(services, "user", OPERATOR)).used.get("photos", 0) == 0


async def test_a_group_shares_one_budget_and_is_told_as_a_chat() -> None:
    async with fake_services(settings(daily_photos_per_group=2)) as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(in_group(ALICE), addressed=True, message_id=1), chat)
        await photos.on_photo(services, photo_message(in_group(BOB), addressed=True, message_id=2), chat)
        with pytest.raises(quotas.OverBudget) as told:
            await photos.on_photo(services, photo_message(in_group(CAROL), addressed=True, message_id=3), chat)
        assert told.value.user_message.startswith("This chat has used its daily budget of photos (2)")


async def test_unaddressed_group_photos_count_but_are_never_refused_aloud() -> None:
    async with fake_services(settings(daily_photos_per_group=1)) as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(in_group(ALICE), addressed=False, message_id=1), chat)
        with pytest.raises(quotas.OverBudget) as quiet:
            await photos.on_photo(services, photo_message(in_group(ALICE), addressed=False, message_id=2), chat)
        assert quiet.value.user_message == "" and chat.replies == []
        with pytest.raises(quotas.OverBudget) as told:  # the first to ask the bot is still told
            await photos.on_photo(services, photo_message(in_group(BOB), addressed=True, message_id=3), chat)
        assert "daily budget" in told.value.user_message


async def test_an_operators_quota_for_one_chat_replaces_the_default_and_zero_means_no_limit() -> None:
    async with fake_services(settings(daily_photos_per_user=1)) as services:
        assert (await quotas.budgets(services, PRIVATE, "photos")).user == 1
        await records.set_switch(services, PRIVATE, "daily_photos", 5)
        assert (await quotas.budgets(services, PRIVATE, "photos")).user == 5
        await records.set_switch(services, PRIVATE, "daily_photos", 0)
        assert (await quotas.budgets(services, PRIVATE, "photos")).user is None
        await records.set_switch(services, in_group(ALICE), "daily_photos", 7)
        group = await quotas.budgets(services, in_group(ALICE), "photos")
        assert group.chat == 7 and group.user == 1, "in a group the quota is the chat's; each member keeps theirs"
    async with fake_services(settings(daily_photos_per_user=0, daily_photos_per_group=0)) as services:
        assert await quotas.budgets(services, in_group(ALICE), "photos") == quotas.Budgets(user=None, chat=None)


async def test_a_ban_silences_a_person_and_the_channel_they_write_as() -> None:
    async with fake_services(settings()) as services:
        assert await quotas.access(services, ALICE, ALICE) == quotas.Verdict.SERVED
        await quotas.set_user_access(services, ALICE, AccessStatus.BANNED, OPERATOR)
        assert await quotas.access(services, ALICE, ALICE) == quotas.Verdict.BANNED
        assert await quotas.access(services, ALICE, -100) == quotas.Verdict.BANNED, "in every chat"
        await quotas.set_user_access(services, -300, AccessStatus.BANNED, OPERATOR)  # a channel someone writes as
        assert await quotas.access(services, BOB, -100, sender_chat_id=-300) == quotas.Verdict.BANNED
        assert await quotas.access(services, BOB, -100) == quotas.Verdict.SERVED
        await quotas.set_user_access(services, ALICE, None, OPERATOR)
        assert await quotas.access(services, ALICE, ALICE) == quotas.Verdict.SERVED
        assert (await quotas.usage_of(services, "user", ALICE)).status is None


async def test_a_ban_or_allowance_of_a_chat_covers_everyone_in_it_and_whoever_writes_as_it() -> None:
    """A chat's own id was never looked up: a banned group's anonymous admins (sender_chat: the group) and a
    banned channel's own posts were still served."""
    group, channel, anonymous_admin = -100, -200, 1087968824
    async with fake_services(settings(allowed_users=[ALICE])) as services:
        await quotas.set_user_access(services, group, AccessStatus.BANNED, OPERATOR)
        assert await quotas.access(services, anonymous_admin, group, sender_chat_id=group) == quotas.Verdict.BANNED
        assert await quotas.access(services, ALICE, group) == quotas.Verdict.BANNED, "everyone in it"
        assert await quotas.access(services, OPERATOR, group) == quotas.Verdict.SERVED
        assert await quotas.access(services, ALICE, -101) == quotas.Verdict.SERVED
        await quotas.set_user_access(services, channel, AccessStatus.BANNED, OPERATOR)
        assert await quotas.access(services, None, channel, sender_chat_id=channel) == quotas.Verdict.BANNED
        await quotas.set_user_access(services, channel, AccessStatus.ALLOWED, OPERATOR)
        assert await quotas.access(services, None, channel, sender_chat_id=channel) == quotas.Verdict.SERVED
        assert await quotas.access(services, BOB, channel) == quotas.Verdict.SERVED, "allowed: past the allow-lists"
        await quotas.set_user_access(services, BOB, AccessStatus.BANNED, OPERATOR)
        assert await quotas.access(services, BOB, channel) == quotas.Verdict.BANNED, "a ban beats an allowance"


async def test_the_allow_lists_keep_strangers_outside_unless_an_operator_allows_them() -> None:
    async with fake_services(settings(allowed_users=[ALICE], allowed_chats=[-100])) as services:
        assert await quotas.access(services, ALICE, ALICE) == quotas.Verdict.SERVED
        assert await quotas.access(services, BOB, -100) == quotas.Verdict.SERVED, "anyone in an allowed chat"
        assert await quotas.access(services, BOB, BOB) == "outside"
        assert await quotas.access(services, OPERATOR, 555) == quotas.Verdict.SERVED
        await quotas.set_user_access(services, BOB, AccessStatus.ALLOWED, OPERATOR)
        assert await quotas.access(services, BOB, BOB) == quotas.Verdict.SERVED
        await quotas.set_user_access(services, ALICE, AccessStatus.BANNED, OPERATOR)
        assert await quotas.access(services, ALICE, ALICE) == quotas.Verdict.BANNED, "a ban beats the allow-list"
        await quotas.set_user_access(services, OPERATOR, AccessStatus.BANNED, OPERATOR)
        assert await quotas.access(services, OPERATOR, OPERATOR) == quotas.Verdict.SERVED, (
            "operators cannot be locked out"
        )


async def test_with_the_database_down_the_allow_lists_alone_decide() -> None:
    async with fake_services(settings(allowed_users=[ALICE])) as services:
        await quotas.set_user_access(services, BOB, AccessStatus.ALLOWED, OPERATOR)
        gone = connect_database("postgresql+asyncpg://nobody@127.0.0.1:1/none", timeout=1)  # nothing listens on port 1
        services.access, services.sessions = AccessList(), make_sessionmaker(gone)  # a restart, with no database
        try:
            assert await quotas.access(services, ALICE, ALICE) == quotas.Verdict.SERVED
            assert await quotas.access(services, BOB, BOB) == "outside", "the operator's /allow waits for it"
        finally:
            await gone.dispose()


async def test_the_busiest_senders_are_listed_for_operators() -> None:
    async with fake_services(settings()) as services:
        chat = FakeChat()
        for number in range(3):
            await photos.on_photo(services, photo_message(PRIVATE, message_id=number), chat)
        assert await quotas.heaviest(services, "user") == [(PRIVATE.user_id, "photos", 3)]


async def test_a_ban_follows_a_group_to_its_supergroup_at_once_in_this_process() -> None:
    old, new = -4_001, -1_000_000_004_001
    async with fake_services(settings()) as services:
        await quotas.set_user_access(services, old, AccessStatus.BANNED, OPERATOR)
        await records.set_switch(services, Where(old, ChatKind.GROUP, ALICE), "language", "es")
        moved = await records.chat_upgraded(services, old, new)
        assert moved.settings and moved.access == AccessStatus.BANNED
        assert await quotas.access(services, BOB, new) == quotas.Verdict.BANNED, "no wait for the list's refresh"
        assert await quotas.access(services, BOB, old) == quotas.Verdict.SERVED
        assert (await records.switches(services, new)).language == "es"
        assert not (await records.chat_upgraded(services, old, new)).anything
