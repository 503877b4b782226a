"""NCRONTAB schedules, as the Functions timer trigger reads them, and the occurrences they produce.

The timer trigger's expression has six fields: ``{second} {minute} {hour} {day} {month} {day-of-week}``.
Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those;
months and days of the week may be named (``Jan``, ``Mon``). Day-of-week 0 and 7 are both Sunday. Unlike
Vixie cron, and like NCrontab (the library the Functions host uses), a time matches only if its day of
the month AND its day of the week both match. Times are UTC (the Functions default).

Nightly runs are named after the occurrence they serve, so each occurrence starts at most one run:
:func:`occurrence_instance_id` is that name.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backup.errors import InvalidInputError

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}

# (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"(?P<base>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?")
# Limits how far back or forward an occurrence is searched: one whole Gregorian cycle (400 years, the
# calendar then repeats), so an expression that occurs at all is found. A date on a weekday can be 11
# years apart (25 March fell on a Sunday in 2018, next in 2029) and 29 February on a Monday up to 40; an
# impossible expression (30 February) costs a fraction of a second to refuse.
_SEARCH_DAYS = 146_097


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB expression."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday

    def _day_matches(self, when: datetime) -> bool:
        weekday = (when.weekday() + 1) % 7  # Python: Monday = 0; cron: Sunday = 0
        return when.month in self.months and when.day in self.days and weekday in self.weekdays

    def previous_occurrence(self, at: datetime) -> datetime:
        """The latest occurrence at or before ``at`` (an aware datetime; the result is UTC)."""
        at = _utc(at).replace(microsecond=0)
        day = at.replace(hour=0, minute=0, second=0)
        bound: tuple[int, int, int] | None = (at.hour, at.minute, at.second)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                found = self._last_time_at_or_before(bound)
                if found is not None:
                    return day.replace(hour=found[0], minute=found[1], second=found[2])
            day -= timedelta(days=1)
            bound = None
        raise InvalidInputError(
            "schedule", f"{self.expression!r} has no occurrence in the past {_SEARCH_DAYS} days"
        )

    def next_occurrence(self, after: datetime) -> datetime:
        """The earliest occurrence strictly after ``after`` (an aware datetime; the result is UTC)."""
        after = _utc(after).replace(microsecond=0)
        day = after.replace(hour=0, minute=0, second=0)
        bound: tuple[int, int, int] | None = (after.hour, after.minute, after.second)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                found = self._first_time_after(bound)
                if found is not None:
                    return day.replace(hour=found[0], minute=found[1], second=found[2])
            day += timedelta(days=1)
            bound = None
        raise InvalidInputError(
            "schedule", f"{self.expression!r} has no occurrence in the next {_SEARCH_DAYS} days"
        )

    def _first_time_after(self, bound: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        """The earliest time of day strictly after ``bound`` (``None``: the day's first)."""
        hours, minutes, seconds = sorted(self.hours), sorted(self.minutes), sorted(self.seconds)
        if bound is None:
            return hours[0], minutes[0], seconds[0]
        h0, m0, s0 = bound
        for h in hours[bisect_left(hours, h0) :]:
            if h > h0:
                return h, minutes[0], seconds[0]
            for m in minutes[bisect_left(minutes, m0) :]:
                if m > m0:
                    return h, m, seconds[0]
                later = bisect_right(seconds, s0)
                if later < len(seconds):
                    return h, m, seconds[later]
        return None

    def _last_time_at_or_before(self, bound: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        """The latest time of day at or before ``bound`` (``None``: the day's last)."""
        hours, minutes, seconds = sorted(self.hours), sorted(self.minutes), sorted(self.seconds)
        if bound is None:
            return hours[-1], minutes[-1], seconds[-1]
        h0, m0, s0 = bound
        for h in reversed(hours[: bisect_right(hours, h0)]):
            if h < h0:
                return h, minutes[-1], seconds[-1]
            for m in reversed(minutes[: bisect_right(minutes, m0)]):
                if m < m0:
                    return h, m, seconds[-1]
                earlier = bisect_right(seconds, s0)
                if earlier > 0:
                    return h, m, seconds[earlier - 1]
        return None


def parse_schedule(expression: str) -> Schedule:
    """Parse a six-field NCRONTAB expression; :class:`InvalidInputError` (field ``schedule``) if malformed."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInputError("schedule", "is empty; expected six fields like '0 0 1 * * *'")
    if re.fullmatch(r"\s*\d+(\.\d+)?:\d{2}:\d{2}\s*", expression):
        raise InvalidInputError(
            "schedule", f"{expression!r} is a TimeSpan, which only App Service plans accept; use NCRONTAB"
        )
    parts = expression.split()
    if len(parts) != 6:
        raise InvalidInputError(
            "schedule",
            f"{expression!r} has {len(parts)} fields; NCRONTAB needs 6: "
            "second minute hour day month day-of-week",
        )
    sets = [_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[5])
    schedule = Schedule(
        expression=" ".join(parts),
        seconds=sets[0],
        minutes=sets[1],
        hours=sets[2],
        days=sets[3],
        months=sets[4],
        weekdays=weekdays,
    )
    # An expression like "0 0 0 31 2 *" (31 February) never fires: say so now, not at 3 a.m.
    schedule.next_occurrence(datetime(2000, 1, 1, tzinfo=UTC))
    return schedule


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if not match:
            raise InvalidInputError(
                "schedule", f"{name} field {text!r}: {item!r} is not a value, range or step"
            )
        base, step_text = match.group("base"), match.group("step")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _value(first, name, low, high, names), _value(last, name, low, high, names)
            if start > end:
                raise InvalidInputError("schedule", f"{name} field {text!r}: range {base!r} runs backwards")
        else:
            start = _value(base, name, low, high, names)
            end = high if step_text else start
        step = int(step_text) if step_text else 1
        if step < 1:
            raise InvalidInputError("schedule", f"{name} field {text!r}: step must be at least 1")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise InvalidInputError(
            "schedule", f"{name} value {text!r} is not a number" + (" or a name" if names else "")
        )
    value = int(text)
    if not low <= value <= high:
        raise InvalidInputError("schedule", f"{name} value {value} is outside {low}-{high}")
    return value


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise InvalidInputError("time", "must carry a time zone")
    return when.astimezone(UTC)


#: How early a timer may fire and still count for the occurrence it was meant for.
TIMER_EARLY_TOLERANCE = timedelta(seconds=5)


def occurrence_for_timer(schedule: Schedule, fired_at: datetime) -> datetime:
    """The occurrence a timer firing at ``fired_at`` serves.

    A late (past-due) firing serves the latest missed occurrence; a firing up to
    :data:`TIMER_EARLY_TOLERANCE` early (clock skew between host and scheduler) still serves the
    occurrence it was scheduled for, not the one before it.
    """
    return schedule.previous_occurrence(_utc(fired_at) + TIMER_EARLY_TOLERANCE)


def occurrence_instance_id(occurrence: datetime) -> str:
    """The orchestration instance id of the scheduled run for ``occurrence``: one per occurrence."""
    return "nightly-" + _utc(occurrence).strftime("%Y%m%dT%H%M%SZ")
