"""The pure parts of retries and SAS lifetime: delays, bounds, how long a grant lasts, when it is renewed,
and which failed copies a new grant can help."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backup.errors import InvalidInputError
from backup.workflow.access import (
    COPY_PLANNING_BYTES_PER_SECOND,
    MAX_SAS_SECONDS,
    Access,
    copy_seconds,
    expected_copy_seconds,
    lifetime,
    renewal_margin,
    source_access_ended,
)
from backup.workflow.models import GiB, MiB, RunOptions
from backup.workflow.retries import ActivityRetry

TiB = 1 << 40


def test_retry_delays_double_to_their_cap_and_add_up_to_a_bounded_total() -> None:
    retry = ActivityRetry()
    assert [retry.delay(n) for n in range(1, retry.attempts)] == [5, 10, 20, 40, 60]
    assert retry.total_seconds == 135
    assert ActivityRetry(attempts=1).total_seconds == 0  # one call, no retry
    assert ActivityRetry(attempts=4, first_seconds=100, max_seconds=150).total_seconds == 100 + 150 + 150


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"attempts": 0}, "retry.attempts"),
        ({"attempts": 21}, "retry.attempts"),
        ({"attempts": True}, "options.retry.attempts"),
        ({"firstSeconds": 90, "maxSeconds": 60}, "retry"),
        ({"firstSeconds": "5"}, "options.retry.firstSeconds"),
        ([1, 2], "options.retry"),
    ],
)
def test_retry_options_are_validated(data: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ActivityRetry.from_json(data)
    assert caught.value.field == field


def test_retry_options_round_trip_and_default_for_older_runs() -> None:
    retry = ActivityRetry(attempts=3, first_seconds=2, max_seconds=8)
    assert ActivityRetry.from_json(retry.to_json()) == retry
    assert ActivityRetry.from_json(None) == ActivityRetry()
    options = RunOptions("c", sas_minutes=30, retry=retry)
    assert RunOptions.from_json(options.to_json()) == options
    older = {k: v for k, v in options.to_json().items() if k not in ("sasMinutes", "retry")}
    rebuilt = RunOptions.from_json(older)
    assert (rebuilt.sas_minutes, rebuilt.retry) == (120, ActivityRetry())


@pytest.mark.parametrize(
    ("seconds", "margin"),
    [(7200, 900), (3600, 900), (1200, 300), (300, 75)],
)
def test_a_grant_is_renewed_fifteen_minutes_before_it_ends_or_a_quarter_of_its_life(
    seconds: int, margin: float
) -> None:
    assert renewal_margin(seconds) == margin


@pytest.mark.parametrize(
    ("disk_bytes", "sas_minutes", "expected"),
    [
        (1 * MiB, 120, 120 * 60),  # a small disk: the setting
        (32 * GiB, 120, 120 * 60),  # 34 minutes of copying fits in two hours with two margins
        (128 * GiB, 120, 8192 + 1800),  # longer than the setting: the copy, and room to spare
        (1 * TiB, 120, 65536 + 1800),  # 18 hours
        (4 * TiB, 120, (1440 + 60) * 60),  # longer than the copy may take: its deadline, and an hour
    ],
)
def test_a_copys_grant_lasts_as_long_as_the_copy_is_expected_to_take(
    disk_bytes: int, sas_minutes: int, expected: int
) -> None:
    options = RunOptions("c", sas_minutes=sas_minutes)
    assert copy_seconds(disk_bytes, options) == expected
    assert expected_copy_seconds(disk_bytes) == -(-disk_bytes // COPY_PLANNING_BYTES_PER_SECOND)


def test_a_restarted_copys_grant_doubles_within_the_copy_deadline_and_azures_sixty_days() -> None:
    options = RunOptions("c", sas_minutes=120)
    assert [copy_seconds(GiB, options, restart) for restart in range(3)] == [7200, 14400, 28800]
    long_deadline = RunOptions("c", sas_minutes=1440, copy_timeout_minutes=20160)
    assert copy_seconds(8 * TiB, long_deadline, 2) == (20160 + 60) * 60  # the deadline, then
    assert lifetime(10**9, long_deadline) == MAX_SAS_SECONDS == 60 * 24 * 3600


def test_work_of_no_set_length_gets_the_setting() -> None:
    options = RunOptions("c", sas_minutes=5)
    assert lifetime(0, options) == 300
    assert lifetime(100, options) == 100 + 1800


def test_access_counts_down_by_the_orchestrations_clock() -> None:
    start = datetime(2026, 11, 26, 1, tzinfo=UTC)
    access = Access("/s/snap", {"operation": {"kind": "grant"}}, start, 300)
    assert access.expires_at == start + timedelta(seconds=300)
    assert access.left(start + timedelta(seconds=225)) == 75
    assert access.left((start + timedelta(seconds=400)).replace(tzinfo=None)) == -100  # naive is UTC
    assert access.operation == {"kind": "grant"}


@pytest.mark.parametrize(
    ("message", "ended"),
    [
        ('copy failed: 403 AuthenticationFailed "Access to the copy source expired."', True),
        ('copy failed: 403 CannotVerifyCopySource "This request is not authorized."', True),
        ("copy failed: AuthenticationFailed: Signature not valid in the specified time frame", True),
        ('copy failed: 404 BlobNotFound "The specified blob does not exist."', False),
        ('copy failed: 500 InternalError "AuthenticationFailed somewhere later"', False),
        ("copy aborted: no description", False),
        ("copy failed: the source could not be read", False),
    ],
)
def test_only_a_copy_refused_by_its_source_is_one_a_new_grant_can_help(message: str, ended: bool) -> None:
    assert source_access_ended(message) is ended
