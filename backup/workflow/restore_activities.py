"""A restore's activities: one bounded piece of writing a restore point into a new managed disk each.

Like every activity here, each is safe to run twice with the same input (its docstring says why: the
host delivers at least once, and the restore orchestrator calls an activity again after a transient
failure, :mod:`backup.workflow.retries`), raises on failure, answers small JSON and never returns a
secret. Two secrets take part in a restore, and both stay inside the activity
that uses them:

- the target disk's **write SAS** (and later its read SAS), read from its grant-access operation
  (:meth:`backup.clients.AzureClients.read_access_sas`), as a night's snapshot SAS is;
- the **source's authorisation**: a short-lived read SAS of the restore point's blob snapshot, signed
  with the account's Shared Key (:meth:`~backup.azure.storage_auth.SharedKeyAuthorizer.blob_sas`), or,
  when the app reaches storage with Azure AD, the app's own token, sent as
  ``x-ms-copy-source-authorization`` (:meth:`~backup.azure.blob.BlobClient.put_page_from_url_with_token`).

    find_restore_point        the point a restore reads (catalog), its data checked, the target's defaults
    record_restore            the catalog's row of a restore (at its start and at its end)
    begin_create_restore_disk a disk made for direct upload, never over an existing one (an operation)
    begin_grant_disk_access   Write (to upload) or Read (to verify) access to the disk (an operation)
    begin_revoke_disk_access  ends the access: an upload becomes the disk's content (an operation)
    begin_delete_restore_disk deletes a disk this restore made, and no other (an operation)
    plan_restore              one bounded step of listing the point's populated pages -> plan batches
    apply_restore_batch       Put Page From URL of one batch, point -> disk, a few writes in flight, paced
    write_restore_footer      the fixed VHD footer at the end of the upload
    check_restored_disk       the disk's state and size after the upload
    verify_restore_span       SHA-256 of each window of one span, point and disk, and the window chains
    verify_restore_sample     SHA-256 of sampled windows, point and disk
    record_point_verdict      a restore test's verdict, on the restore point
    delete_restore_plan       the restore's plan blobs, once it is over

Operation answers (begin_*) are those of :mod:`backup.workflow.activity_names`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from backup import vhd
from backup.azure.blob import BlobAddress
from backup.azure.compute import CREATED_BY, TAG_CREATED_BY, TAG_RESTORE_ID, matches_tags, upload_size_for
from backup.azure.credentials import TokenProvider
from backup.azure.page_range import PageRange, coalesce_writes, merge
from backup.azure.storage_auth import BearerAuthorizer, SharedKeyAuthorizer
from backup.catalog import RestorePoint, parse_time
from backup.clients import AzureClients
from backup.errors import (
    ConflictError,
    InvalidInputError,
    NoRestorePointError,
    NotFoundError,
    OperationFailedError,
    PreconditionFailedError,
    TargetExistsError,
    ThrottledError,
)
from backup.redact import get_logger
from backup.workflow import activity_names as act
from backup.workflow.activities import _object, _operation, _operation_answer, _text, _throttled
from backup.workflow.chain import batch_plan, sample_windows
from backup.workflow.chain_activities import (
    ListingStep,
    _clipped,
    _positive_int,
    _range,
    _whole,
    apply_plan_batch,
    read_plan_batch,
    windows_that_differ,
    write_plan_batches,
)
from backup.workflow.models import iso, parse_iso
from backup.workflow.restore_models import PointRef, RestoreResult, RestoreTarget, validate_point_run_id
from backup.workflow.restore_plan import (
    chain_digest,
    full_windows,
    is_digest,
    restore_batch_name,
    restore_prefix,
)

log = get_logger(__name__)

#: How long the source's read SAS lasts: one activity's writes (bounded, seconds to minutes) and more.
SOURCE_SAS_LIFETIME = timedelta(hours=1)
#: Windows read at once by the verifications.
_READERS = 4
#: An Ultra Disk can only be created empty (Azure: "Azure managed disk types"); its restore defaults to
#: Premium SSD. Other SKUs restore as they were.
_RESTORE_SKU_FOR = {"UltraSSD_LRS": "Premium_LRS"}
_DEFAULT_SKU = "Standard_LRS"


# -- choosing the point --------------------------------------------------------------------------------


def find_restore_point(clients: AzureClients, data: Any) -> dict[str, Any]:
    """The restore point a restore reads, and the target with its defaults filled in.

    The point is run ``runId``'s, or the newest good one taken at or before ``at``. It must be good (not
    failed, not expired by retention), its data must exist at the size the catalog says (the disk's bytes
    and the 512-byte VHD footer), and its size must be one direct upload takes. The target's location and
    SKU default to the source disk's (if it still exists); a target disk that exists already, and is not
    this restore's own, is refused. Answers ``{"point": PointRef, "target": RestoreTarget}``.

    Safe to call again: it only reads (a target disk this restore made is not refused).
    """
    payload = _object(data)
    disk_id = _text(payload, "diskId")
    restore_id = _text(payload, "restoreId")
    target = RestoreTarget.from_json(payload.get("target"))
    point = _chosen_point(clients, disk_id, payload.get("runId"), payload.get("at"))
    container, blob_name = clients.catalog.blob_location(point.blob_url)
    source = clients.backup_blob(container, blob_name).at_snapshot(point.blob_snapshot)
    try:
        props = clients.blob.get_properties(source)
    except NotFoundError:
        raise NoRestorePointError(
            f"the data of restore point {point.run_id} ({source.display_url}) is gone from the backup account"
        ) from None
    if props.size != point.size_bytes + vhd.FOOTER_SIZE:
        raise InvalidInputError(
            "restore point",
            f"{source.display_url} is {props.size} bytes, not the disk's {point.size_bytes} + 512 "
            "(VHD footer)",
        )
    try:
        upload_size_for(point.size_bytes)
    except InvalidInputError as exc:
        raise InvalidInputError(
            "restore point",
            f"a disk of {point.size_bytes} bytes cannot be restored by direct upload: {exc.problem}",
        ) from None
    location, sku = target.location, target.sku
    if location is None or sku is None:
        try:
            source_disk = clients.compute.get_disk(disk_id)
        except NotFoundError:
            source_disk = None
        if location is None:
            if source_disk is None:
                raise InvalidInputError(
                    "target.location", "the source disk no longer exists: give a location"
                )
            location = source_disk.location
        if sku is None:
            known = source_disk.sku if source_disk is not None else None
            sku = _RESTORE_SKU_FOR.get(known or "", known) or _DEFAULT_SKU
    _refuse_existing(clients, target.disk_id, restore_id)
    ref = PointRef(
        run_id=point.run_id,
        container=container,
        blob_name=blob_name,
        blob_snapshot=point.blob_snapshot,
        size_bytes=point.size_bytes,
        kind=point.kind,
        taken_at=iso(point.taken_at),
        verified_digest=point.verified_digest if is_digest(point.verified_digest) else None,
    )
    chosen = RestoreTarget(
        target.subscription_id,
        target.resource_group,
        target.disk_name,
        location,
        sku,
        target.zone,
        target.tags,
    )
    log.info(
        "restore %s reads run %s's point of %s (%s)", restore_id, point.run_id, disk_id, source.display_url
    )
    return {"point": ref.to_json(), "target": chosen.to_json()}


def _chosen_point(clients: AzureClients, disk_id: str, run_id: Any, at: Any) -> RestorePoint:
    if run_id is not None:
        run_id = validate_point_run_id(run_id)
        point = clients.catalog.find_restore_point(disk_id, run_id)
        if point is None:
            raise NoRestorePointError(f"run {run_id} recorded no restore point of {disk_id}")
        if point.status == "Failed":
            raise NoRestorePointError(
                f"the backup of run {run_id} failed ({point.reason or 'no reason recorded'})"
            )
        if point.status == "Expired":
            when = iso(point.expired_at) if point.expired_at else "an earlier prune"
            raise NoRestorePointError(
                f"run {run_id}'s restore point expired at {when} ({point.expired_reason or 'retention'}); "
                "its data is gone"
            )
        return point
    if not isinstance(at, str):
        raise InvalidInputError("at", "give a run id or a time")
    moment = parse_iso(at, "at")
    found = clients.catalog.good_point_at(disk_id, moment)
    if found is None:
        raise NoRestorePointError(f"{disk_id} has no good restore point taken at or before {iso(moment)}")
    return found


def _refuse_existing(clients: AzureClients, target_disk_id: str, restore_id: str) -> None:
    """A target disk that exists is refused, unless this very restore made it (a repeated activity)."""
    try:
        existing = clients.compute.get_disk(target_disk_id)
    except NotFoundError:
        return
    if not matches_tags(existing.tags, {TAG_CREATED_BY: CREATED_BY, TAG_RESTORE_ID: restore_id}):
        raise TargetExistsError(
            f"the disk {target_disk_id} already exists; a restore never writes over a disk"
        )


def record_restore(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Write a restore's catalog row (replacing the row of the same restore).

    Safe to call again: an upsert keyed by the restore's id, replaced whole."""
    record = clients.catalog.record_restore(RestoreResult.from_json(data))
    return {"restoreId": record.result.restore_id, "status": record.result.status}


# -- the disk: create, grant, revoke, delete -----------------------------------------------------------------


def begin_create_restore_disk(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start creating the target disk for direct upload (``uploadSizeBytes`` = the disk's bytes + 512).

    Safe to call again: a repeat finds the disk this restore made (tagged with its id): answered as done
    once it is provisioned (until then, as a call to repeat after a short wait). Any other disk of that
    name is refused (:class:`TargetExistsError`).
    """
    payload = _object(data)
    target = RestoreTarget.from_json(payload.get("target"))
    restore_id = _text(payload, "restoreId")
    if target.location is None or target.sku is None:
        raise InvalidInputError("target", "needs its location and sku (find_restore_point fills them in)")
    try:
        started = clients.compute.begin_create_upload_disk(
            target.disk_id,
            location=target.location,
            upload_size_bytes=upload_size_for(_positive_int(payload, "diskBytes")),
            sku=target.sku,
            restore_id=restore_id,
            zone=target.zone,
            tags=target.tags,
        )
    except (ConflictError, PreconditionFailedError) as exc:
        # 409 DiskAlreadyExists: the client looked first; 412: Compute honoured If-None-Match.
        if isinstance(exc, PreconditionFailedError) or exc.code == "DiskAlreadyExists":
            raise TargetExistsError(
                f"the disk {target.disk_id} already exists; a restore never writes over a disk"
            ) from None
        raise
    except ThrottledError as exc:
        return _throttled(act.BEGIN_CREATE_RESTORE_DISK, payload, exc)
    if started.operation is not None:
        return _operation_answer(started.operation)
    # Made by an earlier attempt of this activity.
    if started.provisioning_state in ("Failed", "Canceled"):
        raise OperationFailedError(
            status=started.provisioning_state, code=None, error_message="the restore's disk was not created"
        )
    if started.provisioning_state not in (None, "Succeeded"):
        return {
            "state": "Throttled",
            "retryAfter": 5.0,
            "operation": None,
            "retry": {"activity": act.BEGIN_CREATE_RESTORE_DISK, "input": payload},
        }
    return {"state": "Succeeded", "retryAfter": None, "operation": None}


def begin_grant_disk_access(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start granting ``Write`` (upload) or ``Read`` (verify) access to the disk; its SAS stays in the
    operation.

    Safe to call again: a new grant replaces the disk's SAS (what was written stays), and the
    orchestrator grants only before anything reads or writes through the grant it asked for, and uses
    the operation of the call that answered."""
    payload = _object(data)
    access = payload.get("access")
    if access not in ("Read", "Write"):
        raise InvalidInputError("access", "must be Read or Write")
    try:
        operation = clients.compute.begin_grant_access(
            _text(payload, "diskId"), _positive_int(payload, "durationSeconds"), access=access
        )
    except ThrottledError as exc:
        return _throttled(act.BEGIN_GRANT_DISK_ACCESS, payload, exc)
    return _operation_answer(operation)


def begin_revoke_disk_access(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start revoking access to the disk (after an upload: the written pages become the disk's content).

    Safe to call again: revoking what is revoked changes nothing, and a disk that is gone is done."""
    payload = _object(data)
    disk_id = _text(payload, "diskId")
    clients.grants.forget(disk_id)
    try:
        operation = clients.compute.begin_revoke_access(disk_id)
    except NotFoundError:
        return {"state": "Succeeded", "retryAfter": None, "operation": None}
    except ThrottledError as exc:
        return _throttled(act.BEGIN_REVOKE_DISK_ACCESS, payload, exc)
    return _operation_answer(operation)


def begin_delete_restore_disk(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Start deleting a disk this restore made (tagged with its id); one already gone is deleted. A disk
    this restore did not make is never deleted (:class:`~backup.errors.ConflictError`, ``DiskNotOwned``).

    Safe to call again: a disk already gone is answered as deleted."""
    payload = _object(data)
    try:
        operation = clients.compute.begin_delete_disk(
            _text(payload, "diskId"), restore_id=_text(payload, "restoreId")
        )
    except ThrottledError as exc:
        return _throttled(act.BEGIN_DELETE_RESTORE_DISK, payload, exc)
    if operation is None:
        return {"state": "Succeeded", "retryAfter": None, "operation": None}
    return _operation_answer(operation)


# -- the plan, and writing it ------------------------------------------------------------------------------


def plan_restore(clients: AzureClients, data: Any) -> dict[str, Any]:
    """One bounded step of listing the point's populated pages in one segment: up to ``pagesPerCall``
    Get Page Ranges answers, made into writes of at most 4 MiB (small holes bridged: the new disk holds
    zeros there already) and batches stored as plan part ``part``. Answers counts and ``nextMarker``.

    Safe to call again: it reads the point (a blob snapshot, which never changes) and writes the same
    batches under the same names (restore, part, number)."""
    payload = _object(data)
    point = PointRef.from_json(payload.get("point"))
    step = ListingStep.from_payload(payload)
    part = step.part
    restore_id = _text(payload, "restoreId")
    populated, _, marker, requests = step.read(clients, _source_blob(clients, point))
    populated = merge(populated)
    writes = coalesce_writes(populated, populated=[step.segment])
    batches = batch_plan(
        writes,
        [],
        max_bytes=_positive_int(payload, "batchBytes"),
        max_requests=_positive_int(payload, "batchRequests"),
    )
    write_plan_batches(
        clients,
        point.container,
        [(restore_batch_name(restore_id, part, index), batch) for index, batch in enumerate(batches)],
    )
    return {
        "part": part,
        "batches": len(batches),
        "populatedBytes": sum(r.length for r in populated),
        "moveBytes": sum(w.length for w in writes),
        "ranges": len(populated),
        "writes": len(writes),
        "listRequests": requests,
        "nextMarker": marker,
    }


def apply_restore_batch(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Write one stored batch into the disk: Put Page From URL, restore point -> the disk's write SAS.

    At most ``writesPerBlob`` writes in flight, paced under one blob's targets (an upload also goes at
    about 60 MiB/s). Safe to call again: re-running it writes the same bytes again, so a crash or a
    transient failure in the middle is repaired by running the batch once more.
    """
    payload = _object(data)
    point = PointRef.from_json(payload.get("point"))
    batch = read_plan_batch(clients, point.container, _text(payload, "planBlob"))
    target = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    source, token = _copy_source(clients, point)
    write: Callable[[PageRange], object]
    if token is None:

        def write(page_range: PageRange) -> object:
            return clients.blob.put_page_from_url(target, page_range, source, page_range)

    else:

        def write(page_range: PageRange) -> object:
            return clients.blob.put_page_from_url_with_token(target, page_range, source, page_range, token)

    written = apply_plan_batch(batch, write=write, writers=_positive_int(payload, "writesPerBlob"))
    return {"bytesWritten": written, "writes": len(batch.writes)}


def write_restore_footer(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Write the fixed VHD footer after the disk's bytes: the point's own if it describes a fixed disk of
    this size, else one built for it (the same for the same restore). Answers ``{"footer": "copied" |
    "built", "bytesWritten": 512}``.

    Safe to call again: the footer is the same each time (a built one's id is derived from the
    restore's), written at the same place."""
    payload = _object(data)
    point = PointRef.from_json(payload.get("point"))
    footer_range = PageRange.at(point.size_bytes, vhd.FOOTER_SIZE)
    footer = clients.blob.read_range(_source_blob(clients, point), footer_range)
    how = "copied"
    if vhd.fixed_disk_problem(footer, point.size_bytes) is not None:
        restore_id = _text(payload, "restoreId")
        footer = vhd.build_footer(
            point.size_bytes, uuid.uuid5(uuid.NAMESPACE_URL, f"diskbackup-restore:{restore_id}")
        )
        how = "built"
    target = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    clients.blob.put_page(target, footer_range, footer)
    return {"footer": how, "bytesWritten": vhd.FOOTER_SIZE}


def check_restored_disk(clients: AzureClients, data: Any) -> dict[str, Any]:
    """After the upload: the disk is ``Unattached`` and holds the point's bytes. Answers ``{"state",
    "sizeBytes", "problem"}`` (``problem`` None: as expected). Safe to call again: it only reads."""
    payload = _object(data)
    expected = _positive_int(payload, "diskBytes")
    disk = clients.compute.get_disk(_text(payload, "diskId"))
    problem = None
    if disk.state != "Unattached":
        problem = f"the disk is {disk.state or 'in no state'}, not Unattached, after its upload was finished"
    elif disk.size_bytes != expected:
        problem = f"the disk is {disk.size_bytes} bytes, not the restore point's {expected}"
    return {"state": disk.state, "sizeBytes": disk.size_bytes, "problem": problem}


# -- verification ------------------------------------------------------------------------------------------


def verify_restore_span(clients: AzureClients, data: Any) -> dict[str, Any]:
    """One span of a full verification: every window's SHA-256, the point's and the disk's (read through
    the disk's read grant), compared, and both window chains carried on from ``chains``.

    Answers ``{"equal", "mismatches": [up to 3 ranges], "windows", "bytesCompared", "chains": {"source",
    "disk"}}``. Holes read as zeros on both sides; only populated pages are read.

    Safe to call again: it only reads, and its chains follow from its input alone.
    """
    payload = _object(data)
    point = PointRef.from_json(payload.get("point"))
    span = _range(payload, "span")
    if span.end >= point.size_bytes:
        raise InvalidInputError("span", f"{span.header()} reaches past the disk's {point.size_bytes} bytes")
    chains = _object(payload.get("chains"))
    source_chain, disk_chain = chains.get("source"), chains.get("disk")
    if not is_digest(source_chain) or not is_digest(disk_chain):
        raise InvalidInputError("chains", "must hold the source's and the disk's chain (64 hex digits each)")
    source = _source_blob(clients, point)
    disk = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    windows = full_windows(span)
    page_size = payload.get("pageSize")
    if page_size is not None:
        page_size = _positive_int(payload, "pageSize")
    source_digests = _window_digests(clients, source, span, windows, page_size)
    disk_digests = _window_digests(clients, disk, span, windows, page_size)
    mismatches = [w.header() for w, a, b in zip(windows, source_digests, disk_digests, strict=True) if a != b]
    return {
        "equal": not mismatches,
        "mismatches": mismatches[:3],
        "mismatchCount": len(mismatches),
        "windows": len(windows),
        "bytesCompared": span.length,
        "chains": {
            "source": chain_digest(str(source_chain), source_digests),
            "disk": chain_digest(str(disk_chain), disk_digests),
        },
    }


def verify_restore_sample(clients: AzureClients, data: Any) -> dict[str, Any]:
    """A sampled verification, as a night's (:func:`backup.workflow.chain.sample_windows`, seeded by the
    restore): SHA-256 of each window, point against disk. Answers ``{"equal", "problem", "windows",
    "bytesCompared"}``. Safe to call again: it only reads, the same windows each time."""
    payload = _object(data)
    point = PointRef.from_json(payload.get("point"))
    windows = sample_windows(_text(payload, "seed"), point.size_bytes, [], _whole(payload, "sampleBytes"))
    source = _source_blob(clients, point)
    disk = BlobAddress.from_sas_url(clients.read_access_sas(_operation(payload, "grant")))
    wrong = windows_that_differ(clients, source, disk, windows)
    compared = sum(w.length for w in windows)
    problem = None
    if wrong:
        shown = ", ".join(w.header() for w in wrong[:3])
        problem = (
            f"the disk differs from the restore point in {len(wrong)} of {len(windows)} sampled windows "
            f"({shown})"
        )
    return {"equal": not wrong, "problem": problem, "windows": len(windows), "bytesCompared": compared}


def _window_digests(
    clients: AzureClients, blob: BlobAddress, span: PageRange, windows: list[PageRange], page_size: int | None
) -> list[bytes]:
    """SHA-256 of each window of ``span`` of ``blob``, in order: populated pages read, holes as zeros."""
    populated: list[PageRange] = []
    marker: str | None = None
    while True:
        answer, marker = clients.blob.get_page_ranges_page(
            blob, within=span, page_size=page_size, marker=marker
        )
        populated.extend(_clipped(answer.page_ranges, span))
        if marker is None:
            break
    populated = merge(populated)

    def digest(window: PageRange) -> bytes:
        content = bytearray(window.length)
        for piece in populated:
            start, end = max(piece.start, window.start), min(piece.end, window.end)
            if start <= end:
                part = PageRange(start, end)
                content[start - window.start : end - window.start + 1] = clients.blob.read_range(blob, part)
        return hashlib.sha256(bytes(content)).digest()

    with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="verify") as pool:
        return list(pool.map(digest, windows))


# -- the verdict, and cleaning up ---------------------------------------------------------------------------


def record_point_verdict(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Record a restore test's verdict on the point it tested (``Passed`` keeps the window chain).

    Safe to call again: the same properties merged into the same row again."""
    payload = _object(data)
    disk_id, run_id = _text(payload, "diskId"), _text(payload, "runId")
    point = clients.catalog.find_restore_point(disk_id, run_id)
    if point is None:
        raise NoRestorePointError(f"run {run_id} recorded no restore point of {disk_id}")
    digest = payload.get("digest")
    if digest is not None and not is_digest(digest):
        raise InvalidInputError("digest", "must be 64 lowercase hex digits")
    reason = payload.get("reason")
    clients.catalog.record_verdict(
        point,
        verdict=_text(payload, "verdict"),
        when=parse_time(_text(payload, "now"), "now"),
        restore_id=_text(payload, "restoreId"),
        digest=digest,
        reason=reason if isinstance(reason, str) else None,
    )
    return {"recorded": True}


def delete_restore_plan(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Delete every blob under the restore's folder (its plan).

    Safe to call again: a blob already gone is skipped."""
    payload = _object(data)
    container = clients.backup_container(_text(payload, "container"))
    deleted = 0
    for item in clients.blob.list_blobs(container, prefix=restore_prefix(_text(payload, "restoreId"))):
        try:
            clients.blob.delete(container.blob(item.name), snapshots=None)
            deleted += 1
        except NotFoundError:
            pass
    return {"deleted": deleted}


# -- the source ----------------------------------------------------------------------------------------------


def _source_blob(clients: AzureClients, point: PointRef) -> BlobAddress:
    """The restore point, read with the app's own authorisation (Shared Key or Azure AD)."""
    return clients.backup_blob(point.container, point.blob_name).at_snapshot(point.blob_snapshot)


def _copy_source(clients: AzureClients, point: PointRef) -> tuple[BlobAddress, TokenProvider | None]:
    """The restore point as another service reads it: addressed by a short-lived read SAS (Shared Key),
    or by URL alone with the app's token for ``x-ms-copy-source-authorization`` (Azure AD)."""
    blob = _source_blob(clients, point)
    authorize = blob.authorize
    if isinstance(authorize, SharedKeyAuthorizer):
        sas = authorize.blob_sas(
            point.container,
            point.blob_name,
            lifetime=SOURCE_SAS_LIFETIME,
            snapshot=point.blob_snapshot,
            https_only=blob.url.startswith("https://"),
        )
        return blob.with_sas(sas), None
    if isinstance(authorize, BearerAuthorizer):
        return blob, authorize.token_provider
    raise InvalidInputError("storage", "the backup account is reached neither by Shared Key nor by Azure AD")


__all__ = [
    "apply_restore_batch",
    "begin_create_restore_disk",
    "begin_delete_restore_disk",
    "begin_grant_disk_access",
    "begin_revoke_disk_access",
    "check_restored_disk",
    "delete_restore_plan",
    "find_restore_point",
    "plan_restore",
    "record_point_verdict",
    "record_restore",
    "verify_restore_sample",
    "verify_restore_span",
    "write_restore_footer",
]
