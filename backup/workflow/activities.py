"""The activities: each makes one bounded Azure call (or a short, bounded few) and answers small JSON.

Every activity is safe to run twice with the same input (the host delivers at least once, and the
orchestrators call an activity again after a transient failure: :mod:`backup.workflow.retries`):
snapshots are named by run and disk (a second PUT of the same snapshot is an update), a grant made again
replaces the SAS before anything reads through it, the copy looks for its own earlier attempt before
starting another, catalog rows are keyed by run and disk and replaced whole, revoking and deleting are
idempotent. The one exception is :func:`send_run_alert`, which the orchestrator does not call again.

Activities raise on failure (the orchestrator turns the error into a disk's failure reason); they never
return error text. A throttled *begin* call is not a failure: it answers ``Throttled`` with the call to
repeat, and the orchestrator waits on a durable timer instead of a thread sleeping here. The shapes of
the answers are described in :mod:`backup.workflow.activity_names`.

The one secret in the workflow, a snapshot's SAS, exists only inside the activities that read through it
(:func:`start_copy` here, the chain's in :mod:`backup.workflow.chain_activities`): read from the
grant-access operation, handed to Storage, never returned or logged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from backup import alerts
from backup.azure.blob import BlobAddress, CopyStatus
from backup.azure.compute import snapshot_name
from backup.azure.lro import LroStatus
from backup.azure.resource_id import parse_disk_id, snapshot_id
from backup.clients import AzureClients
from backup.errors import (
    CopyFailedError,
    DiskNotFoundError,
    InvalidInputError,
    NotFoundError,
    OperationFailedError,
    ThrottledError,
)
from backup.redact import get_logger
from backup.workflow import activity_names as act
from backup.workflow.models import DiskRef, RestorePointRecord, RunSummary, Selection, parse_iso

log = get_logger(__name__)

#: Seconds to wait after a throttled call that said nothing about when to come back.
DEFAULT_THROTTLE_WAIT = 30.0
#: Seconds to wait before asking again to change a resource that an earlier call is still changing.
BUSY_WAIT = 5.0
#: Provisioning states of a resource that an operation is still changing.
CHANGING = frozenset({"Creating", "Updating"})


# -- selection and catalog ------------------------------------------------------------------------------


def resolve_selection(clients: AzureClients, data: Any) -> list[dict[str, Any]]:
    """The disks a selection names, sorted by ID, each as :class:`DiskRef` JSON.

    Explicit disk IDs must all exist (a missing one fails the run with its ID named: the caller asked
    for it). A disk whose size ARM does not report cannot be verified and fails the run the same way.
    Safe to call again: it only reads.
    """
    selection = Selection.from_json(data)
    compute = clients.compute
    subscription = clients.settings.subscription_id
    if selection.kind == "diskIds":
        disks = []
        for index, disk_id in enumerate(selection.disk_ids):
            try:
                disks.append(compute.get_disk(disk_id))
            except NotFoundError:
                raise DiskNotFoundError(f"diskIds[{index}]", f"disk {disk_id} does not exist") from None
    elif selection.kind == "tag":
        assert selection.tag_name is not None
        disks = compute.list_disks(subscription, tags={selection.tag_name: selection.tag_value})
    elif selection.kind == "resourceGroup":
        disks = compute.list_disks(subscription, selection.resource_group)
    else:
        raise InvalidInputError("selection.kind", "the configured selection is resolved by the starter")
    refs = []
    for disk in sorted(disks, key=lambda d: d.id.lower()):
        if disk.size_bytes is None or disk.size_bytes <= 0:
            raise InvalidInputError("disk", f"{disk.id} reports no size; it cannot be backed up and verified")
        rid = parse_disk_id(disk.id)
        refs.append(
            DiskRef(
                disk.id,
                disk.name,
                rid.resource_group,
                rid.subscription_id,
                disk.location,
                disk.size_bytes,
                sku=disk.sku,
            )
        )
    log.info("selection %s matched %d disks", selection.kind, len(refs))
    return [ref.to_json() for ref in refs]


def record_run(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Write the run's catalog row (at its start and again at its end)."""
    record = clients.catalog.record_run(RunSummary.from_json(data))
    return {"runId": record.run_id, "status": record.status}


def record_restore_point(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Write a restore point (or a failed attempt) to the catalog; answers the blob URL it stored."""
    point = clients.catalog.record_restore_point(RestorePointRecord.from_json(data))
    return {"blobUrl": point.blob_url, "status": point.status}


def send_run_alert(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Tell the alert webhook about a finished run when it went wrong or a disk has gone stale.

    Not called again by the orchestrator: after a lost answer the webhook may have the alert, and a
    repeat would post it twice. The webhook is retried here (:func:`backup.alerts.send_alert`).

    ``data`` is ``{"summary": <RunSummary>, "asOf": <the run's end, ISO>}``: staleness is judged at the
    orchestration's time, not this worker's clock. Only the run's failed disks can be stale (a disk
    backed up tonight is not): for each, the catalog says when it last had a good restore point (or, if
    never, when it was first attempted).
    """
    payload = _object(data)
    summary = RunSummary.from_json(payload.get("summary"))
    now = parse_iso(_text(payload, "asOf"), "asOf")
    webhook = clients.settings.alert_webhook
    if webhook is None:
        return {"sent": False, "why": "no webhook configured"}
    threshold = now - timedelta(hours=clients.settings.alert_stale_hours)
    last_good: dict[str, datetime | None] = {}
    for disk in summary.disks:
        if disk.status != "Failed":
            continue
        points = clients.catalog.list_restore_points(disk.disk_id, include_failed=True, top=500).items
        good = [p.finished_at for p in points if p.status == "Succeeded"]
        if good:
            last_good[disk.disk_id] = max(good)
        elif points and min(p.started_at for p in points) < threshold:
            last_good[disk.disk_id] = None  # attempted for longer than the threshold, never good
    stale = alerts.stale_disks(last_good, now, clients.settings.alert_stale_hours)
    message = alerts.build_alert(summary, stale, now)
    if message is None:
        return {"sent": False, "why": "nothing to report"}
    attempts = alerts.send_alert(webhook, message)
    return {"sent": True, "attempts": attempts, "failed": message["failedCount"], "stale": len(stale)}


# -- ARM operations ---------------------------------------------------------------------------------------


def begin_snapshot(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start the run's snapshot of a disk (named by run and disk, so a repeat meets the same snapshot)."""
    payload = _object(data)
    disk = DiskRef.from_json(payload.get("disk"))
    incremental = payload.get("incremental")
    if not isinstance(incremental, bool):
        raise InvalidInputError("incremental", "must be true or false")
    run_id = _text(payload, "runId")
    try:
        started = clients.compute.begin_create_snapshot(
            disk.id, location=disk.location, run_id=run_id, incremental=incremental
        )
    except ThrottledError as exc:
        # The orchestrator reads the snapshot's id from every answer (to report it, and to delete it if
        # the wait runs out). It is fixed by run and disk, in the disk's group, so it is known already.
        rid = parse_disk_id(disk.id)
        planned = snapshot_id(rid.subscription_id, rid.resource_group, snapshot_name(run_id, rid))
        return {**_throttled(act.BEGIN_SNAPSHOT, payload, exc), "snapshotId": str(planned)}
    return {**_operation_answer(started.operation), "snapshotId": started.snapshot_id}


def poll_operation(clients: AzureClients, data: Any) -> dict[str, Any]:
    """One poll of an ARM operation; raises :class:`OperationFailedError` if it failed or was canceled.
    Safe to call again: it only reads."""
    operation = _operation(_object(data), "operation")
    try:
        polled = clients.compute.poll(operation)
    except ThrottledError as exc:
        # Still running as far as anyone knows; come back when asked.
        return {**_operation_answer(operation), "retryAfter": exc.retry_after or DEFAULT_THROTTLE_WAIT}
    return _operation_answer(polled)


def snapshot_readiness(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Whether the snapshot can be read through a grant yet (one GET; see :func:`snapshot_readable`).

    A Premium SSD v2 or Ultra snapshot finishes a background copy after its creation succeeded; until
    then Azure refuses to grant access to it. Raises if its creation or its background copy failed: no
    wait will make it readable.
    """
    payload = _object(data)
    try:
        snapshot = clients.compute.get_snapshot(_text(payload, "snapshotId"))
    except ThrottledError as exc:
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_WAIT
        return {"ready": False, "completionPercent": None, "accessState": None, "retryAfter": wait}
    if snapshot.copy_error is not None:
        raise OperationFailedError(
            status="Failed",
            code=None,
            error_message=f"the snapshot's background copy failed: {snapshot.copy_error}",
        )
    if snapshot.provisioning_state in ("Failed", "Canceled"):
        raise OperationFailedError(
            status=snapshot.provisioning_state,
            code=None,
            error_message="the snapshot's creation did not succeed",
        )
    return {
        "ready": snapshot.ready,
        "completionPercent": snapshot.completion_percent,
        "accessState": snapshot.access_state,
        "retryAfter": None,
    }


def begin_grant_access(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start granting read access to the snapshot for ``durationSeconds`` (its SAS stays in the
    operation). Safe to repeat: a new grant replaces the snapshot's SAS, and the orchestrator grants
    only when nothing reads through the old one (:mod:`backup.workflow.access`)."""
    payload = _object(data)
    duration = payload.get("durationSeconds")
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise InvalidInputError("durationSeconds", "must be a whole number of seconds")
    try:
        operation = clients.compute.begin_grant_access(_text(payload, "snapshotId"), duration)
    except ThrottledError as exc:
        return _throttled(act.BEGIN_GRANT_ACCESS, payload, exc)
    return _operation_answer(operation)


def begin_revoke_access(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start revoking access to the snapshot (harmless when nothing was granted)."""
    payload = _object(data)
    clients.grants.forget(_text(payload, "snapshotId"))
    try:
        operation = clients.compute.begin_revoke_access(_text(payload, "snapshotId"))
    except ThrottledError as exc:
        return _throttled(act.BEGIN_REVOKE_ACCESS, payload, exc)
    return _operation_answer(operation)


def begin_delete_snapshot(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start deleting the snapshot; one that is already gone counts as deleted."""
    payload = _object(data)
    try:
        operation = clients.compute.begin_delete_snapshot(_text(payload, "snapshotId"))
    except NotFoundError:
        return {"state": "Succeeded", "retryAfter": None, "operation": None}
    except ThrottledError as exc:
        return _throttled(act.BEGIN_DELETE_SNAPSHOT, payload, exc)
    return _operation_answer(operation)


# -- the copy ----------------------------------------------------------------------------------------------


def start_copy(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Copy the snapshot (through the SAS its grant issued) into the backup blob.

    A backup blob under the writer's lease is copied over with its ``leaseId``; its blob snapshots (the
    earlier restore points) stay. If an earlier attempt of this same activity already started the copy
    (same snapshot, blob carrying our metadata, copy pending or done), that copy is answered instead of
    starting a second one.
    """
    payload = _object(data)
    snapshot_id = _text(payload, "snapshotId")
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidInputError("metadata", "must be an object of strings")
    grant = _operation(payload, "grant")
    if not grant.succeeded:
        raise InvalidInputError("grant", "the access grant has not succeeded")
    lease_id = payload.get("leaseId")  # the writer's lease on the backup blob, when it holds one
    if lease_id is not None and not isinstance(lease_id, str):
        raise InvalidInputError("leaseId", "must be a string")
    destination = clients.backup_blob(_text(payload, "container"), _text(payload, "blobName"))
    if lease_id is None:
        # A blob under the writer's lease has its container: acquire_writer_lease made both.
        clients.blob.create_container(clients.backup_container(_text(payload, "container")))

    earlier = _properties_or_none(clients, destination)
    if (
        earlier is not None
        and _metadata_value(earlier.metadata, "snapshotId") == snapshot_id
        and earlier.copy_status in (CopyStatus.PENDING, CopyStatus.SUCCESS)
        and earlier.copy_id
    ):
        log.info("copy %s into %s was started before; following it", earlier.copy_id, destination.display_url)
        return _copy_answer(earlier.copy_id, earlier.copy_status, earlier.copy_progress, earlier.size)

    source = BlobAddress.from_sas_url(clients.read_access_sas(grant))
    started = clients.blob.start_copy(destination, source, metadata=metadata, lease_id=lease_id)
    props = clients.blob.get_properties(destination)
    if props.copy_id != started.copy_id:
        raise CopyFailedError(f"another copy ({props.copy_id}) replaced ours ({started.copy_id}) at once")
    return _copy_answer(started.copy_id, props.copy_status or started.status, props.copy_progress, props.size)


def copy_status(clients: AzureClients, data: Any) -> dict[str, Any]:
    """The copy's state from the destination blob's properties (HEAD); raises if it failed."""
    payload = _object(data)
    copy_id = _text(payload, "copyId")
    destination = clients.backup_blob(_text(payload, "container"), _text(payload, "blobName"))
    props = clients.blob.get_properties(destination)
    if props.copy_id != copy_id:
        raise CopyFailedError(f"the backup blob's last copy is {props.copy_id}, not ours ({copy_id})")
    if props.copy_status in (CopyStatus.FAILED, CopyStatus.ABORTED):
        description = props.copy_status_description or "no description"
        raise CopyFailedError(f"copy {props.copy_status.value}: {description}")
    if props.copy_status is None:
        raise CopyFailedError("the backup blob reports no copy status")
    return _copy_answer(copy_id, props.copy_status, props.copy_progress, props.size)


# -- small parts ----------------------------------------------------------------------------------------


def _operation_answer(operation: LroStatus) -> dict[str, Any]:
    operation.raise_for_failure()
    return {
        "state": "Succeeded" if operation.succeeded else "InProgress",
        "retryAfter": operation.retry_after,
        "operation": operation.to_dict(),
    }


def _throttled(activity: str, payload: dict[str, Any], exc: ThrottledError) -> dict[str, Any]:
    wait = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_WAIT
    log.warning("%s throttled; the orchestrator will call again in %.0f s", activity, wait)
    return _call_again(activity, payload, wait)


def _busy(activity: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The answer of a begin activity whose resource an earlier operation is still changing (say, one
    whose answer was lost, and which this call repeats): the orchestrator calls again after a wait,
    as after a 429, rather than failing on ARM's 409 for overlapping operations."""
    log.info("%s: the resource is still being changed; the orchestrator will call again", activity)
    return _call_again(activity, payload, BUSY_WAIT)


def _call_again(activity: str, payload: dict[str, Any], wait: float) -> dict[str, Any]:
    return {
        "state": "Throttled",
        "retryAfter": wait,
        "operation": None,
        "retry": {"activity": activity, "input": payload},
    }


def _copy_answer(
    copy_id: str, status: CopyStatus | None, progress: tuple[int, int] | None, size: int
) -> dict[str, Any]:
    copied, total = progress if progress is not None else (0, size)
    if status is CopyStatus.SUCCESS and progress is None:
        copied = total
    return {
        "copyId": copy_id,
        "status": status.value if status is not None else "pending",
        "copied": copied,
        "total": total,
    }


def _properties_or_none(clients: AzureClients, blob: BlobAddress) -> Any:
    try:
        return clients.blob.get_properties(blob)
    except NotFoundError:
        return None


def _metadata_value(metadata: dict[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in metadata.items() if key.lower() == wanted), None)


def _operation(payload: dict[str, Any], key: str) -> LroStatus:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise InvalidInputError(key, "must be an operation state object")
    return LroStatus.from_dict(value)


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInputError("activity input", f"must be an object, not {type(data).__name__}")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(key, "must be a non-empty string")
    return value
