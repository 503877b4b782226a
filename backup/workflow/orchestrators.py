"""The three orchestrators: a run fans out over lanes, a lane backs its disks up one after another, and a
disk goes snapshot → access → copy → verify → revoke → record.

Orchestrators are replayed from history many times, so they are deterministic: time comes from
``context.current_utc_datetime``, every Azure call is an activity, and every wait is a durable timer
(never a sleep). Neither reads settings: the run's input carries every knob (:class:`RunOptions`).

Waiting follows the monitor pattern: an activity makes one check, the orchestrator waits on a timer that
starts at ``pollInitialSeconds`` and doubles up to ``pollMaxSeconds`` (never shorter than a
``Retry-After`` the service asked for), and gives up with a clear reason at a deadline.

No secret ever enters an orchestration: the grant-access operation's state carries only its polling URL,
and the activity that starts the copy fetches the SAS from that operation itself.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from backup.errors import DeadlineExceededError, InvalidInputError
from backup.failures import Failure, FailureCode, failure_of, for_phase
from backup.workflow import activity_names as act
from backup.workflow.models import (
    DISK_ORCHESTRATOR,
    LANE_ORCHESTRATOR,
    DiskJob,
    DiskRef,
    DiskResult,
    DiskStatus,
    RestorePointRecord,
    RunInput,
    RunOptions,
    RunSummary,
    iso,
    lane_id,
    run_status,
    sub_orchestration_id,
)

Orchestration = Generator[Any, Any, Any]


# -- the run ------------------------------------------------------------------------------------------


def backup_run(context: df.DurableOrchestrationContext) -> Orchestration:
    """Back up every selected disk, at most ``maxParallel`` at a time; a failing disk fails only itself.

    The bound is kept by *lanes*: ``maxParallel`` lane sub-orchestrations under one ``task_all``, each
    backing up its share of the disks one after another. (A sliding window of ``task_any`` over running
    children does not keep N in flight: the Functions host awaits each new ``WhenAny`` action on the
    newly started child alone, so after the first wave a run degrades to one disk at a time.)
    """
    run = RunInput.from_json(context.get_input())
    started = RunSummary(
        run_id=context.instance_id,
        trigger=run.trigger,
        selection=run.selection,
        started_at=iso(context.current_utc_datetime),
        status="Running",
    )
    context.set_custom_status({"phase": "resolving"})
    try:
        found = yield context.call_activity(act.RESOLVE_SELECTION, run.selection.to_json())
        disks = [DiskRef.from_json(d) for d in found]
    except Exception as exc:
        return (yield from _fail_run(context, started, failure_of(exc), "selecting the disks"))

    total = len(disks)
    try:
        yield context.call_activity(act.RECORD_RUN, replace(started, disk_count=total).to_json())
    except Exception as exc:
        # Nothing is started when the catalog cannot take the run's row: every restore point would go
        # unrecorded. The run ends at once, with the reason.
        failed = replace(started, disk_count=total)
        return (yield from _fail_run(context, failed, failure_of(exc), "recording the run in the catalog"))
    lanes = min(run.options.max_parallel, total)
    context.set_custom_status({"phase": "backing up", "disks": total, "lanes": lanes})
    jobs = [
        DiskJob(started.run_id, started.started_at, index, disk, run.options).to_json()
        for index, disk in enumerate(disks)
    ]
    lane_tasks = [
        context.call_sub_orchestrator(
            LANE_ORCHESTRATOR, {"jobs": jobs[lane::lanes]}, lane_id(started.run_id, lane)
        )
        for lane in range(lanes)
    ]
    results: dict[int, DiskResult] = {}
    if lane_tasks:
        lane_outputs = yield context.task_all(lane_tasks)
        for lane, output in enumerate(lane_outputs):
            for offset, outcome in enumerate(output):
                index = lane + offset * lanes
                results[index] = _result_from_json(outcome, disks[index])

    ordered = tuple(results[i] for i in range(total))
    succeeded = sum(1 for r in ordered if r.status == "Succeeded")
    summary = replace(
        started,
        status=run_status(list(ordered)) if ordered else "Succeeded",
        finished_at=iso(context.current_utc_datetime),
        disk_count=total,
        succeeded=succeeded,
        failed=total - succeeded,
        disks=ordered,
        reason=None if ordered else "the selection matched no disks",
    )
    summary = yield from _record_run(context, summary)
    summary = yield from _alert(context, summary)
    context.set_custom_status(
        {"phase": "done", "disks": total, "succeeded": succeeded, "failed": total - succeeded}
    )
    return summary.to_json()


def _fail_run(
    context: df.DurableOrchestrationContext, started: RunSummary, failure: Failure, doing: str
) -> Orchestration:
    """End a run that failed before any disk was backed up: status Failed, with a code and a reason."""
    reason = f"{doing}: {failure.message}"
    failed = replace(
        started,
        status="Failed",
        finished_at=iso(context.current_utc_datetime),
        code=failure.code.value,
        reason=reason,
    )
    context.set_custom_status({"phase": "failed", "code": failure.code.value, "reason": reason})
    failed = yield from _record_run(context, failed)
    return (yield from _alert(context, failed)).to_json()


def _record_run(context: df.DurableOrchestrationContext, summary: RunSummary) -> Orchestration:
    """Write the run's final catalog row; if that fails, the run's result still stands (its restore
    points were recorded disk by disk) and says so in ``warnings``. Answers the summary to return."""
    try:
        yield context.call_activity(act.RECORD_RUN, summary.to_json())
    except Exception as exc:
        return replace(summary, warnings=(f"run not recorded in the catalog: {failure_reason(exc)}",))
    return summary


def _alert(context: df.DurableOrchestrationContext, summary: RunSummary) -> Orchestration:
    """Tell the alert webhook (if one is set) about a run that went wrong; a failure to alert is a warning
    on the run, never its failure. Answers the summary to return."""
    try:
        alert = {"summary": summary.to_json(), "asOf": iso(context.current_utc_datetime)}
        yield context.call_activity(act.SEND_RUN_ALERT, alert)
    except Exception as exc:
        return replace(summary, warnings=(*summary.warnings, f"alert not sent: {failure_reason(exc)}"))
    return summary


def backup_lane(context: df.DurableOrchestrationContext) -> Orchestration:
    """One lane of a run: its share of the disks, one disk sub-orchestration after another.

    Never fails: a disk orchestration that fails outright (a bug, a platform failure) becomes a failed
    result for that disk, and the lane goes on with the next. Its custom status counts its disks
    (:func:`lane_status`), so a run's progress is read from its few lanes, not from every disk.
    """
    data = context.get_input()
    jobs = [DiskJob.from_json(job) for job in (data or {}).get("jobs", [])]
    outputs: list[dict[str, Any]] = []
    context.set_custom_status(lane_status(len(jobs), []))
    for job in jobs:
        try:
            outcome = yield context.call_sub_orchestrator(
                DISK_ORCHESTRATOR, job.to_json(), sub_orchestration_id(job.run_id, job.index)
            )
            outputs.append(_result_from_json(outcome, job.disk).to_json())
        except Exception as exc:
            failure = failure_of(exc)
            failed = DiskResult.failed(job.disk, "unknown", failure.message, failure.code.value)
            outputs.append(failed.to_json())
        context.set_custom_status(lane_status(len(jobs), outputs))
    return outputs


def lane_status(jobs: int, outputs: list[dict[str, Any]]) -> dict[str, int]:
    """A lane's custom status: how many disks it has, and how many of them succeeded or failed."""
    succeeded = sum(1 for output in outputs if output.get("status") == "Succeeded")
    return {"disks": jobs, "succeeded": succeeded, "failed": len(outputs) - succeeded}


# -- one disk -----------------------------------------------------------------------------------------


def backup_disk(context: df.DurableOrchestrationContext) -> Orchestration:
    """Back up one disk; always returns a :class:`DiskResult` (as JSON), never raises for a failure."""
    job = DiskJob.from_json(context.get_input())
    options = job.options
    disk = job.disk
    status = DiskStatus(disk=disk.name, phase="snapshot", bytes_total=disk.size_bytes)

    def phase(name: str, **changes: Any) -> None:
        nonlocal status
        status = replace(status, phase=name, **changes)
        context.set_custom_status(status.to_json())

    snapshot_id: str | None = None
    access_granted = False
    copy: dict[str, Any] | None = None
    blob = {"container": options.container, "blobName": backup_blob_name(job)}
    warnings: list[str] = []
    started_at = iso(context.current_utc_datetime)
    try:
        # 1. Snapshot, point in time.
        phase("snapshot")
        deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
        op = yield context.call_activity(
            act.BEGIN_SNAPSHOT,
            {"runId": job.run_id, "disk": disk.to_json(), "incremental": options.incremental_snapshot},
        )
        snapshot_id = op["snapshotId"]
        op = yield from _wait_for_operation(context, op, deadline, options, "snapshot creation")
        yield from _wait_for_snapshot_ready(context, disk, snapshot_id, options, phase)

        # 2. Read access; the SAS stays inside the operation, out of this history.
        phase("grant")
        access_granted = True  # from here on, revoke: endGetAccess is harmless if nothing was granted
        op = yield context.call_activity(
            act.BEGIN_GRANT_ACCESS,
            {"snapshotId": snapshot_id, "durationSeconds": options.sas_duration_seconds},
        )
        op = yield from _wait_for_operation(context, op, deadline, options, "access grant")

        # 3. Copy into the backup account, and watch it.
        phase("copy")
        copy = yield context.call_activity(
            act.START_COPY,
            {
                **blob,
                "snapshotId": snapshot_id,
                "grant": op["operation"],
                "metadata": {"runId": job.run_id, "diskId": disk.id, "snapshotId": snapshot_id},
            },
        )
        copy = yield from _wait_for_copy(context, copy, blob, options, phase)

        # 4. Verify what arrived.
        phase("verify", bytes_copied=copy["copied"])
        verified = yield context.call_activity(
            act.VERIFY_BACKUP, {**blob, "copyId": copy["copyId"], "expectedSize": disk.size_bytes}
        )

        # 5. Revoke, now that the copy no longer needs the source.
        phase("revoke")
        yield from _revoke(context, snapshot_id, options)
        access_granted = False

        # 6. Record the restore point, then drop the snapshot unless told to keep it.
        phase("record")
        restore_point = replace(
            _restore_point(job, snapshot_id, blob["blobName"], started_at, context, copy),
            status="Succeeded",
            size_bytes=verified["diskBytes"],
        )
        recorded = yield context.call_activity(act.RECORD_RESTORE_POINT, restore_point.to_json())
        if not options.keep_snapshot:
            phase("cleanup")
            try:
                yield from _delete_snapshot(context, snapshot_id, options)
            except Exception as exc:  # the backup stands; a leftover snapshot is only a cost
                warnings.append(f"snapshot not deleted: {failure_reason(exc)}")
        phase("done")
        return DiskResult(
            disk.id,
            disk.name,
            "Succeeded",
            "done",
            snapshot_id=snapshot_id,
            blob_url=recorded["blobUrl"],
            size_bytes=verified["diskBytes"],
            bytes_copied=copy["copied"],
            warnings=tuple(warnings),
        ).to_json()
    except Exception as exc:
        failed_phase = status.phase
        failure = for_phase(failure_of(exc), failed_phase)
        reason = f"{failed_phase}: {failure.message}"
        if access_granted and snapshot_id is not None:
            phase("revoke")
            try:
                yield from _revoke(context, snapshot_id, options)
            except Exception as revoke_exc:
                reason += f"; revoking access also failed: {failure_reason(revoke_exc)}"
        phase("record")
        try:
            failed_point = _restore_point(job, snapshot_id, blob["blobName"], started_at, context, copy)
            yield context.call_activity(
                act.RECORD_RESTORE_POINT,
                replace(failed_point, reason=reason, code=failure.code.value).to_json(),
            )
        except Exception as record_exc:
            warnings.append(f"failure not recorded in the catalog: {failure_reason(record_exc)}")
        if snapshot_id is not None and not options.keep_snapshot:
            phase("cleanup")
            try:
                yield from _delete_snapshot(context, snapshot_id, options)
            except Exception as delete_exc:
                warnings.append(f"snapshot not deleted: {failure_reason(delete_exc)}")
        phase("failed", reason=reason)
        return DiskResult(
            disk.id,
            disk.name,
            "Failed",
            failed_phase,
            reason=reason,
            snapshot_id=snapshot_id,
            warnings=tuple(warnings),
            code=failure.code.value,
        ).to_json()


# -- waiting ------------------------------------------------------------------------------------------


def next_delay(
    previous: float | None, options_initial: int, options_max: int, retry_after: float | None
) -> float:
    """Seconds to wait before the next poll: doubling from the initial delay to the cap, never less than
    what the service asked for (``Retry-After``)."""
    delay = float(options_initial) if previous is None else min(previous * 2, float(options_max))
    if retry_after is not None and retry_after > delay:
        delay = float(retry_after)
    return delay


def _wait_for_operation(
    context: df.DurableOrchestrationContext,
    op: dict[str, Any],
    deadline: datetime,
    options: RunOptions,
    what: str,
) -> Orchestration:
    """Poll an ARM operation (through the ``poll_operation`` activity) until it succeeded.

    ``op`` is an activity's answer (:mod:`backup.workflow.activity_names` describes it). A failed or
    canceled operation makes the activity raise, which fails this wait with the operation's error. A
    begin activity that was throttled answers ``Throttled`` with the call to repeat after the wait.
    """
    delay: float | None = None
    while op["state"] != "Succeeded":
        delay = next_delay(
            delay, options.poll_initial_seconds, options.poll_max_seconds, op.get("retryAfter")
        )
        yield from _sleep(context, delay, deadline, what)
        if op["state"] == "Throttled":
            op = yield context.call_activity(op["retry"]["activity"], op["retry"]["input"])
        else:
            op = yield context.call_activity(act.POLL_OPERATION, {"operation": op["operation"]})
    return op


def _wait_for_snapshot_ready(
    context: df.DurableOrchestrationContext,
    disk: DiskRef,
    snapshot_id: str,
    options: RunOptions,
    phase: Callable[..., None],
) -> Orchestration:
    """Wait until a Premium SSD v2 / Ultra snapshot has finished its background copy (phase
    ``snapshot-copy``, its percent in the disk's status): Azure grants no access to it before.

    Snapshots of the other SKUs are readable as soon as they exist, so for them nothing is asked. The
    deadline (``snapshotCopyTimeoutMinutes``) runs from the start of this wait.
    """
    if not disk.snapshot_may_copy_in_background:
        return
    phase("snapshot-copy")
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_copy_timeout_minutes)
    delay: float | None = None
    while True:
        state = yield context.call_activity(act.SNAPSHOT_READINESS, {"snapshotId": snapshot_id})
        percent = state.get("completionPercent")
        if state["ready"]:
            if delay is not None:  # it was waited for: the status keeps how that wait ended
                phase("snapshot-copy", snapshot_copy_percent=percent)
            return
        phase("snapshot-copy", snapshot_copy_percent=percent)
        delay = next_delay(
            delay, options.poll_initial_seconds, options.poll_max_seconds, state.get("retryAfter")
        )
        progress = "no progress reported" if percent is None else f"at {percent:g}%"
        access = state.get("accessState")
        yield from _sleep(
            context,
            delay,
            deadline,
            f"the snapshot's background copy ({progress}" + (f", {access})" if access else ")"),
        )


def _wait_for_copy(
    context: df.DurableOrchestrationContext,
    copy: dict[str, Any],
    blob: dict[str, str],
    options: RunOptions,
    phase: Callable[..., None],
) -> Orchestration:
    """Poll the copy (HEAD of the destination blob) until it succeeded; report progress as we go."""
    deadline = context.current_utc_datetime + timedelta(minutes=options.copy_timeout_minutes)
    delay: float | None = None
    while copy["status"] != "success":
        phase("copy", bytes_copied=copy["copied"], bytes_total=copy["total"])
        delay = next_delay(delay, options.poll_initial_seconds, options.poll_max_seconds, None)
        yield from _sleep(context, delay, deadline, f"copy (at {copy['copied']} of {copy['total']} bytes)")
        copy = yield context.call_activity(act.COPY_STATUS, {**blob, "copyId": copy["copyId"]})
    return copy


def _revoke(context: df.DurableOrchestrationContext, snapshot_id: str, options: RunOptions) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
    op = yield context.call_activity(act.BEGIN_REVOKE_ACCESS, {"snapshotId": snapshot_id})
    yield from _wait_for_operation(context, op, deadline, options, "access revocation")


def _delete_snapshot(
    context: df.DurableOrchestrationContext, snapshot_id: str, options: RunOptions
) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
    op = yield context.call_activity(act.BEGIN_DELETE_SNAPSHOT, {"snapshotId": snapshot_id})
    yield from _wait_for_operation(context, op, deadline, options, "snapshot deletion")


def _sleep(
    context: df.DurableOrchestrationContext, seconds: float, deadline: datetime, what: str
) -> Orchestration:
    """Wait ``seconds``, but not past ``deadline``: the last poll happens at the deadline itself, and
    only a wait that would start at or after it fails."""
    now = context.current_utc_datetime
    if now >= deadline:
        raise DeadlineExceededError(f"{what} did not finish by its deadline ({iso(deadline)})")
    yield context.create_timer(min(now + timedelta(seconds=seconds), deadline))


# -- small pure parts ---------------------------------------------------------------------------------


def backup_blob_name(job: DiskJob) -> str:
    """Where a disk's backup goes in the container: by disk, then by run time, unique per run.

    ``{subscription}/{resource group}/{disk}/{run start, UTC}-{run id}.vhd``, lower-cased (ARM names are
    case-insensitive), so a disk's backups list together and in time order.
    """
    stamp = job.run_started_at.replace("-", "").replace(":", "").split(".")[0].rstrip("Z") + "Z"
    disk = job.disk
    return f"{disk.subscription_id}/{disk.resource_group}/{disk.name}/{stamp}-{job.run_id}.vhd".lower()


def failure_reason(error: object) -> str:
    """A one-line message for a person from whatever an activity or sub-orchestration failed with
    (:func:`backup.failures.failure_of`: no class or activity names, no stack trace, no secret)."""
    return failure_of(error).message


def _restore_point(
    job: DiskJob,
    snapshot_id: str | None,
    blob_name: str,
    started_at: str,
    context: df.DurableOrchestrationContext,
    copy: dict[str, Any] | None,
) -> RestorePointRecord:
    """The catalog's record of this disk in this run, as far as it got (a failure until told otherwise)."""
    return RestorePointRecord(
        run_id=job.run_id,
        run_started_at=job.run_started_at,
        disk_id=job.disk.id,
        snapshot_id=snapshot_id,
        container=job.options.container,
        blob_name=blob_name,
        size_bytes=job.disk.size_bytes,
        bytes_copied=(copy or {}).get("copied", 0),
        kind="full",
        started_at=started_at,
        finished_at=iso(context.current_utc_datetime),
        copy_id=(copy or {}).get("copyId"),
        status="Failed",
    )


def _result_from_json(data: Any, disk: DiskRef) -> DiskResult:
    """A lane's or disk orchestration's output for ``disk``; anything else is that disk's failure."""
    try:
        return DiskResult.from_json(data)
    except InvalidInputError as exc:
        reason = f"the disk's backup ended with an unreadable result ({exc.field})"
        return DiskResult.failed(disk, "unknown", reason, FailureCode.INTERNAL.value)
