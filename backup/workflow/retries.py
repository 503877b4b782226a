"""Calling an idempotent activity again after a transient failure: bounded, backing off, on durable timers.

The transport retries each HTTP request a few times within seconds (:mod:`backup.azure.transport`). A
burst of 5xx answers, resets or lost answers that outlasts those retries fails the activity. When the
activity is safe to run again (every activity says so in its docstring, and why), the orchestrator calls
it again after a durable timer: the first retry after ``firstSeconds``, each later one after twice the
last, at most ``maxSeconds``, at most ``attempts`` calls in all, and never a retry that would start past
the phase's deadline. So a bad minute costs a disk time, not its backup.

Only failures whose code says that trying again may help are retried (``Throttled`` and
``BackendUnavailable``: :attr:`backup.failures.FailureCode.retryable`). A throttled failure that said when
to come back (``Retry-After``, longer than the transport waits by itself) is not retried sooner, up to
:data:`MAX_HONOURED_RETRY_AFTER`. Anything else — a 4xx that will
not change, an operation that ended ``Failed``, a copy that failed, a verification — fails at once with
its reason, as before.

Why not the SDK's ``call_activity_with_retry``: Python's ``RetryOptions`` has a constant delay (no
backoff coefficient), and it retries every failure, a 403 as much as a 503.

History stays bounded: a retry adds its timer and the call again (about eight events), at most
``attempts - 1`` times per call.

    delays with the defaults (6 attempts, 5 s doubling to 60 s):  5, 10, 20, 40, 60  -> 135 s in all
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase

from backup.errors import InvalidInputError
from backup.failures import failure_of, retry_after_of
from backup.redact import get_logger

__all__ = ["ActivityRetry", "call_activity"]

log = get_logger(__name__)

Orchestration = Generator[Any, Any, Any]

#: The longest ``Retry-After`` a retry waits for (a longer one is cut to this).
MAX_HONOURED_RETRY_AFTER = 900.0


@dataclass(frozen=True)
class ActivityRetry:
    """How an orchestrator retries an idempotent activity that failed transiently (module docstring)."""

    attempts: int = 6  # calls in all, the first included
    first_seconds: int = 5  # the wait before the first retry
    max_seconds: int = 60  # no wait longer than this

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 20:
            raise InvalidInputError("retry.attempts", "must be a whole number from 1 to 20")
        if not 1 <= self.first_seconds <= self.max_seconds <= 3600:
            raise InvalidInputError(
                "retry", "firstSeconds and maxSeconds must satisfy 1 <= firstSeconds <= maxSeconds <= 3600"
            )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        return float(min(self.first_seconds * 2 ** (retry - 1), self.max_seconds))

    @property
    def total_seconds(self) -> float:
        """The longest a call can spend waiting between its attempts."""
        return sum(self.delay(retry) for retry in range(1, self.attempts))

    def to_json(self) -> dict[str, int]:
        """The JSON form carried in a run's options."""
        return {"attempts": self.attempts, "firstSeconds": self.first_seconds, "maxSeconds": self.max_seconds}

    @classmethod
    def from_json(cls, data: Any) -> ActivityRetry:
        """Rebuild and validate; ``None`` (a run started before retries existed) gives the defaults."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidInputError("options.retry", "must be a JSON object")
        default = cls()
        values = {}
        for key, fallback in (
            ("attempts", default.attempts),
            ("firstSeconds", default.first_seconds),
            ("maxSeconds", default.max_seconds),
        ):
            value = data.get(key, fallback)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(f"options.retry.{key}", "must be a whole number")
            values[key] = value
        return cls(values["attempts"], values["firstSeconds"], values["maxSeconds"])


def call_activity(
    context: df.DurableOrchestrationContext,
    name: str,
    data: Any,
    retry: ActivityRetry,
    *,
    deadline: datetime | None = None,
    first: TaskBase | None = None,
) -> Orchestration:
    """Call activity ``name`` with ``data``; if it fails with a retryable code, call it again after a
    durable timer (see :class:`ActivityRetry`), unless that would start past ``deadline``.

    Only for activities that are safe to run twice with the same input. The last failure is raised as
    it came (the caller reads it with :func:`backup.failures.failure_of`).

    ``first`` is this call's first attempt when the caller has scheduled it already, as one task of a
    ``task_all`` fan-out: its outcome (waited for here if it has not come yet) counts as the first
    attempt, and nothing is scheduled again for it. The SDK resumes an orchestrator that yields a task a
    second time with that task's own outcome, so after a ``task_all`` failed on its first failed task,
    each task's outcome can still be read, and only the failed ones called again.
    """
    attempt = 1
    while True:
        try:
            task = first if first is not None and attempt == 1 else context.call_activity(name, data)
            return (yield task)
        except Exception as exc:
            failure = failure_of(exc)
            if not failure.code.retryable or attempt >= retry.attempts:
                raise
            asked = min(retry_after_of(failure) or 0.0, MAX_HONOURED_RETRY_AFTER)
            delay = max(retry.delay(attempt), asked)
            fire_at = _utc(context.current_utc_datetime) + timedelta(seconds=delay)
            if deadline is not None and fire_at > _utc(deadline):
                raise
            if not context.is_replaying:
                log.warning(
                    "%s failed (%s: %s); attempt %d of %d in %.0f s",
                    name,
                    failure.code.value,
                    failure.message,
                    attempt + 1,
                    retry.attempts,
                    delay,
                )
        yield context.create_timer(fire_at)
        attempt += 1


def _utc(when: datetime) -> datetime:
    # The SDK hands out UTC datetimes, aware or naive depending on how the host wrote the timestamp.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
