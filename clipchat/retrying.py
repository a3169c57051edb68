"""One retry policy for everything that talks over a network: exponential back-off, capped in tries
and in total time.

    async for attempt in retrying(is_transient, attempts=8, first_delay=0.1, max_delay=2.0, deadline=20,
                                  what="database write"):
        with attempt:
            ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

log = logging.getLogger(__name__)


def retrying(
    transient: Callable[[BaseException], bool],
    *,
    attempts: int,
    first_delay: float,
    max_delay: float,
    deadline: float,
    what: str = "call",
) -> AsyncRetrying:
    """Retry while `transient(error)` holds: waits first_delay, then double, at most max_delay each,
    for at most `attempts` tries, and never past `deadline` seconds from the first (no retry starts
    whose wait would end after it); the last error is raised as it is."""

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (attempt %d of %d), retrying: %s: %s",
            what,
            state.attempt_number,
            attempts,
            type(error).__name__,
            error,
        )

    return AsyncRetrying(
        retry=retry_if_exception(transient),
        reraise=True,
        before_sleep=warn,
        stop=stop_after_attempt(max(1, attempts)) | stop_before_delay(deadline),
        wait=wait_exponential(multiplier=first_delay, max=max_delay),
    )
