"""A paced copy's states and headers (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testbed.emulator.copy_pacing import PacedCopy

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOTAL = 4 * 1024 * 1024 + 512


def _statuses(copy: PacedCopy, polls: int) -> list[tuple[str | None, str | None]]:
    shown = []
    for _ in range(polls):
        copy.observe(NOW)
        headers = copy.headers()
        shown.append((headers["x-ms-copy-status"], headers["x-ms-copy-progress"]))
    return shown


def test_pending_then_success() -> None:
    copy = PacedCopy("id", "c", TOTAL, polls=3)
    shown = _statuses(copy, 5)
    assert [status for status, _ in shown] == ["pending", "pending", "pending", "success", "success"]
    copied = [int(progress.split("/")[0]) for _, progress in shown]  # type: ignore[union-attr]
    assert copied == sorted(copied) and copied[0] > 0 and copied[2] < TOTAL and copied[3] == TOTAL
    assert all(c % 512 == 0 for c in copied[:3])
    assert copy.headers()["x-ms-copy-completion-time"] == "Mon, 02 Mar 2026 12:00:00 GMT"


def test_pending_copy_has_no_completion_time_or_description() -> None:
    copy = PacedCopy("id", "c", TOTAL, polls=2)
    copy.observe(NOW)
    headers = copy.headers()
    assert headers["x-ms-copy-completion-time"] is None and headers["x-ms-copy-status-description"] is None
    assert copy.pending


def test_failure_after_the_polls() -> None:
    copy = PacedCopy("id", "c", TOTAL, polls=1, failure='500 InternalError "Copy failed."')
    assert [s for s, _ in _statuses(copy, 3)] == ["pending", "failed", "failed"]
    assert copy.headers()["x-ms-copy-status-description"] == '500 InternalError "Copy failed."'


@pytest.mark.parametrize("outcome", ["failed", "aborted"])
def test_settle_ends_it_at_once_and_only_once(outcome: str) -> None:
    copy = PacedCopy("id", "c", TOTAL, polls=5)
    copy.observe(NOW)
    copy.settle(outcome, "why", NOW)
    copy.settle("failed", "later", NOW)
    copy.observe(NOW)
    headers = copy.headers()
    assert headers["x-ms-copy-status"] == outcome and headers["x-ms-copy-status-description"] == "why"
    assert not copy.pending
    with pytest.raises(ValueError, match="failed or aborted"):
        copy.settle("success", None, NOW)


def test_no_polls_means_the_first_look_shows_the_outcome() -> None:
    assert _statuses(PacedCopy("id", "c", TOTAL, polls=0), 1) == [("success", f"{TOTAL}/{TOTAL}")]


def test_paced_by_time_pending_until_then_success() -> None:
    hour = timedelta(hours=1)
    copy = PacedCopy("id", "c", TOTAL, polls=0, started=NOW, until=NOW + hour)
    shown = []
    for minutes in (0, 1, 30, 59, 60, 61):
        copy.observe(NOW + timedelta(minutes=minutes))
        headers = copy.headers()
        shown.append((headers["x-ms-copy-status"], int(str(headers["x-ms-copy-progress"]).split("/")[0])))
    assert [status for status, _ in shown] == ["pending"] * 4 + ["success"] * 2
    copied = [c for _, c in shown]
    assert copied[0] == 0 and 0 < copied[1] < copied[2] < copied[3] < TOTAL and copied[4] == TOTAL
    assert copied[2] == TOTAL // 2 // 512 * 512 and all(c % 512 == 0 for c in copied)
    assert copy.headers()["x-ms-copy-completion-time"] == "Mon, 02 Mar 2026 13:00:00 GMT"


def test_paced_by_time_progress_never_goes_back_and_a_failure_comes_at_the_end() -> None:
    copy = PacedCopy(
        "id", "c", TOTAL, polls=0, failure="gone", started=NOW, until=NOW + timedelta(minutes=10)
    )
    copy.observe(NOW + timedelta(minutes=5))
    half = copy.copied
    copy.observe(NOW + timedelta(minutes=1))  # a clock that went back does not undo progress
    assert copy.copied == half and copy.pending
    copy.observe(NOW + timedelta(minutes=10))
    assert copy.headers()["x-ms-copy-status"] == "failed" and not copy.pending
