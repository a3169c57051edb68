"""A circuit breaker: after so many failures in a row, stop calling a backend for a cool-down, then try one call.

    circuit = Circuit(failures=5, cooldown_s=30)
    if circuit.admits():
        try: ...; circuit.succeeded()
        except ...: circuit.failed()

Closed, every call goes through. After `failures` failed calls in a row it opens: no call goes through, and
whoever asks is answered another way at once instead of waiting out a deadline per question. After
`cooldown_s` it half-opens: one trial call goes through (the others still are answered another way); its
success closes the circuit, its failure opens it for another cool-down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Circuit:
    def __init__(
        self, failures: int, cooldown_s: float, name: str = "backend", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures, self.cooldown_s, self.name = max(1, failures), cooldown_s, name
        self._clock = clock
        self._failed_in_a_row = 0
        self._opened_at: float | None = None  # None: closed
        self._trial = False  # half-open, and the one trial call is out

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        return CircuitState.HALF_OPEN if self._clock() - self._opened_at >= self.cooldown_s else CircuitState.OPEN

    def admits(self) -> bool:
        """Whether a call may go through now; half-open, the first caller is the trial, the others are not."""
        state = self.state
        if state == CircuitState.CLOSED:
            return True
        if state == CircuitState.HALF_OPEN and not self._trial:
            self._trial = True
            log.info("%s: trying again after %g s", self.name, self.cooldown_s)
            return True
        return False

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.warning("%s answers again: circuit closed", self.name)
        self._failed_in_a_row, self._opened_at, self._trial = 0, None, False

    def failed(self) -> None:
        self._failed_in_a_row += 1
        if self._trial or (self._opened_at is None and self._failed_in_a_row >= self.failures):
            log.warning(
                "%s failed %d times in a row: circuit open, answered without it for %g s",
                self.name,
                self._failed_in_a_row,
                self.cooldown_s,
            )
            self._opened_at, self._trial = self._clock(), False

    def abandoned(self) -> None:
        """An admitted call ended without a verdict (its caller gave up): a trial call frees the trial for the next."""
        self._trial = False
