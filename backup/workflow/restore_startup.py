"""Starting a restore, a restore test or a prune: what the HTTP routes, the timers and the command line share.

Like :mod:`backup.workflow.startup` for runs, each door turns its own kind of request into the same
orchestration input through the functions here: pure functions of settings and values, no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from backup.azure.resource_id import parse_disk_id
from backup.errors import InvalidInputError
from backup.settings import Settings
from backup.workflow.models import ChainOptions, Selection, Trigger, iso, parse_iso
from backup.workflow.restore_models import (
    VERIFY_MODES,
    PruneInput,
    PruneOptions,
    RestoreInput,
    RestoreOptions,
    RestoreTarget,
    RestoreTestsInput,
    validate_point_run_id,
)
from backup.workflow.restore_plan import temporary_disk_name
from backup.workflow.startup import configured_selection

__all__ = [
    "new_prune_id",
    "new_restore_id",
    "prune_id_for_run",
    "prune_input",
    "restore_input",
    "restore_options",
    "restore_test_input",
    "restore_tests_id",
    "restore_tests_input",
]


def restore_options(settings: Settings) -> RestoreOptions:
    """A restore's options from settings (its batches and sampled verification as a night's)."""
    return RestoreOptions(
        container=settings.container,
        poll_initial_seconds=settings.poll_initial_seconds,
        poll_max_seconds=settings.poll_max_seconds,
        operation_timeout_minutes=settings.snapshot_timeout_minutes,
        chain=ChainOptions(
            verify_sample_mib=settings.verify_sample_mib,
            writes_per_blob=settings.writes_per_blob,
        ),
    )


def restore_input(
    settings: Settings,
    trigger: Trigger,
    *,
    disk_id: object,
    target: Mapping[str, Any],
    run_id: object = None,
    at: object = None,
    verify: object = "full",
    keep_on_failure: bool = False,
) -> RestoreInput:
    """A restore's input from a request's values, each checked (errors name the request's field:
    ``diskId``, ``runId``, ``at``, ``verify``, ``target.diskName``, ...).

    ``target``'s ``subscriptionId`` defaults to the app's subscription.
    """
    if (run_id is None) == (at is None):
        raise InvalidInputError("runId", "give exactly one of runId (a run's point) and at (a time)")
    if not isinstance(disk_id, str):
        raise InvalidInputError("diskId", "must be a disk resource ID")
    disk = str(parse_disk_id(disk_id, "diskId"))
    chosen_run = validate_point_run_id(run_id, "runId") if run_id is not None else None
    when = None
    if at is not None:
        if not isinstance(at, str):
            raise InvalidInputError("at", "must be an ISO 8601 time with its zone, e.g. 2026-11-27T03:00:00Z")
        when = iso(parse_iso(at, "at"))
    if verify not in VERIFY_MODES:
        raise InvalidInputError("verify", f"must be one of {', '.join(VERIFY_MODES)}")
    fields = dict(target)
    if fields.get("subscriptionId") is None:
        fields["subscriptionId"] = settings.subscription_id
    return RestoreInput(
        disk_id=disk,
        target=RestoreTarget.from_json(fields, "target"),
        options=restore_options(settings),
        run_id=chosen_run,
        at=when,
        verify=verify,
        purpose="restore",
        keep_on_failure=keep_on_failure,
        trigger=trigger,
    )


def restore_test_input(
    settings: Settings, trigger: Trigger, *, disk_id: str, run_id: str, restore_id: str, resource_group: str
) -> RestoreInput:
    """A restore test of one point: a temporary Standard HDD disk (in ``resource_group``, the source
    disk's region), verified in full, deleted afterwards."""
    target = RestoreTarget(
        settings.subscription_id, resource_group, temporary_disk_name(restore_id), sku="Standard_LRS"
    )
    return RestoreInput.from_json(
        {
            "diskId": disk_id,
            "runId": run_id,
            "target": target.to_json(),
            "verify": "full",
            "purpose": "test",
            "trigger": trigger,
            "options": restore_options(settings).to_json(),
        }
    )


def restore_tests_input(settings: Settings, trigger: Trigger) -> RestoreTestsInput:
    """The scheduled restore tests: the configured selection's disks, ``BACKUP_MAX_PARALLEL`` at a time."""
    return RestoreTestsInput(
        trigger=trigger,
        selection=configured_selection(settings),
        options=restore_options(settings),
        max_parallel=settings.max_parallel,
    )


def prune_input(
    settings: Settings,
    trigger: Trigger,
    selection: Selection | None = None,
    *,
    dry_run: bool = False,
    after_run_id: str | None = None,
) -> PruneInput:
    """A prune of the given (or the configured) selection under ``BACKUP_RETENTION``.

    A nightly prune waits for its run at most as long as the run's disks may take (the copy's deadline
    plus an hour a snapshot step), then prunes anyway.
    """
    return PruneInput(
        trigger=trigger,
        selection=selection if selection is not None else configured_selection(settings),
        policy=settings.retention.text(),
        options=PruneOptions(
            container=settings.container,
            poll_initial_seconds=max(settings.poll_max_seconds, 60),
            poll_max_seconds=max(settings.poll_max_seconds, 900),
            wait_minutes=settings.copy_timeout_minutes + 4 * settings.snapshot_timeout_minutes,
            max_parallel=settings.max_parallel,
        ),
        dry_run=dry_run,
        after_run_id=after_run_id,
    )


def new_restore_id(now: datetime) -> str:
    """A restore's instance id: sortable by time, unique by a random suffix (also the disk's tag)."""
    return f"restore-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def new_prune_id(now: datetime) -> str:
    """An on-demand prune's instance id."""
    return f"prune-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def prune_id_for_run(run_id: str) -> str:
    """The one prune that follows run ``run_id``."""
    if not run_id:
        raise InvalidInputError("run id", "must not be empty")
    return f"{run_id}-prune"


def restore_tests_id(occurrence: datetime) -> str:
    """The instance id of the scheduled restore tests of one occurrence of ``BACKUP_VERIFY_SCHEDULE``."""
    return f"restore-tests-{occurrence.astimezone(UTC):%Y%m%dT%H%M%SZ}"
