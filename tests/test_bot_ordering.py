"""Per-user order in one process, and with a queue shared by several processes."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Update

from bot.adapter.ordering import PerUserOrder
from tests.fake_telegram import private, user


def update(update_id: int, user_id: int = 5) -> Update:
    return Update.de_json(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 0,
                "chat": private(user_id),
                "from": user(user_id),
                "text": "hi",
            },
        },
        None,
    )


async def test_an_update_recorded_sooner_never_overtakes_an_older_one(sessions) -> None:
    from storage.update_order import SharedOrder

    class SlowToRecordTheFirst(SharedOrder):
        async def arrived(self, key: int, update_id: int) -> int:
            if update_id == 1:
                await asyncio.sleep(0.3)  # the database answered the older update last
            return await super().arrived(key, update_id)

    processor = PerUserOrder(per_user=8)
    processor.shared = SlowToRecordTheFirst(sessions, reorder_window=0.0, poll=0.01)
    ran: list[int] = []

    async def handle(number: int) -> None:
        ran.append(number)

    await asyncio.wait_for(
        asyncio.gather(*(processor.do_process_update(update(n), handle(n)) for n in (1, 2, 3))), timeout=10
    )
    assert ran == [1, 2, 3]


async def test_one_process_keeps_order_and_runs_users_side_by_side() -> None:
    processor = PerUserOrder(per_user=8)
    events: list[str] = []

    async def handle(name: str, delay: float) -> None:
        events.append(f"start {name}")
        await asyncio.sleep(delay)
        events.append(f"end {name}")

    await asyncio.wait_for(
        asyncio.gather(
            processor.do_process_update(update(1, 5), handle("a1", 0.2)),
            processor.do_process_update(update(2, 5), handle("a2", 0.0)),
            processor.do_process_update(update(3, 6), handle("b1", 0.0)),
        ),
        10,
    )
    assert events.index("end a1") < events.index("start a2")  # one user: one after another
    assert events.index("end b1") < events.index("end a1")  # another user did not wait for a1


def press(update_id: int, presser: int, data: str) -> Update:
    """A press on a button of a bot message in presser's private chat."""
    return Update.de_json(
        {
            "update_id": update_id,
            "callback_query": {
                "id": str(update_id),
                "from": user(presser),
                "chat_instance": "ci",
                "data": data,
                "message": {"message_id": 1, "date": 0, "chat": private(presser), "text": "Are you sure?"},
            },
        },
        None,
    )


@pytest.mark.parametrize("shared", [False, True], ids=["one process", "two processes"])
async def test_a_press_joins_its_pressers_queue_and_forgetting_waits_for_the_identitys_work(sessions, shared) -> None:
    """A press joined the queue of the id its data named (data a client writes as it likes); it joins its
    presser's, and a confirmed /forget of another identity waits through `settled` for that identity's
    updates that came before it: in this process, and in another one sharing the database."""
    from bot.adapter.ordering import sender_key
    from storage.update_order import SharedOrder

    assert sender_key(press(9, 6, "forget:yes:5")) == 6
    assert sender_key(press(9, 6, "forget:yes:x")) == 6
    here, there = PerUserOrder(per_user=8), PerUserOrder(per_user=8)
    if shared:
        here.shared = there.shared = SharedOrder(sessions, reorder_window=0.0, poll=0.01)
    events: list[str] = []

    async def identity_work() -> None:
        events.append("start 5")
        await asyncio.sleep(0.4)
        events.append("end 5")

    async def forget(order: PerUserOrder) -> None:
        await order.settled(5, 2)
        events.append("forget 5")

    async def later(order: PerUserOrder) -> None:
        await asyncio.sleep(0.1)  # the identity's update is recorded and running
        await order.do_process_update(press(2, 6, "forget:yes:5"), forget(order))

    other = there if shared else here
    await asyncio.wait_for(
        asyncio.gather(here.do_process_update(update(1, 5), identity_work()), later(other)), timeout=10
    )
    assert events == ["start 5", "end 5", "forget 5"]


async def test_a_sender_over_the_limit_in_groups_is_told_once_per_group(telegram) -> None:
    """In a group the extra updates were dropped without a word: only a private chat heard SLOW_DOWN."""
    from telegram import Bot

    from bot.adapter.ordering import SLOW_DOWN
    from tests.conftest import BOT_TOKEN
    from tests.fake_telegram import group

    async with Bot(BOT_TOKEN, base_url=telegram.base_url) as bot:
        processor = PerUserOrder(per_user=1)

        def said(update_id: int, chat_id: int) -> Update:
            message = {"message_id": update_id, "date": 0, "chat": group(chat_id), "from": user(7), "text": "hi"}
            return Update.de_json({"update_id": update_id, "message": message}, bot)

        async def nothing() -> None:
            pass

        release = asyncio.Event()
        running = asyncio.create_task(processor.do_process_update(said(1, -100123), release.wait()))
        await asyncio.sleep(0)  # its sender's queue is full now
        for update_id, chat_id in [(2, -100123), (3, -100123), (4, -100456), (5, -100456)]:
            await processor.do_process_update(said(update_id, chat_id), nothing())
        release.set()
        await running
    assert processor.dropped == 4
    for chat_id in (-100123, -100456):
        assert [call.text for call in telegram.replies(chat_id)] == [SLOW_DOWN]
