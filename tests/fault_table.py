"""What the fault-injection suite measures for each fault, and the one table it prints at the end of the run.

    with Watch() as watch:          # log records and resident memory while the fault plays out
        ...
    row = await account("a hung model call", telegram, sessions, tries, watch)

A try is one message a user sent. It is lost when the user heard nothing at all, or when the bot
answered it but kept no record of the answer without saying so. A crash is a traceback in the log
(an error no handler expected) or the "something went wrong" apology.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass

from sqlalchemy import select

from clipchat.errors import UserError

SORRY_PREFIX = "Sorry, something went wrong"


@dataclass(frozen=True)
class Try:
    chat_id: int
    message_id: int
    answer: bool  # an answer (kept as a turn) is expected, not a refusal


@dataclass(frozen=True)
class Row:
    fault: str
    tries: int
    replies: int
    lost: int
    crashes: int
    peak_rss_mb: float  # above the resident memory before the fault (the models already loaded)


ROWS: list[Row] = []


def refusals() -> set[str]:
    """Every fixed "try again" or "I can't" message the bot has."""
    from bot.adapter.ordering import SLOW_DOWN
    from bot.adapter.telegram_chat import SLOW_DOWNLOAD

    found, classes = {SLOW_DOWN, SLOW_DOWNLOAD}, [UserError]
    while classes:
        cls = classes.pop()
        found.add(cls.user_message)
        classes.extend(cls.__subclasses__())
    return found


def table(rows: list[Row]) -> list[str]:
    width = max([58, *(len(r.fault) for r in rows)])  # the longest fault's name sets the column
    header = f"{'fault':<{width}} {'tries':>6} {'replies':>8} {'lost':>5} {'crashes':>8} {'peak RSS +MB':>13}"
    return [header, "-" * len(header)] + [
        f"{r.fault:<{width}} {r.tries:>6} {r.replies:>8} {r.lost:>5} {r.crashes:>8} {r.peak_rss_mb:>13.0f}"
        for r in rows
    ]


def resident_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Watch(logging.Handler):
    """Log records and peak resident memory (sampled every 10 ms) while a fault plays out: this process's,
    or with `pid` a bot running in another one (until it ends; its log records are the test's to add)."""

    def __init__(self, pid: int | str = "self") -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.pid = pid
        self.baseline = self.peak = resident_bytes(pid)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def _resident(self) -> int:
        try:
            return resident_bytes(self.pid)
        except (FileNotFoundError, ProcessLookupError):  # the process watched has ended
            return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._resident())

    def __enter__(self) -> Watch:
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(min(root.level, logging.INFO))
        root.addHandler(self)
        self._sampler.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._sampler.join()
        logging.getLogger().removeHandler(self)
        logging.getLogger().setLevel(self._level)

    @property
    def peak_mb(self) -> float:
        return (max(self.peak, self._resident()) - self.baseline) / 2**20

    def tracebacks(self) -> list[str]:
        """Errors nobody handled. PTB's HTTP layer is left out: it logs, with a traceback, the empty body of
        every 404 it then raises as an error, which the bot does handle."""
        return [
            f"{r.name}: {r.getMessage()[:200]}"
            for r in self.records
            if r.levelno >= logging.ERROR
            and (r.exc_info or r.exc_text or "unhandled" in r.getMessage())
            and not r.name.startswith("telegram.request")
        ]

    def text(self) -> str:
        return "\n".join(r.getMessage() + (r.exc_text or "") for r in self.records)


async def account(fault: str, telegram, sessions, tries: list[Try], watch: Watch) -> Row:
    """The row for one fault; the database is read after the fault, as the user would find it later."""
    from storage.models import Turn

    replies = [call for call in telegram.sent("sendMessage") if call.reply_to is not None]
    answered = {int(telegram.bot_message(r)["message_id"]) for r in replies if "_result" in r.params}
    for _ in range(100):  # the bot writes an answer down just after sending it: give the last ones a moment
        async with sessions() as session:
            kept = set(
                await session.scalars(
                    select(Turn.message_id).where(Turn.role == "assistant", Turn.message_id.is_not(None))
                )
            )
        if answered <= kept:
            break
        await asyncio.sleep(0.05)
    lost = 0
    for attempt in tries:
        heard = [r for r in replies if r.chat_id == attempt.chat_id and r.reply_to == attempt.message_id]
        if not heard:
            lost += 1  # dropped without a word
        elif attempt.answer and not any(int(telegram.bot_message(r)["message_id"]) in kept for r in heard):
            # answered and then forgotten, unless the user heard "try again" or "I can't reach my memory"
            lost += 0 if any(r.text in refusals() for r in heard) else 1
    sorry = sum(1 for r in replies if r.text.startswith(SORRY_PREFIX))
    row = Row(
        fault,
        len(tries),
        len([r for r in replies if any(r.reply_to == t.message_id for t in tries)]),
        lost,
        len(watch.tracebacks()) + sorry,
        watch.peak_mb,
    )
    ROWS.append(row)
    return row
