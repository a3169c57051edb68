"""Per-user order in one process, and with a queue shared by several processes."""

from __future__ import annotations

import asyncio

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
