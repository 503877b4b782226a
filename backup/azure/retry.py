"""When to retry an HTTP request and how long to wait first: pure functions of a response's data.

Azure asks clients to come back later in three ways: ``Retry-After`` (whole seconds, or an HTTP date),
``retry-after-ms`` and ``x-ms-retry-after-ms`` (milliseconds). Without any of them the delay is a jittered
exponential backoff. Every delay is capped, and so is the number of attempts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: Statuses that mean "the service could not take this now", worth another try.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait, or ``None`` when it does not say.

    ``headers`` must be case-insensitive (``requests``' headers are). The millisecond headers win over
    ``Retry-After`` because they are more precise. A date in the past, a negative or unparseable value
    counts as "not said" for that header.
    """
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value is not None:
            try:
                millis = float(value.strip())
            except ValueError:
                continue
            if millis >= 0:
                return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, backoff and caps.

    ``max_attempts`` counts the first try. ``backoff`` is the first delay without a server hint; each
    further one doubles, with full jitter between half and all of it, capped at ``max_delay``. A server
    hint longer than ``max_server_delay`` is not waited for here: the caller gets the error (with its
    ``retry_after``) and an orchestrator can wait on a durable timer instead of a thread sleeping.
    """

    max_attempts: int = 5
    backoff: float = 0.5
    max_delay: float = 20.0
    max_server_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 0 or self.max_delay < 0 or self.max_server_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(
        self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to stop retrying.

        ``attempt`` is the number of attempts made so far (1 after the first try).
        """
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_server_delay else None
        ceiling = min(self.max_delay, self.backoff * (2 ** (attempt - 1)))
        return ceiling * (0.5 + 0.5 * rand())


def should_retry_status(status: int, *, idempotent: bool) -> bool:
    """Whether an error status is worth another try for this request.

    429 means the request was refused before any work, so it is retried whatever the verb. A server
    error may come after the work was done; it is retried only for requests that are safe to repeat.
    """
    if status == 429:
        return True
    return idempotent and status in RETRYABLE_STATUSES
