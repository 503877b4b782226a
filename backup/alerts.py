"""Alerts: a short JSON summary to a webhook when a night went wrong.

``BACKUP_ALERT_WEBHOOK`` (an HTTPS URL: a Teams or Slack incoming webhook, or any endpoint that takes a
JSON POST) receives one message when a run ends other than ``Succeeded``, or when a disk has had no good
restore point for more than ``BACKUP_ALERT_STALE_HOURS``. The message carries ``text`` (what Teams and
Slack show) and the same facts as fields for any other receiver.

Deciding (:func:`build_alert`, :func:`stale_disks`) is pure. Sending (:func:`send_alert`) is bounded: a
few attempts with short timeouts, so it never holds a run up for long, and a failure to alert is reported
on the run, never a failure of it. A webhook URL is a secret (whoever holds it can post), so it is shown
only as ``https://host/…`` and registered with :mod:`backup.redact`, which keeps it out of every log line
and error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from backup.errors import DiskBackupError, InvalidInputError
from backup.redact import add_url_secret, get_logger, redact
from backup.workflow.models import RunSummary

log = get_logger(__name__)

#: How long one attempt may take (connect, read), and how many attempts a message gets.
ATTEMPT_TIMEOUT = (5.0, 10.0)
ATTEMPTS = 3
#: At most this many disks are listed by name in one message (the counts stay exact).
MAX_LISTED = 20


class AlertError(DiskBackupError):
    """The webhook did not take the alert after every attempt. Not retryable here: the next run alerts."""

    failure_code = "BackendUnavailable"  # shown so (backup.failures), with this message


def webhook_display(url: str) -> str:
    """How a webhook URL may be shown: its scheme and host only (the path is the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


@dataclass(frozen=True)
class StaleDisk:
    """A disk whose newest good restore point is older than the threshold (or that has none)."""

    disk_id: str
    last_good_at: datetime | None

    def hours_since(self, now: datetime) -> float | None:
        """Hours since its last good point (``None`` if it never had one)."""
        if self.last_good_at is None:
            return None
        return (now - self.last_good_at).total_seconds() / 3600


def stale_disks(last_good: Mapping[str, datetime | None], now: datetime, stale_hours: int) -> list[StaleDisk]:
    """The disks (of ``last_good``: disk id → newest good point, or None) past ``stale_hours``."""
    limit = now - timedelta(hours=stale_hours)
    return [
        StaleDisk(disk_id, when)
        for disk_id, when in sorted(last_good.items())
        if when is None or when < limit
    ]


def build_alert(summary: RunSummary, stale: Sequence[StaleDisk], now: datetime) -> dict[str, Any] | None:
    """The message for a finished run, or ``None`` when there is nothing to say.

    Something to say: the run ended other than Succeeded, or a disk is stale.
    """
    if summary.status == "Succeeded" and not stale:
        return None
    failed = [disk for disk in summary.disks if disk.status == "Failed"]
    headline = f"diskbackup: run {summary.run_id} {summary.status}"
    if summary.disk_count:
        headline += f" — {len(failed)} of {summary.disk_count} disks failed"
    elif summary.reason:
        headline += f" — {summary.reason}"
    if stale:
        headline += f"; {len(stale)} disk{'s' if len(stale) != 1 else ''} without a recent good restore point"
    lines = [headline]
    lines += [f"- {disk.disk_name}: {disk.reason or 'failed'}" for disk in failed[:MAX_LISTED]]
    if len(failed) > MAX_LISTED:
        lines.append(f"- … and {len(failed) - MAX_LISTED} more")
    for disk in stale[:MAX_LISTED]:
        hours = disk.hours_since(now)
        since = "never backed up" if hours is None else f"last good restore point {hours:.0f} h ago"
        lines.append(f"- {disk.disk_id.rsplit('/', 1)[-1]}: {since}")
    return {
        "text": redact("\n".join(lines)),
        "runId": summary.run_id,
        "status": summary.status,
        "startedAt": summary.started_at,
        "finishedAt": summary.finished_at,
        "diskCount": summary.disk_count,
        "failedCount": len(failed),
        "failed": [
            {"diskId": d.disk_id, "diskName": d.disk_name, "phase": d.phase, "reason": redact(d.reason or "")}
            for d in failed[:MAX_LISTED]
        ],
        "staleCount": len(stale),
        "stale": [
            {
                "diskId": d.disk_id,
                "lastGoodAt": d.last_good_at.isoformat().replace("+00:00", "Z") if d.last_good_at else None,
            }
            for d in stale[:MAX_LISTED]
        ],
    }


def send_alert(
    url: str,
    message: Mapping[str, Any],
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``message`` to the webhook; retry a few times on 429/5xx and lost connections.

    Returns the number of attempts it took. Raises :class:`AlertError` (naming the webhook only by host)
    when every attempt failed, or at once for an answer that will not change (4xx other than 429).
    """
    if not isinstance(url, str) or urlsplit(url).scheme not in ("https", "http"):
        raise InvalidInputError("webhook", "must be an https URL")
    add_url_secret(url)
    shown = webhook_display(url)
    body = json.dumps(message).encode()
    http = session or requests.Session()
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = http.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=ATTEMPT_TIMEOUT,
                allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"no answer ({type(exc).__name__})"
        else:
            status = response.status_code
            response.close()
            if 200 <= status < 300:
                log.info("alert sent to %s (attempt %d)", shown, attempt)
                return attempt
            problem = f"HTTP {status}"
            if status != 429 and status < 500:
                break
        if attempt < ATTEMPTS:
            log.warning("alert to %s: %s; trying again", shown, problem)
            sleep(float(2 ** (attempt - 1)))
    raise AlertError(f"the alert webhook {shown} did not take the alert: {problem}")
