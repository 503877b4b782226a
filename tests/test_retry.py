"""backup/azure/retry.py: Retry-After parsing, the retry policy's delays, which statuses are retried."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from requests.structures import CaseInsensitiveDict

from backup.azure.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after, should_retry_status

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "17"}, 17.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"retry-after": "3"}, 3.0),  # header names are case-blind
        ({"RETRY-AFTER": "4"}, 4.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "NaN"}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),  # HTTP date, 30 s from NOW
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # in the past: come back now
        ({"Retry-After": "Wed, 21 Oct 2015 07:29:00 -0000"}, 60.0),  # no zone info: read as UTC
        ({"retry-after-ms": "1500"}, 1.5),
        ({"x-ms-retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "500", "Retry-After": "10"}, 0.5),  # milliseconds are more precise: they win
        ({"retry-after-ms": "500", "x-ms-retry-after-ms": "900"}, 0.5),
        ({"retry-after-ms": "junk", "x-ms-retry-after-ms": "900"}, 0.9),
        ({"retry-after-ms": "-5", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "junk", "Retry-After": "2"}, 2.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(CaseInsensitiveDict(headers), now=NOW) == expected


def test_parse_retry_after_defaults_now_to_the_clock() -> None:
    far = "Fri, 31 Dec 9999 23:59:59 GMT"
    assert parse_retry_after(CaseInsensitiveDict({"Retry-After": far})) > 1e9  # type: ignore[operator]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff": -1.0}, {"max_delay": -0.1}, {"max_server_delay": -1.0}],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 1.0, 0.5),  # first retry: the full backoff at most
        (1, 0.0, 0.25),  # ... and half of it at least (jitter between half and all)
        (2, 1.0, 1.0),  # doubling
        (3, 1.0, 2.0),
        (3, 0.5, 1.5),
        (4, 1.0, 4.0),
    ],
)
def test_backoff_doubles_with_jitter(attempt: int, rand: float, expected: float) -> None:
    policy = RetryPolicy(max_attempts=10, backoff=0.5, max_delay=20.0)
    assert policy.delay(attempt, None, rand=lambda: rand) == pytest.approx(expected)


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=50, backoff=1.0, max_delay=8.0)
    assert policy.delay(20, None, rand=lambda: 1.0) == 8.0
    assert policy.delay(20, None, rand=lambda: 0.0) == 4.0


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 3.0, 3.0),  # the server's hint is taken as is
        (1, 0.0, 0.0),
        (1, 30.0, 30.0),  # up to max_server_delay
        (1, 30.5, None),  # longer: give up here, let the orchestrator wait on a durable timer
        (4, 1.0, 1.0),
        (5, 1.0, None),  # attempts used up, whatever the hint
        (5, None, None),
        (6, None, None),
    ],
)
def test_server_hint_and_attempt_budget(
    attempt: int, retry_after: float | None, expected: float | None
) -> None:
    policy = RetryPolicy(max_attempts=5, max_server_delay=30.0)
    assert policy.delay(attempt, retry_after, rand=lambda: 1.0) == expected


def test_single_attempt_policy_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).delay(1, 0.0) is None


@pytest.mark.parametrize(
    ("status", "idempotent", "expected"),
    [
        (429, False, True),  # refused before any work: always safe to repeat
        (429, True, True),
        (503, True, True),
        (503, False, False),  # the work may have been done: only for idempotent requests
        (500, True, True),
        (502, True, True),
        (504, True, True),
        (408, True, True),
        (408, False, False),
        (400, True, False),
        (404, True, False),
        (409, True, False),
        (412, True, False),
        (501, True, False),
    ],
)
def test_should_retry_status(status: int, idempotent: bool, expected: bool) -> None:
    assert should_retry_status(status, idempotent=idempotent) is expected


def test_retryable_statuses() -> None:
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
