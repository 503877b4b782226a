"""Restoring a restore point to a new managed disk, anywhere, and proving it: the restore orchestrator and
the scheduled restore tests.

A restore goes point → disk made for upload → write access → plan → writes → footer → revoke (the disk is
``Unattached``) → verification (``full``: every window of the disk and the point by SHA-256, and their
window chains; ``sample``: the night's sampled check; ``none``) → record. It is the way Microsoft documents
for backup products, and it crosses regions and subscriptions: the disk is created with ``createOption:
Upload``, and Compute's write SAS takes Put Page From URL from the restore point's blob snapshot (read
through a short-lived SAS, or with the app's own token). ``createOption: Import`` would need the blob in
the disk's region.

Like the backup's orchestrators, these are deterministic (time from ``context.current_utc_datetime``,
every Azure call an activity, every wait a durable timer) and carry no secret and no range list: the
grants' SAS stay in their operations, the plan lives in storage (:mod:`backup.workflow.restore_plan`).
Writing is bounded activities of bounded batches, each safe to repeat, so a restore whose process dies
carries on from its last finished batch when a host starts again.

Every activity a restore calls is safe to run twice with the same input (each says why in its
docstring), so each is called with the restore's retry policy (:mod:`backup.workflow.retries`): a
transient failure (``Throttled``, ``BackendUnavailable``) that outlasted the transport's own retries costs
a few durable timers, never the restore; ARM operations retry within their deadline. A failure that will
not change (a 4xx, an operation that ended ``Failed``, a verification) fails the restore at once.

A restore that fails revokes what it granted, deletes the half-made disk (unless ``keepOnFailure``; never
a disk it did not make), records why, and ends with a result: the orchestration itself does not fail. A
**restore test** (``purpose: test``) restores to a temporary disk, verifies in full, deletes the disk and
records the verdict on the restore point; :func:`restore_tests` runs one for the newest point of each
selected disk, a few at a time.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from backup import vhd
from backup.errors import DeadlineExceededError, VerificationError
from backup.failures import FailureCode, failure_of
from backup.workflow import activity_names as act
from backup.workflow.chain import segments
from backup.workflow.models import DiskRef, MiB, iso
from backup.workflow.restore_models import (
    RESTORE_ORCHESTRATOR,
    PointRef,
    RestoreInput,
    RestoreOptions,
    RestoreResult,
    RestoreStatus,
    RestoreTarget,
    RestoreTestsInput,
)
from backup.workflow.restore_plan import (
    FULL_WINDOW_BYTES,
    GENESIS,
    restore_batch_name,
    spans,
    temporary_disk_name,
    write_grant_seconds,
)
from backup.workflow.retries import ActivityRetry, call_activity
from backup.workflow.watch import next_delay

Orchestration = Generator[Any, Any, Any]


def restore_disk(context: df.DurableOrchestrationContext) -> Orchestration:
    """Restore one restore point into a new disk, verify it, record it; see the module docstring.

    Answers a :class:`RestoreResult` (``Succeeded`` or ``Failed``, with a code and a reason).
    """
    request = RestoreInput.from_json(context.get_input())
    restore_id = context.instance_id
    options = request.options
    retry = options.retry
    target = request.target
    status = RestoreStatus(phase="resolve", disk=target.disk_name)
    result = RestoreResult(
        restore_id=restore_id,
        status="Running",
        phase="resolve",
        disk_id=request.disk_id,
        target_disk_id=target.disk_id,
        purpose=request.purpose,
        verify=request.verify,
        started_at=iso(context.current_utc_datetime),
        location=target.location,
        sku=target.sku,
    )

    def phase(name: str, **changes: Any) -> None:
        nonlocal status
        status = replace(status, phase=name, **changes)
        context.set_custom_status(status.to_json())

    made = False  # the target disk may exist: delete it if the restore fails
    granted = False  # the target disk has a grant: revoke it on every path
    planned = False  # plan blobs may exist: delete them at the end
    point: PointRef | None = None
    warnings: list[str] = []
    try:
        # 1. The restore point, its data checked; the target's location and SKU.
        phase("resolve")
        found = yield from call_activity(
            context,
            act.FIND_RESTORE_POINT,
            {
                "diskId": request.disk_id,
                "runId": request.run_id,
                "at": request.at,
                "target": target.to_json(),
                "restoreId": restore_id,
            },
            retry,
        )
        point = PointRef.from_json(found["point"])
        target = RestoreTarget.from_json(found["target"])
        disk_bytes = point.size_bytes
        result = replace(
            result,
            run_id=point.run_id,
            blob_snapshot=point.blob_snapshot,
            location=target.location,
            sku=target.sku,
            size_bytes=disk_bytes,
        )
        phase("resolve", run_id=point.run_id)
        warnings.extend((yield from _record(context, result, "at its start", retry)))

        # 2. A new disk made for direct upload (never over an existing one), and write access to it.
        phase("create")
        made = True
        deadline = context.current_utc_datetime + timedelta(minutes=options.operation_timeout_minutes)
        op = yield from call_activity(
            context,
            act.BEGIN_CREATE_RESTORE_DISK,
            {"target": target.to_json(), "restoreId": restore_id, "diskBytes": disk_bytes},
            retry,
            deadline=deadline,
        )
        yield from _wait(context, op, deadline, options, "creating the disk")
        phase("grant")
        granted = True
        grant = yield from _grant(context, target.disk_id, "Write", disk_bytes, options)

        # 3. The plan: the point's populated pages, segment by segment, into batches kept in storage.
        phase("plan")
        planned = True
        chain = options.chain
        point_json = point.to_json()
        parts: list[tuple[int, int]] = []
        to_write = 0
        for segment in segments(disk_bytes, chain.segment_bytes):
            marker: str | None = None
            while True:
                listed = yield from call_activity(
                    context,
                    act.PLAN_RESTORE,
                    {
                        "restoreId": restore_id,
                        "point": point_json,
                        "segment": [segment.start, segment.end],
                        "marker": marker,
                        "pageSize": chain.diff_page_size,
                        "pagesPerCall": chain.diff_pages_per_call,
                        "part": len(parts),
                        "batchBytes": chain.batch_bytes,
                        "batchRequests": chain.batch_requests,
                    },
                    retry,
                )
                parts.append((listed["part"], listed["batches"]))
                to_write += listed["moveBytes"]
                marker = listed["nextMarker"]
                if not marker:
                    break

        # 4. The writes, batch after batch (each keeps a few writes in flight), then the VHD footer.
        to_write += vhd.FOOTER_SIZE
        written = 0
        result = replace(result, bytes_total=to_write)
        phase("write", bytes_written=0, bytes_total=to_write)
        for part, count in parts:
            for batch in range(count):
                applied = yield from call_activity(
                    context,
                    act.APPLY_RESTORE_BATCH,
                    {
                        "point": point_json,
                        "planBlob": restore_batch_name(restore_id, part, batch),
                        "grant": grant["operation"],
                        "writesPerBlob": chain.writes_per_blob,
                    },
                    retry,
                )
                written += applied["bytesWritten"]
                phase("write", bytes_written=written, bytes_total=to_write)
        footer = yield from call_activity(
            context,
            act.WRITE_RESTORE_FOOTER,
            {"point": point_json, "grant": grant["operation"], "restoreId": restore_id},
            retry,
        )
        written += footer["bytesWritten"]
        result = replace(result, bytes_written=written)
        phase("write", bytes_written=written, bytes_total=to_write)
        if footer["footer"] == "built":
            warnings.append(
                "the restore point's VHD footer did not describe this disk; a new one was written"
            )

        # 5. Revoke: the upload becomes the disk's content; the disk is Unattached, of the point's size.
        phase("finish")
        yield from _revoke(context, target.disk_id, options)
        granted = False
        checked = yield from call_activity(
            context, act.CHECK_RESTORED_DISK, {"diskId": target.disk_id, "diskBytes": disk_bytes}, retry
        )
        if checked["problem"] is not None:
            raise VerificationError(checked["problem"])

        # 6. Verify: read the disk through a read grant and compare with the point.
        verdict = "NotVerified"
        if request.verify != "none":
            phase("verify")
            granted = True
            read_grant = yield from _grant(context, target.disk_id, "Read", disk_bytes, options)
            if request.verify == "full":
                checked_full = yield from _verify_full(context, point, read_grant, options)
                result = replace(
                    result,
                    source_digest=checked_full["source"],
                    disk_digest=checked_full["disk"],
                    windows=checked_full["windows"],
                    bytes_compared=checked_full["bytesCompared"],
                )
                problem = checked_full["problem"]
            else:
                sampled = yield from call_activity(
                    context,
                    act.VERIFY_RESTORE_SAMPLE,
                    {
                        "point": point_json,
                        "grant": read_grant["operation"],
                        "sampleBytes": chain.verify_sample_mib * MiB,
                        "seed": restore_id,
                    },
                    retry,
                )
                result = replace(result, windows=sampled["windows"], bytes_compared=sampled["bytesCompared"])
                problem = sampled["problem"]
            yield from _revoke(context, target.disk_id, options)
            granted = False
            if problem is not None:
                raise VerificationError(problem)
            verdict = "Passed" if result.windows else "NotVerified"
        result = replace(result, verdict=verdict)

        # 7. A restore test's disk goes; its verdict goes on the point.
        if request.purpose == "test":
            phase("cleanup")
            yield from _delete_disk(context, target.disk_id, restore_id, options)
            made = False
            result = replace(result, disk_deleted=True)
            warnings.extend(
                (yield from _record_verdict(context, request, point, "Passed", result.source_digest, None))
            )

        # 8. The plan goes; the catalog records the restore.
        phase("record")
        warnings.extend((yield from _delete_plan(context, options, restore_id)))
        planned = False
        result = replace(
            result,
            status="Succeeded",
            phase="done",
            finished_at=iso(context.current_utc_datetime),
            warnings=tuple(warnings),
        )
        recorded = yield from _record(context, result, "at its end", retry)
        result = replace(result, warnings=(*result.warnings, *recorded))
        phase("done")
        return result.to_json()
    except Exception as exc:
        failure = failure_of(exc)
        failed_phase = status.phase
        reason = f"{failed_phase}: {failure.message}"
        if granted:
            try:
                yield from _revoke(context, target.disk_id, options)
            except Exception as revoke_exc:
                reason += f"; revoking access also failed: {failure_of(revoke_exc).message}"
        kept = deleted = False
        if made and failure.code is not FailureCode.TARGET_EXISTS:
            if request.keep_on_failure and request.purpose == "restore":
                kept = True
                warnings.append(f"the half-made disk {target.disk_id} is kept for inspection (keepOnFailure)")
            else:
                phase("cleanup")
                try:
                    yield from _delete_disk(context, target.disk_id, restore_id, options)
                    deleted = True
                except Exception as delete_exc:
                    warnings.append(
                        f"the half-made disk {target.disk_id} was not deleted: "
                        f"{failure_of(delete_exc).message}"
                    )
        if request.purpose == "test" and point is not None:
            warnings.extend((yield from _record_verdict(context, request, point, "Failed", None, reason)))
        if planned:
            warnings.extend((yield from _delete_plan(context, options, restore_id)))
        failed = replace(
            result,
            status="Failed",
            phase=failed_phase,
            verdict="Failed" if failure.code is FailureCode.VERIFICATION_FAILED else None,
            finished_at=iso(context.current_utc_datetime),
            code=failure.code.value,
            reason=reason,
            disk_kept=kept,
            disk_deleted=deleted,
            warnings=tuple(warnings),
        )
        recorded = yield from _record(context, failed, "at its end", retry)
        failed = replace(failed, warnings=(*failed.warnings, *recorded))
        phase("failed", reason=reason)
        return failed.to_json()


def _verify_full(
    context: df.DurableOrchestrationContext,
    point: PointRef,
    read_grant: dict[str, Any],
    options: RestoreOptions,
) -> Orchestration:
    """Every window of the disk against the point, span by span (one activity each), carrying both
    window chains; then the point's chain against the one an earlier full verification recorded.

    Answers ``{"problem", "source", "disk", "windows", "bytesCompared"}`` (``problem`` None: equal).
    """
    span_bytes = max(FULL_WINDOW_BYTES, options.chain.batch_bytes // FULL_WINDOW_BYTES * FULL_WINDOW_BYTES)
    chains = {"source": GENESIS, "disk": GENESIS}
    windows = compared = 0
    for span in spans(point.size_bytes, span_bytes):
        checked = yield from call_activity(
            context,
            act.VERIFY_RESTORE_SPAN,
            {
                "point": point.to_json(),
                "grant": read_grant["operation"],
                "span": [span.start, span.end],
                "chains": chains,
                "pageSize": options.chain.diff_page_size,
            },
            options.retry,
        )
        chains = checked["chains"]
        windows += checked["windows"]
        compared += checked["bytesCompared"]
        if not checked["equal"]:
            shown = ", ".join(checked["mismatches"])
            return {
                "problem": f"the disk differs from the restore point in {checked['mismatchCount']} "
                f"windows of {span.header()} ({shown})",
                "source": None,
                "disk": None,
                "windows": windows,
                "bytesCompared": compared,
            }
    problem = None
    if chains["source"] != chains["disk"]:  # equal windows make equal chains; say so if they ever do not
        problem = "the disk's window chain differs from the restore point's"
    elif point.verified_digest is not None and point.verified_digest != chains["source"]:
        problem = (
            "the restore point's content changed since an earlier restore test verified it: its window "
            f"chain was {point.verified_digest[:16]}..., now {chains['source'][:16]}..."
        )
    return {
        "problem": problem,
        "source": chains["source"],
        "disk": chains["disk"],
        "windows": windows,
        "bytesCompared": compared,
    }


# -- restore tests of the newest point of each disk -------------------------------------------------------


def restore_tests(context: df.DurableOrchestrationContext) -> Orchestration:
    """Test the newest good point of each selected disk: each a restore test (a sub-orchestration: a
    temporary disk in the disk's own resource group and region, verified in full, deleted), at most
    ``maxParallel`` at a time. Answers ``{"startedAt", "finishedAt", "disks", "passed", "failed",
    "results"}``; a disk without a point counts as failed with its reason."""
    request = RestoreTestsInput.from_json(context.get_input())
    started = iso(context.current_utc_datetime)
    context.set_custom_status({"phase": "resolving"})
    summary: dict[str, Any] = {"startedAt": started, "disks": 0, "passed": 0, "failed": 0, "results": []}
    try:
        found = yield from call_activity(
            context, act.RESOLVE_SELECTION, request.selection.to_json(), request.options.retry
        )
        disks = [DiskRef.from_json(item) for item in found]
    except Exception as exc:
        failure = failure_of(exc)
        context.set_custom_status({"phase": "failed"})
        return {
            **summary,
            "finishedAt": iso(context.current_utc_datetime),
            "code": failure.code.value,
            "reason": f"selecting the disks: {failure.message}",
        }
    children = []
    for index, disk in enumerate(disks):
        child_id = f"{context.instance_id}-test-{index:04d}"
        test = RestoreInput(
            disk_id=disk.id,
            at=started,
            target=RestoreTarget(
                disk.subscription_id, disk.resource_group, temporary_disk_name(child_id), sku="Standard_LRS"
            ),
            options=request.options,
            verify="full",
            purpose="test",
            trigger=request.trigger,
        )
        children.append((child_id, test.to_json()))
    summary["disks"] = len(children)
    results: list[dict[str, Any]] = []
    for first in range(0, len(children), request.max_parallel):
        context.set_custom_status({"phase": "testing", "disks": len(children), "done": len(results)})
        wave = children[first : first + request.max_parallel]
        outputs = yield context.task_all(
            [context.call_sub_orchestrator(RESTORE_ORCHESTRATOR, payload, child) for child, payload in wave]
        )
        for (child_id, payload), output in zip(wave, outputs, strict=True):
            outcome = RestoreResult.read(output)
            if outcome is None:
                results.append({"diskId": payload["diskId"], "restoreId": child_id, "verdict": "Failed"})
                continue
            results.append(
                {
                    "diskId": outcome.disk_id,
                    "restoreId": child_id,
                    "runId": outcome.run_id,
                    "verdict": "Passed" if outcome.status == "Succeeded" else "Failed",
                    "code": outcome.code,
                    "reason": outcome.reason,
                }
            )
    passed = sum(1 for r in results if r["verdict"] == "Passed")
    context.set_custom_status({"phase": "done", "disks": len(children), "passed": passed})
    return {
        **summary,
        "finishedAt": iso(context.current_utc_datetime),
        "passed": passed,
        "failed": len(results) - passed,
        "results": results,
    }


# -- steps ------------------------------------------------------------------------------------------------


def _grant(
    context: df.DurableOrchestrationContext,
    disk_id: str,
    access: str,
    disk_bytes: int,
    options: RestoreOptions,
) -> Orchestration:
    """Access to the disk (``Write`` to upload, ``Read`` to verify), waited for; answers the succeeded grant
    operation (its SAS stays in it, out of this history)."""
    deadline = context.current_utc_datetime + timedelta(minutes=options.operation_timeout_minutes)
    op = yield from call_activity(
        context,
        act.BEGIN_GRANT_DISK_ACCESS,
        {"diskId": disk_id, "access": access, "durationSeconds": write_grant_seconds(disk_bytes)},
        options.retry,
        deadline=deadline,
    )
    return (yield from _wait(context, op, deadline, options, f"{access.lower()} access to the disk"))


def _revoke(context: df.DurableOrchestrationContext, disk_id: str, options: RestoreOptions) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(minutes=options.operation_timeout_minutes)
    op = yield from call_activity(
        context, act.BEGIN_REVOKE_DISK_ACCESS, {"diskId": disk_id}, options.retry, deadline=deadline
    )
    yield from _wait(context, op, deadline, options, "revoking access to the disk")


def _delete_disk(
    context: df.DurableOrchestrationContext, disk_id: str, restore_id: str, options: RestoreOptions
) -> Orchestration:
    deadline = context.current_utc_datetime + timedelta(minutes=options.operation_timeout_minutes)
    op = yield from call_activity(
        context,
        act.BEGIN_DELETE_RESTORE_DISK,
        {"diskId": disk_id, "restoreId": restore_id},
        options.retry,
        deadline=deadline,
    )
    yield from _wait(context, op, deadline, options, "deleting the disk")


def _record(
    context: df.DurableOrchestrationContext, result: RestoreResult, when: str, retry: ActivityRetry
) -> Orchestration:
    """Write the restore's catalog row (retried after transient failures); a failure to is a warning
    (the restore's outcome stands)."""
    try:
        yield from call_activity(context, act.RECORD_RESTORE, result.to_json(), retry)
    except Exception as exc:
        return [f"restore not recorded in the catalog {when}: {failure_of(exc).message}"]
    return []


def _record_verdict(
    context: df.DurableOrchestrationContext,
    request: RestoreInput,
    point: PointRef,
    verdict: str,
    digest: str | None,
    reason: str | None,
) -> Orchestration:
    try:
        yield from call_activity(
            context,
            act.RECORD_POINT_VERDICT,
            {
                "diskId": request.disk_id,
                "runId": point.run_id,
                "verdict": verdict,
                "restoreId": context.instance_id,
                "now": iso(context.current_utc_datetime),
                "digest": digest,
                "reason": reason,
            },
            request.options.retry,
        )
    except Exception as exc:
        return [f"verdict not recorded on the restore point: {failure_of(exc).message}"]
    return []


def _delete_plan(
    context: df.DurableOrchestrationContext, options: RestoreOptions, restore_id: str
) -> Orchestration:
    try:
        yield from call_activity(
            context,
            act.DELETE_RESTORE_PLAN,
            {"container": options.container, "restoreId": restore_id},
            options.retry,
        )
    except Exception as exc:
        return [f"plan not deleted: {failure_of(exc).message}"]
    return []


def _wait(
    context: df.DurableOrchestrationContext,
    op: dict[str, Any],
    deadline: datetime,
    options: RestoreOptions,
    what: str,
) -> Orchestration:
    """Poll an operation answer (:mod:`backup.workflow.activity_names`) on durable timers until it
    succeeded, doubling the wait up to ``pollMaxSeconds`` and honouring ``Retry-After``; a throttled
    begin is repeated after its wait. Fails with :class:`DeadlineExceededError` at ``deadline``.

    A poll only reads, and a repeated begin is safe to repeat (its activity says why): both are retried
    after a transient failure, within ``deadline``."""
    delay: float | None = None
    while op["state"] != "Succeeded":
        delay = next_delay(
            delay, options.poll_initial_seconds, options.poll_max_seconds, op.get("retryAfter")
        )
        now = context.current_utc_datetime
        if now >= deadline:
            raise DeadlineExceededError(f"{what} did not finish by its deadline ({iso(deadline)})")
        yield context.create_timer(min(now + timedelta(seconds=delay), deadline))
        if op["state"] == "Throttled":
            op = yield from call_activity(
                context, op["retry"]["activity"], op["retry"]["input"], options.retry, deadline=deadline
            )
        else:
            op = yield from call_activity(
                context, act.POLL_OPERATION, {"operation": op["operation"]}, options.retry, deadline=deadline
            )
    return op
