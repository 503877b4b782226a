"""How a copy from a managed-disk SAS looks while Azure works on it: pending, progress, then an outcome.

Azure copies a managed-disk snapshot into a storage account asynchronously: Copy Blob answers
``x-ms-copy-status: pending`` and each Get Blob Properties of the destination shows ``pending`` with a
growing ``x-ms-copy-progress`` ("copied/total" bytes) until ``success``, ``failed`` (with
``x-ms-copy-status-description``) or ``aborted``; ``x-ms-copy-completion-time`` appears only once the copy
has ended. Azurite finishes every copy at once, so the front keeps a :class:`PacedCopy` per destination
and overlays :meth:`PacedCopy.headers` on what Azurite answers. Pure: time is an argument.

A copy is paced by polls (pending for so many HEADs) or, when it has an ``until``, by time: pending
until then, its progress growing with the time passed (how a long copy looks to a watch that polls
it for an hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from testbed.emulator.pages import PAGE_SIZE

__all__ = ["PacedCopy"]


@dataclass(eq=False)
class PacedCopy:
    """One copy into a destination, shown ``pending`` for ``polls`` HEADs (or, with ``until``, for the
    first HEAD at or after ``until`` is the one that ends it), then ending.

    ``failure`` (a description) makes it end ``failed`` instead of ``success``; :meth:`settle` ends it
    early (revoked access, a vanished source, Abort Copy Blob). ``started`` is when the copy began
    (time-paced progress counts from it).
    """

    copy_id: str
    source: str  # which grant it reads (the md container), so revoke can find it
    total: int
    polls: int
    failure: str | None = None
    seen: int = 0
    outcome: str | None = None  # None while pending, then "success", "failed" or "aborted"
    description: str | None = None
    completed_at: datetime | None = None
    copied: int = 0
    started: datetime | None = None
    until: datetime | None = None

    @property
    def pending(self) -> bool:
        """Whether the copy has not ended yet."""
        return self.outcome is None

    def observe(self, now: datetime) -> None:
        """One Get Blob Properties of the destination: advance the progress or reach the outcome."""
        if self.outcome is not None:
            return
        if self.until is not None:
            if now < self.until:
                self.seen += 1
                self.copied = max(self.copied, self._copied_by(now))
                return
        elif self.seen < self.polls:
            self.seen += 1
            self.copied = self.total * self.seen // (self.polls + 1) // PAGE_SIZE * PAGE_SIZE
            return
        if self.failure is not None:
            self.settle("failed", self.failure, now)
        else:
            self.outcome, self.copied, self.completed_at = "success", self.total, now

    def _copied_by(self, now: datetime) -> int:
        """Time-paced progress: the share of ``started .. until`` gone by, in whole pages, never all."""
        assert self.until is not None
        start = self.started or now
        span = (self.until - start).total_seconds()
        share = 0.0 if span <= 0 else min(max((now - start).total_seconds() / span, 0.0), 1.0)
        return min(int(self.total * share) // PAGE_SIZE * PAGE_SIZE, max(self.total - PAGE_SIZE, 0))

    def settle(self, outcome: str, description: str | None, now: datetime) -> None:
        """End the copy now as ``failed`` or ``aborted`` (no-op when it has already ended)."""
        if outcome not in ("failed", "aborted"):
            raise ValueError(f"a copy is settled as failed or aborted, not {outcome!r}")
        if self.outcome is None:
            self.outcome, self.description, self.completed_at = outcome, description, now

    def headers(self) -> dict[str, str | None]:
        """The copy headers to show now (``None``: leave the header out)."""
        completed = (
            format_datetime(self.completed_at.astimezone(UTC), usegmt=True) if self.completed_at else None
        )
        return {
            "x-ms-copy-status": self.outcome or "pending",
            "x-ms-copy-progress": f"{self.copied}/{self.total}",
            "x-ms-copy-status-description": self.description,
            "x-ms-copy-completion-time": completed,
        }
