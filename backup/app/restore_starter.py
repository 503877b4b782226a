"""What the timers start besides the nightly run: its prune, and the scheduled restore tests.

Each is one instance per occurrence (its id fixed by the run or the occurrence), started only if it does
not exist, so a timer that fires twice, or late, never starts a second one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import azure.durable_functions as df

from backup.errors import DiskBackupError
from backup.redact import get_logger, redact
from backup.schedule import occurrence_for_timer
from backup.settings import Settings
from backup.workflow.restore_models import PRUNE_ORCHESTRATOR, RESTORE_TESTS_ORCHESTRATOR
from backup.workflow.restore_startup import (
    prune_id_for_run,
    prune_input,
    restore_tests_id,
    restore_tests_input,
)

log = get_logger(__name__)


async def start_prune_after_run(
    client: df.DurableOrchestrationClient, settings: Settings, run_id: str
) -> tuple[str, bool]:
    """Start the prune that follows run ``run_id`` (it waits for the run to end), unless it exists.

    Its own instance, so a slow prune never holds a backup up. Returns ``(instance_id, started)``.
    """
    instance_id = prune_id_for_run(run_id)
    payload = prune_input(settings, "schedule", after_run_id=run_id).to_json()
    return await _start_once(client, PRUNE_ORCHESTRATOR, instance_id, payload)


async def start_scheduled_restore_tests(
    client: df.DurableOrchestrationClient, settings: Settings, fired_at: datetime
) -> tuple[str, bool]:
    """Start the restore tests of the ``BACKUP_VERIFY_SCHEDULE`` occurrence a timer firing at ``fired_at``
    serves, unless they exist. Returns ``(instance_id, started)``."""
    if settings.verify_schedule is None:
        raise DiskBackupError("BACKUP_VERIFY_SCHEDULE is not set: there is no restore-test schedule")
    instance_id = restore_tests_id(occurrence_for_timer(settings.verify_schedule, fired_at))
    payload = restore_tests_input(settings, "schedule").to_json()
    return await _start_once(client, RESTORE_TESTS_ORCHESTRATOR, instance_id, payload)


async def _start_once(
    client: df.DurableOrchestrationClient, orchestrator: str, instance_id: str, payload: Any
) -> tuple[str, bool]:
    if await client.get_status(instance_id):
        log.info("%s exists; not starting it again", instance_id)
        return instance_id, False
    try:
        await client.start_new(orchestrator, instance_id, payload)
    except Exception as exc:
        # Two firings racing past the check: the loser's start is refused; the instance exists either way.
        if await client.get_status(instance_id):
            log.info("%s was started concurrently (%s)", instance_id, redact(str(exc)))
            return instance_id, False
        raise DiskBackupError(f"could not start {instance_id}: {exc}") from None
    log.info("started %s", instance_id)
    return instance_id, True
