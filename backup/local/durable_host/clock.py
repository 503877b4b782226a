"""Where the local Durable host gets its time from: a virtual clock for tests, the real one for CLI runs.

An orchestrator never reads a clock: ``context.current_utc_datetime`` is the timestamp of the latest
``OrchestratorStarted`` event in its history, and the host stamps that event (and every other one) from
its clock. So swapping the clock changes what time the orchestrations live in, and nothing else.

- :class:`RealClock` is wall-clock UTC; durable timers wait real time.
- :class:`VirtualClock` moves only when the host moves it. With ``auto_advance`` (the default) the host
  jumps it to the next due timer whenever nothing else can make progress (no orchestration work queued,
  no activity running), so a 60 s polling timer costs no real time. Without it, a test moves time itself
  with :meth:`backup.local.durable_host.LocalHost.advance_clock`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "RealClock", "VirtualClock"]


class Clock(Protocol):
    """What the host needs from a clock."""

    @property
    def is_virtual(self) -> bool:
        """Whether the host moves this clock (virtual) or time moves by itself (real)."""
        ...

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class RealClock:
    """Wall-clock UTC time; timers wait real time."""

    is_virtual = False

    def now(self) -> datetime:
        """The current wall-clock time in UTC."""
        return datetime.now(UTC)


class VirtualClock:
    """Test time that moves only forward and only when told to.

    ``start`` must be timezone-aware (naive datetimes are ambiguous; pass ``tzinfo=UTC``).
    ``auto_advance`` lets the host jump to the next due timer when it is otherwise idle.
    """

    is_virtual = True

    def __init__(self, start: datetime, *, auto_advance: bool = True) -> None:
        if not isinstance(start, datetime):
            raise TypeError(f"VirtualClock start must be a datetime, got {type(start).__name__}")
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("VirtualClock start must be timezone-aware, e.g. datetime(..., tzinfo=UTC)")
        self.auto_advance = auto_advance
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current virtual time."""
        with self._lock:
            return self._now

    def advance_to(self, when: datetime) -> None:
        """Move the clock to ``when``; a time in the past leaves it where it is (time never runs back)."""
        if when.tzinfo is None:
            raise ValueError("advance_to needs a timezone-aware datetime")
        with self._lock:
            when = when.astimezone(UTC)
            if when > self._now:
                self._now = when
