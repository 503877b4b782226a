"""The nightly timer's starter: one run per schedule occurrence, however often the timer fires for it."""

from __future__ import annotations

from datetime import datetime

import azure.durable_functions as df

from backup.errors import DiskBackupError
from backup.redact import get_logger, redact
from backup.schedule import occurrence_for_timer, occurrence_instance_id
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR
from backup.workflow.startup import run_input

log = get_logger(__name__)


async def start_scheduled_run(
    client: df.DurableOrchestrationClient, settings: Settings, fired_at: datetime
) -> tuple[str, bool]:
    """Start the run of the occurrence a timer firing at ``fired_at`` serves, unless it already exists.

    Returns ``(instance_id, started)``. An occurrence whose run is going or finished (in any state) is
    not started again: one run per occurrence, however often the timer fires for it.
    """
    occurrence = occurrence_for_timer(settings.schedule, fired_at)
    instance_id = occurrence_instance_id(occurrence)
    existing = await client.get_status(instance_id)
    if existing:
        runtime = getattr(existing.runtime_status, "value", existing.runtime_status)
        log.info("run %s for %s exists (%s); not starting it again", instance_id, occurrence, runtime)
        return instance_id, False
    run = run_input(settings, "schedule")
    try:
        await client.start_new(RUN_ORCHESTRATOR, instance_id, run.to_json())
    except Exception as exc:
        # Two firings racing past the check: the loser's start is refused; the run exists either way.
        if await client.get_status(instance_id):
            log.info(
                "run %s was started concurrently; not starting it again (%s)", instance_id, redact(str(exc))
            )
            return instance_id, False
        raise DiskBackupError(f"could not start run {instance_id}: {exc}") from None
    log.info("started scheduled run %s for %s", instance_id, occurrence)
    return instance_id, True
