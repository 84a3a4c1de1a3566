"""The collection budget: USD and/or calls, never exceeded, in-flight calls included.

Before a call its cost is *reserved* (an upper bound from the input length and the backend's
output cap); after it the reservation is *settled* to the cost the backend's reported usage
gives. A call is only started when what is spent plus every open reservation plus its own still
fits, so concurrent calls can never overrun the limit together. All methods are thread-safe.
"""

import logging
import math
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class BudgetError(ValueError):
    """A budget that cannot pay for a single call, or an invalid budget setting."""


@dataclass
class Reservation:
    """An open claim on the budget: `usd` for one cell, and its calls."""

    usd: float
    calls: int = 0
    open: bool = True


class Budget:
    """A spending limit in USD (`usd`) and/or calls (`calls`); None means no limit of that kind.

    Args:
        usd: the most USD to spend, settled costs plus open reservations.
        calls: the most backend calls (every attempt, retries included).
        spent_usd, spent_calls: what earlier runs already spent (a resumed collection).
    """

    def __init__(
        self, usd: float | None = None, calls: int | None = None, spent_usd: float = 0.0, spent_calls: int = 0
    ) -> None:
        if usd is not None and (not math.isfinite(usd) or usd <= 0):
            msg = f"`budget_usd` must be a finite number > 0 or None, got {usd!r}"
            raise BudgetError(msg)
        if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int) or calls < 1):
            msg = f"`budget_calls` must be an integer >= 1 or None, got {calls!r}"
            raise BudgetError(msg)
        self.usd_limit = usd
        self.calls_limit = calls
        self._lock = threading.Lock()
        self._spent_usd = float(spent_usd)
        self._spent_calls = int(spent_calls)
        self._reserved_usd = 0.0
        self._reserved_calls = 0
        self.overruns = 0  # settlements whose reported cost exceeded the reservation
        self.peak_committed_usd = self._spent_usd

    # -- views --------------------------------------------------------------------------------
    @property
    def spent_usd(self) -> float:
        with self._lock:
            return self._spent_usd

    @property
    def spent_calls(self) -> int:
        with self._lock:
            return self._spent_calls

    def remaining_usd(self) -> float:
        """USD not spent nor reserved (inf without a USD limit)."""
        with self._lock:
            if self.usd_limit is None:
                return math.inf
            return max(0.0, self.usd_limit - self._spent_usd - self._reserved_usd)

    def remaining_calls(self) -> float:
        with self._lock:
            if self.calls_limit is None:
                return math.inf
            return max(0, self.calls_limit - self._spent_calls - self._reserved_calls)

    def fits(self, usd: float, calls: int = 1) -> bool:
        """Whether a reservation of `usd` and `calls` would be granted now."""
        with self._lock:
            return self._fits(usd, calls)

    def _fits(self, usd: float, calls: int) -> bool:
        if self.usd_limit is not None and self._spent_usd + self._reserved_usd + usd > self.usd_limit:
            return False
        return (
            self.calls_limit is None or self._spent_calls + self._reserved_calls + calls <= self.calls_limit
        )

    # -- reserve / settle ---------------------------------------------------------------------
    def reserve(self, usd: float, calls: int = 1) -> Reservation | None:
        """Claims `usd` and `calls`; None (nothing claimed) when that would exceed a limit."""
        if usd < 0 or not math.isfinite(usd):
            msg = f"a reservation must be a finite number >= 0 USD, got {usd!r}"
            raise ValueError(msg)
        with self._lock:
            if not self._fits(usd, calls):
                return None
            self._reserved_usd += usd
            self._reserved_calls += calls
            self.peak_committed_usd = max(self.peak_committed_usd, self._spent_usd + self._reserved_usd)
            return Reservation(usd, calls)

    def add_call(self, reservation: Reservation) -> bool:
        """One more call (a retry) on an open reservation; False when the call budget is spent."""
        with self._lock:
            if not self._fits(0.0, 1):
                return False
            self._reserved_calls += 1
            reservation.calls += 1
            return True

    def settle(self, reservation: Reservation, usd: float) -> None:
        """Closes `reservation`: its calls are spent, and `usd` (the reported cost) replaces it."""
        with self._lock:
            if not reservation.open:
                msg = "this reservation was already settled"
                raise ValueError(msg)
            reservation.open = False
            self._reserved_usd -= reservation.usd
            self._reserved_calls -= reservation.calls
            self._spent_usd += usd
            self._spent_calls += reservation.calls
            if usd > reservation.usd * (1 + 1e-9) + 1e-12:
                self.overruns += 1
                logger.warning(
                    "a call cost %.6g USD, more than the %.6g reserved for it: its backend reported more "
                    "tokens than its max_output_tokens allows",
                    usd,
                    reservation.usd,
                )
            self.peak_committed_usd = max(self.peak_committed_usd, self._spent_usd + self._reserved_usd)

    def describe(self) -> str:
        parts = []
        if self.usd_limit is not None:
            parts.append(f"${self.spent_usd:.4f} of ${self.usd_limit:.4f}")
        if self.calls_limit is not None:
            parts.append(f"{self.spent_calls} of {self.calls_limit} calls")
        return ", ".join(parts) or f"${self.spent_usd:.4f} (no limit)"
