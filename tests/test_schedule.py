"""NCRONTAB parsing and occurrences, checked against croniter (an independent implementation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from backup.errors import InvalidInputError
from backup.schedule import (
    occurrence_for_timer,
    occurrence_instance_id,
    parse_schedule,
)


@pytest.mark.parametrize(
    ("expression", "at", "previous", "following"),
    [
        ("0 0 1 * * *", "2026-11-26T06:25:00", "2026-11-26T01:00:00", "2026-11-27T01:00:00"),
        ("0 0 1 * * *", "2026-11-26T01:00:00", "2026-11-26T01:00:00", "2026-11-27T01:00:00"),
        ("0 */5 * * * *", "2026-11-26T06:27:13", "2026-11-26T06:25:00", "2026-11-26T06:30:00"),
        ("30 15 9 * * Mon-Fri", "2026-11-28T12:00:00", "2026-11-27T09:15:30", "2026-11-30T09:15:30"),
        ("0 0 0 1 Jan *", "2026-11-26T00:00:00", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
        ("0 0 12 * * 7", "2026-11-26T00:00:00", "2026-11-22T12:00:00", "2026-11-29T12:00:00"),
        # NCrontab ANDs the two day fields: the 13th that is a Friday, not every Friday and every 13th.
        ("0 0 0 13 * Fri", "2026-11-26T00:00:00", "2026-11-13T00:00:00", "2027-08-13T00:00:00"),
        ("0 0 0 29 2 *", "2026-11-26T00:00:00", "2024-02-29T00:00:00", "2028-02-29T00:00:00"),
    ],
)
def test_occurrences(expression: str, at: str, previous: str, following: str) -> None:
    schedule = parse_schedule(expression)
    when = datetime.fromisoformat(at).replace(tzinfo=UTC)
    assert schedule.previous_occurrence(when) == datetime.fromisoformat(previous).replace(tzinfo=UTC)
    assert schedule.next_occurrence(when) == datetime.fromisoformat(following).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("", "empty"),
        ("0 0 1 * *", "has 5 fields"),
        ("0 0 1 * * * *", "has 7 fields"),
        ("60 0 1 * * *", "second value 60 is outside 0-59"),
        ("0 0 24 * * *", "hour value 24 is outside 0-23"),
        ("0 0 1 0 * *", "day value 0 is outside 1-31"),
        ("0 0 1 * 13 *", "month value 13 is outside 1-12"),
        ("0 0 1 * * 8", "day-of-week value 8 is outside 0-7"),
        ("0 0 1 * * Funday", "not a number or a name"),
        ("0 0 5-1 * * *", "runs backwards"),
        ("0 */0 * * * *", "step must be at least 1"),
        ("0 0 1 31 2 *", "no occurrence"),
        ("00:05:00", "TimeSpan"),
        ("0 0 1 ? * *", "is not a value, range or step"),
    ],
)
def test_bad_expressions_name_the_problem(expression: str, problem: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_schedule(expression)
    assert info.value.field == "schedule"
    assert problem in str(info.value)


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    single = number.map(str)
    # croniter misreads degenerate ranges like "0-0"; NCrontab-style "a-b" with a < b is what users write.
    ranged = st.tuples(number, number).filter(lambda t: t[0] != t[1]).map(lambda t: f"{min(t)}-{max(t)}")
    stepped = st.tuples(st.sampled_from(["*"]), st.integers(1, max(1, high - low))).map(lambda t: f"*/{t[1]}")
    item = st.one_of(single, ranged, stepped)
    return st.one_of(st.just("*"), st.lists(item, min_size=1, max_size=3).map(",".join))


expressions = st.tuples(
    _field(0, 59), _field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6)
).map(" ".join)
instants = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)


@settings(max_examples=150, deadline=None)
@given(expression=expressions, at=instants)
def test_agrees_with_croniter(expression: str, at: datetime) -> None:
    schedule = parse_schedule(expression)
    oracle = croniter(expression, at, second_at_beginning=True, day_or=False)
    assert schedule.next_occurrence(at) == oracle.get_next(datetime)
    oracle = croniter(expression, at + timedelta(seconds=1), second_at_beginning=True, day_or=False)
    assert schedule.previous_occurrence(at) == oracle.get_prev(datetime)


def test_timer_occurrence_and_instance_id() -> None:
    schedule = parse_schedule("0 0 1 * * *")
    occurrence = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    # On time, a little late, very late (past due), and a little early (skew): all the same occurrence.
    for fired in (occurrence, occurrence + timedelta(seconds=3), occurrence + timedelta(hours=20)):
        assert occurrence_for_timer(schedule, fired) == occurrence
    assert occurrence_for_timer(schedule, occurrence - timedelta(seconds=2)) == occurrence
    assert occurrence_instance_id(occurrence) == "nightly-20261126T010000Z"
    # The next day's firing is another occurrence, hence another run.
    assert occurrence_instance_id(occurrence_for_timer(schedule, occurrence + timedelta(days=1))) != (
        occurrence_instance_id(occurrence)
    )
