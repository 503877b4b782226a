"""The three orchestrators: a run fans out over lanes, a lane backs its disks up one after another, and a
disk goes lease → snapshot → access → copy (whole, or the changes since its diff base) → verify → revoke
→ restore point → record → base rotated. Its waits run as sub-orchestrations (:mod:`backup.workflow.watch`),
so no history grows with the length of a wait.

Orchestrators are replayed from history many times, so they are deterministic: time comes from
``context.current_utc_datetime``, every Azure call is an activity, and every wait is a durable timer
(never a sleep). Neither reads settings: the run's input carries every knob (:class:`RunOptions`).

Waiting follows the monitor pattern: an activity makes one check, the orchestrator waits on a timer that
starts at ``pollInitialSeconds`` and doubles up to ``pollMaxSeconds`` (never shorter than a
``Retry-After`` the service asked for), and gives up with a clear reason at a deadline.

Every activity but the alert is called with a bounded retry (:mod:`backup.workflow.retries`): a transient
failure that outlasted the transport's own retries costs a few durable timers, not the disk. Read access
lasts as long as the work needs and is renewed when it runs out (:mod:`backup.workflow.access`).

Histories stay bounded: a run holds one event pair per lane, a lane continues as new every
:data:`LANE_DISKS_PER_EXECUTION` disks, and a disk holds a handful of events per phase however long
its waits (the copy watch continues as new after every poll).

No secret ever enters an orchestration: the grant-access operation's state carries only its polling URL,
and the activities that read through a snapshot's SAS fetch it from that operation themselves. No range
list or plan enters one either: they live in storage (:mod:`backup.workflow.incremental`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from backup.azure.compute import snapshot_name
from backup.azure.resource_id import parse_disk_id
from backup.azure.resource_id import snapshot_id as snapshot_resource_id
from backup.errors import InvalidInputError, VerificationError, WriterBusyError
from backup.failures import Failure, FailureCode, failure_of, for_phase
from backup.redact import get_logger
from backup.telemetry import PhaseClock, emit, run_record
from backup.workflow import activity_names as act
from backup.workflow import incremental
from backup.workflow.access import (
    COPY_RESTARTS,
    ReadAccess,
    copy_seconds,
    expected_copy_seconds,
    source_access_ended,
)
from backup.workflow.chain import chain_blob_name, writer_lease_id
from backup.workflow.lanes import deal_to_lanes, expected_cost
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
    parse_iso,
    run_status,
    sub_orchestration_id,
)
from backup.workflow.retries import ActivityRetry, call_activity
from backup.workflow.watch import copy_and_wait, next_delay, run_operation, wait_for_readiness

__all__ = [
    "LANE_DISKS_PER_EXECUTION",
    "Orchestration",
    "backup_disk",
    "backup_lane",
    "backup_run",
    "failure_reason",
    "next_delay",
]

Orchestration = Generator[Any, Any, Any]

log = get_logger(__name__)

#: Disks a lane backs up before it continues as new (its history: about four events per disk).
LANE_DISKS_PER_EXECUTION = 8


# -- the run ------------------------------------------------------------------------------------------


def backup_run(context: df.DurableOrchestrationContext) -> Orchestration:
    """Back up every selected disk, at most ``maxParallel`` at a time; a failing disk fails only itself.

    The bound is kept by *lanes*: ``maxParallel`` lane sub-orchestrations under one ``task_all``, each
    backing up its share of the disks one after another. (A sliding window of ``task_any`` over running
    children does not keep N in flight: the Functions host awaits each new ``WhenAny`` action on the
    newly started child alone, so after the first wave a run degrades to one disk at a time.) Disks are
    dealt to lanes by expected cost, largest first (:func:`~backup.workflow.lanes.deal_to_lanes`), so
    one large disk does not hold up a lane of small ones; results come back in the selection's order.
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
    retry = run.options.retry
    try:
        found = yield from call_activity(context, act.RESOLVE_SELECTION, run.selection.to_json(), retry)
        disks = [DiskRef.from_json(d) for d in found]
    except Exception as exc:
        return (yield from _fail_run(context, started, failure_of(exc), "selecting the disks", retry))

    total = len(disks)
    try:
        yield from call_activity(context, act.RECORD_RUN, replace(started, disk_count=total).to_json(), retry)
    except Exception as exc:
        # Nothing is started when the catalog cannot take the run's row (after retries): every restore
        # point would go unrecorded. The run ends at once, with the reason; its final row is tried only
        # once, since the catalog has just failed every retry.
        failed = replace(started, disk_count=total)
        once = ActivityRetry(attempts=1)
        return (
            yield from _fail_run(context, failed, failure_of(exc), "recording the run in the catalog", once)
        )
    lanes = min(run.options.max_parallel, total)
    context.set_custom_status({"phase": "backing up", "disks": total, "lanes": lanes})
    jobs = [
        DiskJob(started.run_id, started.started_at, index, disk, run.options).to_json()
        for index, disk in enumerate(disks)
    ]
    shares = deal_to_lanes([expected_cost(disk) for disk in disks], lanes) if lanes else []
    lane_tasks = [
        context.call_sub_orchestrator(
            LANE_ORCHESTRATOR, {"jobs": [jobs[i] for i in share]}, lane_id(started.run_id, lane)
        )
        for lane, share in enumerate(shares)
    ]
    results: dict[int, DiskResult] = {}
    if lane_tasks:
        lane_outputs = yield context.task_all(lane_tasks)
        for share, output in zip(shares, lane_outputs, strict=True):
            for index, outcome in zip(share, output if isinstance(output, list) else [], strict=False):
                results[index] = _result_from_json(outcome, disks[index])

    ordered = tuple(
        results.get(i)
        or DiskResult.failed(
            disks[i], "unknown", "its lane returned no result for it", FailureCode.INTERNAL.value
        )
        for i in range(total)
    )
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
    summary = yield from _record_run(context, summary, retry)
    summary = yield from _alert(context, summary)
    context.set_custom_status(
        {"phase": "done", "disks": total, "succeeded": succeeded, "failed": total - succeeded}
    )
    if not context.is_replaying:
        ended = parse_iso(iso(context.current_utc_datetime), "now")
        took = ended - parse_iso(summary.started_at, "startedAt")
        emit(run_record(summary.to_json(), int(took.total_seconds() * 1000)))
    return summary.to_json()


def _fail_run(
    context: df.DurableOrchestrationContext,
    started: RunSummary,
    failure: Failure,
    doing: str,
    retry: ActivityRetry,
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
    failed = yield from _record_run(context, failed, retry)
    return (yield from _alert(context, failed)).to_json()


def _record_run(
    context: df.DurableOrchestrationContext, summary: RunSummary, retry: ActivityRetry
) -> Orchestration:
    """Write the run's final catalog row (an upsert: safe to repeat); if that fails even after retries,
    the run's result still stands (its restore points were recorded disk by disk) and says so in
    ``warnings``. Answers the summary to return."""
    try:
        yield from call_activity(context, act.RECORD_RUN, summary.to_json(), retry)
    except Exception as exc:
        return replace(summary, warnings=(f"run not recorded in the catalog: {failure_reason(exc)}",))
    return summary


def _alert(context: df.DurableOrchestrationContext, summary: RunSummary) -> Orchestration:
    """Tell the alert webhook (if one is set) about a run that went wrong; a failure to alert is a warning
    on the run, never its failure. Answers the summary to return.

    Not retried here: the activity retries the webhook itself, and a repeat after a lost answer would
    post the alert twice.
    """
    try:
        alert = {"summary": summary.to_json(), "asOf": iso(context.current_utc_datetime)}
        yield context.call_activity(act.SEND_RUN_ALERT, alert)
    except Exception as exc:
        return replace(summary, warnings=(*summary.warnings, f"alert not sent: {failure_reason(exc)}"))
    return summary


def backup_lane(context: df.DurableOrchestrationContext) -> Orchestration:
    """One lane of a run: its share of the disks, one disk sub-orchestration after another; answers
    their results in the order of its ``jobs``.

    Input ``{"jobs": [DiskJob...], "done": [DiskResult...]}``: after :data:`LANE_DISKS_PER_EXECUTION`
    disks the lane continues as new with the jobs left and the results so far, so its history stays
    short however many disks it has. Never fails: a disk orchestration that fails outright (a bug, a
    platform failure) becomes a failed result for that disk, and the lane goes on with the next. Its
    custom status counts its disks (:func:`lane_status`), so a run's progress is read from its few
    lanes, not from every disk.
    """
    data = context.get_input() or {}
    pending = data.get("jobs", [])
    outputs = data.get("done", [])
    if not isinstance(pending, list) or not isinstance(outputs, list):
        raise InvalidInputError("lane", "'jobs' and 'done' must be lists")
    total = len(outputs) + len(pending)
    context.set_custom_status(lane_status(total, outputs))
    # Only this execution's share is read; the rest is handed on as it came.
    for item in pending[:LANE_DISKS_PER_EXECUTION]:
        job = DiskJob.from_json(item)
        try:
            outcome = yield context.call_sub_orchestrator(
                DISK_ORCHESTRATOR, job.to_json(), sub_orchestration_id(job.run_id, job.index)
            )
            outputs.append(_result_from_json(outcome, job.disk).to_json())
        except Exception as exc:
            failure = failure_of(exc)
            failed = DiskResult.failed(job.disk, "unknown", failure.message, failure.code.value)
            outputs.append(failed.to_json())
        context.set_custom_status(lane_status(total, outputs))
    rest = pending[LANE_DISKS_PER_EXECUTION:]
    if rest:
        context.continue_as_new({"jobs": rest, "done": outputs})
        return None
    return outputs


def lane_status(jobs: int, outputs: list[dict[str, Any]]) -> dict[str, int]:
    """A lane's custom status: how many disks it has, and how many of them succeeded or failed."""
    succeeded = sum(1 for output in outputs if output.get("status") == "Succeeded")
    return {"disks": jobs, "succeeded": succeeded, "failed": len(outputs) - succeeded}


# -- one disk -----------------------------------------------------------------------------------------


def backup_disk(context: df.DurableOrchestrationContext) -> Orchestration:
    """Back up one disk into its chain; always returns a :class:`DiskResult` (as JSON), never raises.

    lease (one writer per disk) → snapshot → full or incremental? → grant → copy the whole snapshot, or
    the changes since the base (falling back to a whole copy when they cannot be verified) → verify →
    revoke → blob snapshot (the restore point) → record → tonight's snapshot becomes the diff base →
    plan deleted, lease released. See :mod:`backup.workflow.chain`.

    Every activity it calls is safe to run twice with the same input, and is retried after a transient
    failure (:mod:`backup.workflow.retries`); read access is granted for as long as the work needs and
    renewed when it runs out (:mod:`backup.workflow.access`).
    """
    job = DiskJob.from_json(context.get_input())
    options = job.options
    retry = options.retry
    disk = job.disk
    status = DiskStatus(disk=disk.name, phase="lease", bytes_total=disk.size_bytes)
    clock = PhaseClock(job.run_id, disk.id, disk.name)

    def phase(name: str, **changes: Any) -> None:
        nonlocal status
        status = replace(status, phase=name, **changes)
        context.set_custom_status(status.to_json())
        clock.enter(name, context.current_utc_datetime, status.bytes_copied, replaying=context.is_replaying)

    def finished(result: DiskResult) -> dict[str, Any]:
        done = replace(result, started_at=started_at, finished_at=iso(context.current_utc_datetime))
        clock.finish(context.current_utc_datetime, done.to_json(), replaying=context.is_replaying)
        return done.to_json()

    snapshot_id: str | None = None
    planned_snapshot: str | None = None  # tonight's snapshot's id, known before ARM answers
    granted: list[str] = []  # snapshots with read access: revoked on every path
    access = ReadAccess(
        options,
        lambda ctx, begin, data, until, what: run_operation(ctx, begin, data, until, options, what),
    )
    lease_held = False
    copy: dict[str, Any] | None = None
    blob = {
        "container": options.container,
        "blobName": chain_blob_name(disk.subscription_id, disk.resource_group, disk.name),
    }
    lease_id = writer_lease_id(job.run_id, disk.id)
    kind, full_reason, base_id, previous_base = "full", None, None, None
    figures = incremental.Figures()
    warnings: list[str] = []
    started_at = iso(context.current_utc_datetime)
    try:
        # 1. One writer per disk: the backup blob's lease.
        phase("lease")
        lease = yield from call_activity(
            context,
            act.ACQUIRE_WRITER_LEASE,
            {
                **blob,
                "leaseId": lease_id,
                "runId": job.run_id,
                "diskBytes": disk.size_bytes,
                "now": iso(context.current_utc_datetime),
                "staleAfterMinutes": options.writer_stale_minutes,
            },
            retry,
        )
        if not lease["acquired"]:
            raise WriterBusyError(
                f"skipped: run {lease['holder']} has been writing this disk's backup since {lease['since']} "
                "(one writer per disk)"
            )
        lease_held = True
        if lease.get("brokeStale"):
            warnings.append(
                f"took over the backup blob from run {lease['brokeStale']}, whose lease had gone stale"
            )

        # 2. Snapshot, point in time.
        phase("snapshot")
        deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
        planned_snapshot = _planned_snapshot(job)
        op = yield from run_operation(
            context,
            act.BEGIN_SNAPSHOT,
            {"runId": job.run_id, "disk": disk.to_json(), "incremental": options.incremental_snapshot},
            deadline,
            options,
            "snapshot creation",
        )
        snapshot_id = op["snapshotId"]
        yield from _wait_for_snapshot_ready(context, disk, snapshot_id, options, phase)
        night = incremental.Night(job, blob["container"], blob["blobName"], lease_id, snapshot_id)

        # 3. Full or incremental tonight, and why.
        phase("plan")
        decision = yield from call_activity(
            context,
            act.INSPECT_CHAIN,
            {
                **blob,
                "diskId": disk.id,
                "diskBytes": disk.size_bytes,
                "snapshotId": snapshot_id,
                "forceFull": options.force_full,
                "blobCreated": lease.get("created") is True,
                "blobEtag": lease.get("etag"),
            },
            retry,
        )
        kind, full_reason, previous_base = decision["kind"], decision["reason"], decision["previousBase"]
        phase("plan", kind=kind)

        # 4. Read access, for as long as tonight's work needs it; the SAS stays inside the operation.
        phase("grant")
        granted.append(snapshot_id)  # from here on, revoke: endGetAccess is harmless if nothing was granted
        if kind == "incremental":
            yield from access.grant(context, snapshot_id)
        else:
            yield from access.grant(context, snapshot_id, copy_seconds(disk.size_bytes, options))

        # 5. The changes since the base, or the whole snapshot.
        if kind == "incremental":
            base_id = decision["base"]["snapshotId"]
            granted.append(base_id)
            yield from access.grant(context, base_id)
            outcome = yield from incremental.copy_changes(context, night, access, base_id, phase)
            figures = outcome.figures
            if outcome.fallback is not None:
                kind, full_reason, base_id = "full", outcome.fallback, None
        if kind == "full":
            figures, copy = yield from _copy_whole(context, night, access, phase)

        # 6. Revoke, now that nothing reads the snapshots any more.
        phase("revoke")
        while granted:
            yield from _revoke(context, granted[0], options)
            granted.pop(0)

        # 7. The restore point: a blob snapshot of the backup blob, then the catalog. A repeated
        # snapshot_backup_blob finds the restore point an earlier attempt took: never a second one.
        phase("record")
        taken = yield from call_activity(
            context,
            act.SNAPSHOT_BACKUP_BLOB,
            {**blob, "runId": job.run_id, "diskId": disk.id, "snapshotId": snapshot_id, "kind": kind},
            retry,
        )
        restore_point = replace(
            _restore_point(job, snapshot_id, blob["blobName"], started_at, context, copy),
            status="Succeeded",
            kind=kind,
            bytes_copied=copy["copied"] if copy is not None else figures.bytes_moved,
            blob_snapshot=taken["blobSnapshot"],
            bytes_moved=figures.bytes_moved,
            bytes_changed=figures.bytes_changed,
            ranges=figures.ranges,
            requests=figures.requests,
            full_copy_reason=full_reason if kind == "full" else None,
            base_snapshot_id=base_id,
            blob_etag=taken.get("blobEtag"),
        )
        recorded = yield from call_activity(context, act.RECORD_RESTORE_POINT, restore_point.to_json(), retry)

        # 8. Tonight's snapshot is the diff base now; the one it replaces goes (unless kept).
        phase("cleanup")
        try:
            yield from _rotate_base(context, snapshot_id, previous_base, options)
        except Exception as exc:  # the restore point stands; the catalog names the base either way
            warnings.append(f"diff base not rotated: {failure_reason(exc)}")
        warnings.extend((yield from _finish_writing(context, blob, lease_id, retry)))
        lease_held = False
        phase("done")
        return finished(
            DiskResult(
                disk.id,
                disk.name,
                "Succeeded",
                "done",
                snapshot_id=snapshot_id,
                blob_url=recorded["blobUrl"],
                size_bytes=disk.size_bytes,
                bytes_copied=restore_point.bytes_copied,
                warnings=tuple(warnings),
                kind=kind,
                bytes_moved=figures.bytes_moved,
                bytes_changed=figures.bytes_changed,
                blob_snapshot=taken["blobSnapshot"],
                full_copy_reason=restore_point.full_copy_reason,
            )
        )
    except Exception as exc:
        failed_phase = status.phase
        failure = for_phase(failure_of(exc), failed_phase)
        reason = f"{failed_phase}: {failure.message}"
        if snapshot_id is None and failed_phase == "snapshot":
            # Its creation was asked for (in its watch) and did not finish: the report and the catalog
            # name the snapshot by the name it was asked for, as the clean-up below deletes it.
            snapshot_id = planned_snapshot
        if granted:
            phase("revoke")
            for granted_id in granted:
                try:
                    yield from _revoke(context, granted_id, options)
                except Exception as revoke_exc:
                    reason += f"; revoking access also failed: {failure_reason(revoke_exc)}"
        phase("record")
        try:
            failed_point = _restore_point(job, snapshot_id, blob["blobName"], started_at, context, copy)
            yield from call_activity(
                context,
                act.RECORD_RESTORE_POINT,
                replace(
                    failed_point,
                    kind=kind,
                    reason=reason,
                    full_copy_reason=full_reason,
                    code=failure.code.value,
                ).to_json(),
                retry,
            )
        except Exception as record_exc:
            warnings.append(f"failure not recorded in the catalog: {failure_reason(record_exc)}")
        # Tonight's snapshot only (never the base). If ARM never answered its creation, it may still
        # exist under its planned name: deleting one that does not exist costs a call and is no error.
        leftover = snapshot_id or planned_snapshot
        if leftover is not None and not options.keep_snapshot:
            phase("cleanup")
            try:
                yield from _delete_snapshot(context, leftover, options)
            except Exception as delete_exc:
                warnings.append(f"snapshot not deleted: {failure_reason(delete_exc)}")
        if lease_held:
            warnings.extend((yield from _finish_writing(context, blob, lease_id, retry)))
        phase("failed", reason=reason)
        return finished(
            DiskResult(
                disk.id,
                disk.name,
                "Failed",
                failed_phase,
                reason=reason,
                snapshot_id=snapshot_id,
                warnings=tuple(warnings),
                code=failure.code.value,
                kind=kind if snapshot_id is not None else None,
            )
        )


def _copy_whole(
    context: df.DurableOrchestrationContext,
    night: incremental.Night,
    access: ReadAccess,
    phase: Callable[..., None],
) -> Orchestration:
    """Copy Blob of the whole snapshot over the backup blob (its earlier restore points stay), watched
    and verified; answers ``(figures, copy)``. A copy that does not verify fails the night.

    The grant lasts as long as the copy is expected to take (renewed first if less is left). A copy
    whose source access ran out under it (a 403 from the source) is started again with a new, longer
    grant, at most :data:`~backup.workflow.access.COPY_RESTARTS` times, all within the copy's deadline;
    any other failed or aborted copy fails the night at once.
    """
    job = night.job
    options = job.options
    phase("copy", kind="full", bytes_copied=0, bytes_total=job.disk.size_bytes)
    deadline = context.current_utc_datetime + timedelta(minutes=options.copy_timeout_minutes)
    restarts = 0
    while True:
        grant = yield from access.fresh(
            context, night.snapshot_id, expected_copy_seconds(job.disk.size_bytes)
        )
        # Safe to repeat: start_copy finds its own copy (same snapshot, pending or done) before starting one.
        start = {
            **night.blob,
            "snapshotId": night.snapshot_id,
            "grant": grant.operation,
            "leaseId": night.lease_id,
            "metadata": {
                "runId": job.run_id,
                "diskId": job.disk.id,
                "snapshotId": night.snapshot_id,
                # Copy Blob replaces the metadata: the writer's record goes along.
                "writerRunId": job.run_id,
                "writerSince": iso(context.current_utc_datetime),
            },
        }
        try:
            copy = yield from copy_and_wait(context, start, night.blob, options, deadline)
            break
        except Exception as exc:
            failure = failure_of(exc)
            ended = failure.code is FailureCode.COPY_FAILED and source_access_ended(failure.message)
            if not ended or restarts >= COPY_RESTARTS:
                raise
            restarts += 1
            if not context.is_replaying:
                log.warning(
                    "%s: the copy's source access ended (%s); copying again", job.disk.id, failure.message
                )
            yield from access.grant(
                context, night.snapshot_id, copy_seconds(job.disk.size_bytes, options, restarts)
            )
    phase("verify", bytes_copied=copy["copied"], bytes_total=copy["total"])
    checked = yield from incremental.verify(
        context, night, access, incremental.all_segments(night), [], phase, copy_id=copy["copyId"]
    )
    if checked.problem is not None:
        raise VerificationError(checked.problem)
    figures = incremental.Figures(
        bytes_moved=checked.populated_bytes,
        bytes_changed=checked.populated_bytes,
        ranges=checked.ranges,
        requests=1 + restarts,
    )
    return figures, copy


def _rotate_base(
    context: df.DurableOrchestrationContext, snapshot_id: str, previous: str | None, options: RunOptions
) -> Orchestration:
    """Tag tonight's snapshot as the diff base, then retire the base it replaces."""
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
    yield from run_operation(
        context,
        act.BEGIN_TAG_BASE,
        {"snapshotId": snapshot_id, "keep": options.keep_snapshot},
        deadline,
        options,
        "tagging the diff base",
    )
    if previous is not None and previous.lower() != snapshot_id.lower():
        yield from run_operation(
            context,
            act.BEGIN_RETIRE_BASE,
            {"snapshotId": previous},
            deadline,
            options,
            "retiring the old diff base",
        )


def _finish_writing(
    context: df.DurableOrchestrationContext, blob: dict[str, str], lease_id: str, retry: ActivityRetry
) -> Orchestration:
    """Delete the night's plan and give the lease back (one activity, retried after transient
    failures: a lease left behind would keep the next nights off this disk until it counts as stale);
    answers warnings (the night's outcome stands)."""
    try:
        done = yield from call_activity(context, act.FINISH_WRITING, {**blob, "leaseId": lease_id}, retry)
    except Exception as exc:
        return [f"writer lease not released: {failure_reason(exc)}"]
    if done.get("planProblem"):
        return [f"plan not deleted: {done['planProblem']}"]
    return []


# -- waiting ------------------------------------------------------------------------------------------


def _wait_for_snapshot_ready(
    context: df.DurableOrchestrationContext,
    disk: DiskRef,
    snapshot_id: str,
    options: RunOptions,
    phase: Callable[..., None],
) -> Orchestration:
    """Wait until a Premium SSD v2 / Ultra snapshot has finished its background copy (phase
    ``snapshot-copy``): Azure grants no access to it before.

    Snapshots of the other SKUs are readable as soon as they exist, so for them nothing is asked. One look
    here; if the copy is still under way, the rest of the wait is a readiness watch
    (:func:`backup.workflow.watch.wait_for_readiness`, whose custom status has the percent meanwhile), so
    the disk's history does not grow with the wait. The deadline (``snapshotCopyTimeoutMinutes``) runs
    from the start of this wait.
    """
    if not disk.snapshot_may_copy_in_background:
        return
    phase("snapshot-copy")
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_copy_timeout_minutes)
    state = yield from call_activity(
        context, act.SNAPSHOT_READINESS, {"snapshotId": snapshot_id}, options.retry, deadline=deadline
    )
    if state["ready"]:
        return
    phase("snapshot-copy", snapshot_copy_percent=state.get("completionPercent"))
    state = yield from wait_for_readiness(context, snapshot_id, state, deadline, options)
    phase("snapshot-copy", snapshot_copy_percent=state.get("completionPercent"))


def _revoke(context: df.DurableOrchestrationContext, snapshot_id: str, options: RunOptions) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
    yield from run_operation(
        context, act.BEGIN_REVOKE_ACCESS, {"snapshotId": snapshot_id}, deadline, options, "access revocation"
    )


def _delete_snapshot(
    context: df.DurableOrchestrationContext, snapshot_id: str, options: RunOptions
) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(minutes=options.snapshot_timeout_minutes)
    yield from run_operation(
        context,
        act.BEGIN_DELETE_SNAPSHOT,
        {"snapshotId": snapshot_id},
        deadline,
        options,
        "snapshot deletion",
    )


def _planned_snapshot(job: DiskJob) -> str | None:
    """The id tonight's snapshot of the job's disk gets (fixed by run and disk: the begin activity names
    it so), or ``None`` if the job's ids cannot name one."""
    try:
        rid = parse_disk_id(job.disk.id)
        return str(
            snapshot_resource_id(rid.subscription_id, rid.resource_group, snapshot_name(job.run_id, rid))
        )
    except InvalidInputError:
        return None


# -- small pure parts ---------------------------------------------------------------------------------


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
