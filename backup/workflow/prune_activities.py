"""Retention's activities: whether the run a prune follows has ended, and one disk's prune.

What a disk keeps is decided by :func:`backup.retention.apply_policy` (pure), here fed with the disk's
restore points from the catalog and its policy (the app's ``BACKUP_RETENTION``, or its
``diskbackup-retention`` tag): :func:`disk_retention`, which the preview route shares. Then
:func:`prune_disk` acts on what expired, a bounded number at a time:

- a good point's data goes: its blob snapshot is deleted (a point recorded before the chain is a whole
  blob of its own, deleted whole; the disk's backup blob itself is never deleted, and cannot be: the newest
  good point always lives in it);
- its catalog row stays, marked ``Expired`` with when and why, so a person can still see what existed;
  a failed attempt's row (it holds no data) is marked the same way.

A blob snapshot Azure refuses to delete (409 ``BlobImmutableDueToLegalHold`` or
``BlobImmutableDueToPolicy``, Blob service error codes; or another refusal that will not change by itself)
is kept and reported, and its row says why (``PruneHeld``): it is not tried again for
:data:`HELD_RETRY_DAYS` days, when the hold or policy may have ended. A writer's lease on the backup blob
defers the point to the next prune. A busy or unreachable service (``Throttled``, ``BackendUnavailable``
after the transport's own retries) is the orchestrator's to ride out: :func:`prune_disk` raises it if it
has changed nothing yet, and otherwise answers what it did with ``more``, so that it is called again and
nothing it did is counted twice or lost (:mod:`backup.workflow.prune`).

Both activities are safe to run twice with the same input: :func:`run_finished` only reads, and a
repeated :func:`prune_disk` finds what an earlier attempt did already done. Its points are marked
``Expired`` (and no longer listed) only after their data is gone, a deletion of data already gone counts
as done, and the policy keeps the same points once some of the ones it expires are gone (each kept point
is the newest of a recent bucket; taking away points it does not keep changes neither).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backup.azure.blob import BlobAddress
from backup.azure.resource_id import parse_disk_id
from backup.catalog import RestorePoint, parse_time
from backup.clients import AzureClients
from backup.errors import AzureHttpError, InvalidInputError, NotFoundError, TransportError
from backup.failures import describe
from backup.redact import get_logger
from backup.retention import (
    DEFAULT_POLICY,
    DiskPolicy,
    Plan,
    RetentionPoint,
    apply_policy,
    parse_policy,
    policy_for_disk,
)
from backup.workflow.activities import _object, _text
from backup.workflow.chain import chain_blob_name
from backup.workflow.chain_activities import _positive_int
from backup.workflow.models import iso

log = get_logger(__name__)

#: A point whose data Azure refused to delete is tried again after this many days, not before.
HELD_RETRY_DAYS = 30
#: Storage error codes that say a writer holds the blob for now (the nightly run's lease): try next time.
_LEASE_CODES = frozenset(
    {"LeaseIdMissing", "LeaseIdMismatchWithBlobOperation", "LeaseLost", "LeaseNotPresentWithBlobOperation"}
)
#: Items listed in a prune's answer for one disk (the counts are whole).
_LISTED = 20


@dataclass(frozen=True)
class DiskRetention:
    """A disk's restore points and what its policy does to them (``plan`` None: nothing may expire, and
    ``problem`` says why)."""

    disk_id: str
    policy: DiskPolicy
    disk_exists: bool
    points: dict[str, RestorePoint]
    plan: Plan | None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The preview's answer: every point kept or expiring, newest first, each with its reasons."""

        def item(decision: Any) -> dict[str, Any]:
            point = self.points[decision.point.id]
            return {
                "runId": point.run_id,
                "time": iso(point.run_started_at),
                "status": point.status,
                "kind": point.kind,
                "blobSnapshot": point.blob_snapshot,
                "reasons": list(decision.reasons),
                "held": point.prune_held,
            }

        return {
            "diskId": self.disk_id,
            "policy": self.policy.policy.text() if self.policy.policy is not None else None,
            "policySource": self.policy.source,
            "diskExists": self.disk_exists,
            "problem": self.problem,
            "keep": [item(d) for d in self.plan.keep] if self.plan else [],
            "expire": [item(d) for d in self.plan.expire] if self.plan else [],
        }


def disk_retention(clients: AzureClients, disk_id: str, setting: str, now: datetime) -> DiskRetention:
    """What the disk's policy keeps of its restore points at ``now`` (expired rows are not asked for).

    The policy is ``setting`` (the app's), overridden by the disk's tag if the disk still exists (a disk
    that was deleted keeps the app's policy, which never drops its newest point). A tag that does not
    parse, or a catalog row that cannot be read, expires nothing for this disk, and says why.
    """
    base = parse_policy(setting, DEFAULT_POLICY, field_name="policy")
    try:
        tags = clients.compute.get_disk(disk_id).tags
        exists = True
    except NotFoundError:
        tags, exists = {}, False
    policy = policy_for_disk(tags, base)
    listing = clients.catalog.list_restore_points(disk_id, include_failed=True, top=None)
    points = {point.run_id: point for point in listing.items}
    if policy.policy is None:
        return DiskRetention(disk_id, policy, exists, points, None, policy.problem)
    if listing.problems:
        problem = f"a restore point of this disk cannot be read ({listing.problems[0]}); nothing expires"
        return DiskRetention(disk_id, policy, exists, points, None, problem)
    newest_good = max(
        (p for p in points.values() if p.status == "Succeeded"), key=lambda p: p.run_started_at, default=None
    )
    retention_points = [
        RetentionPoint(
            id=point.run_id,
            time=point.run_started_at,
            status="Succeeded" if point.status == "Succeeded" else "Failed",
            # The diff base is the managed snapshot of the newest good chain point: its point stays.
            diff_base=newest_good is not None and point is newest_good and point.blob_snapshot is not None,
        )
        for point in points.values()
    ]
    return DiskRetention(disk_id, policy, exists, points, apply_policy(retention_points, policy.policy, now))


def run_finished(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Whether the run a prune follows has ended, as its catalog row says (``status`` None: no row yet).

    Safe to call again: it only reads."""
    payload = _object(data)
    run = clients.catalog.get_run(_text(payload, "runId"))
    if run is None:
        return {"finished": False, "status": None}
    return {"finished": run.status != "Running", "status": run.status}


def prune_disk(clients: AzureClients, data: Any) -> dict[str, Any]:
    """Apply the disk's policy: delete the data of up to ``maxDeletes`` expired points and mark their rows
    ``Expired`` (``dryRun``: only say what would go). Answers counts, a few items, and ``more`` when
    expired points are left for another call.

    Safe to call again with the same input (the module docstring says why). A busy or unreachable
    service is raised if this call has changed nothing yet (the orchestrator calls again after a wait);
    after it has, the call stops there and answers what it did, with ``more``.
    """
    payload = _object(data)
    disk_id = _text(payload, "diskId")
    now = parse_time(_text(payload, "now"), "now")
    dry_run = payload.get("dryRun") is True
    max_deletes = _positive_int(payload, "maxDeletes")
    retention = disk_retention(clients, disk_id, _text(payload, "policy"), now)
    answer: dict[str, Any] = {
        "diskId": disk_id,
        "policy": retention.policy.policy.text() if retention.policy.policy else None,
        "policySource": retention.policy.source,
        "diskExists": retention.disk_exists,
        "problem": retention.problem,
        "kept": len(retention.plan.keep) if retention.plan else len(retention.points),
        "expiring": len(retention.plan.expire) if retention.plan else 0,
        "expired": 0,
        "deleted": 0,
        "heldCount": 0,
        "held": [],
        "deferred": 0,
        "deferredProblem": None,
        "more": False,
        "items": [],
    }
    if retention.plan is None:
        return answer
    items: list[dict[str, Any]] = answer["items"]
    expiring = [(retention.points[d.point.id], "; ".join(d.reasons)) for d in retention.plan.expire]
    held = {p.run_id for p, _ in expiring if p.status == "Succeeded" and _held_recently(p, now)}
    if not dry_run:  # a held point is reported every time, and tried again only after HELD_RETRY_DAYS
        answer["heldCount"] = len(held)
        for point, _ in expiring:
            if point.run_id in held:
                _note(answer["held"], {"runId": point.run_id, "problem": point.prune_held})
    deletes = 0
    changed = 0  # rows this call marked (expired or held): what raising now would leave uncounted
    for point, reason in expiring:
        listed = {
            "runId": point.run_id,
            "time": iso(point.run_started_at),
            "status": point.status,
            "reason": reason,
        }
        if dry_run:
            _note(items, {**listed, "action": "would expire"})
            continue
        if point.run_id in held:
            continue
        if point.status == "Succeeded" and deletes >= max_deletes:
            answer["more"] = True
            break
        try:
            outcome, problem = ("deleted", None)
            if point.status == "Succeeded":
                deletes += 1
                outcome, problem = _delete_data(clients, point)
            if outcome == "held":
                assert problem is not None
                clients.catalog.record_prune_held(point, now, problem)
            elif outcome == "deleted":
                clients.catalog.mark_expired(point, now, reason)
        except (AzureHttpError, TransportError) as exc:
            if not describe(exc).code.retryable or changed == 0:
                raise
            # Busy or unreachable after this call changed rows: answer them, and be called again.
            log.info("prune %s: stopped by %s; to be called again", disk_id, describe(exc).message)
            answer["more"] = True
            break
        if outcome != "deferred":
            changed += 1
        if outcome == "held":
            answer["heldCount"] += 1
            _note(answer["held"], {"runId": point.run_id, "problem": problem})
            _note(items, {**listed, "action": "held", "problem": problem})
            continue
        if outcome == "deferred":
            answer["deferred"] += 1
            answer["deferredProblem"] = problem
            _note(items, {**listed, "action": "deferred", "problem": problem})
            break  # a writer holds the blob: the next prune goes on
        if point.status == "Succeeded":
            answer["deleted"] += 1
        answer["expired"] += 1
        _note(items, {**listed, "action": "expired"})
    log.info(
        "prune %s: kept %d, expired %d (%d deleted), held %d, deferred %d%s",
        disk_id,
        answer["kept"],
        answer["expired"],
        answer["deleted"],
        answer["heldCount"],
        answer["deferred"],
        " (dry run)" if dry_run else "",
    )
    return answer


def _delete_data(clients: AzureClients, point: RestorePoint) -> tuple[str, str | None]:
    """Delete a good point's data: ``("deleted" | "held" | "deferred", problem)``; a busy or unreachable
    service is raised (:func:`prune_disk` decides what that means)."""
    try:
        container, name = clients.catalog.blob_location(point.blob_url)
    except InvalidInputError as exc:  # recorded under another account or endpoint: not ours to delete now
        return "held", exc.message
    blob: BlobAddress = clients.backup_blob(container, name)
    if point.blob_snapshot is None:
        rid = _disk_parts(point.disk_id)
        if rid is not None and name == chain_blob_name(*rid):
            # A row without a blob snapshot naming the chain's blob: deleting it would take every point.
            return "held", "the row names the disk's backup blob itself, which retention never deletes"
        target, snapshots = blob, None  # a whole blob from before the chain (refused if it has snapshots)
    else:
        target, snapshots = blob.at_snapshot(point.blob_snapshot), None
    try:
        clients.blob.delete(target, snapshots=snapshots)
    except NotFoundError:
        return "deleted", None  # gone already (an earlier attempt, or by hand)
    except AzureHttpError as exc:
        if exc.retryable:
            raise
        failure = describe(exc)
        if exc.code in _LEASE_CODES:
            return "deferred", failure.message
        return "held", failure.message
    return "deleted", None


def _held_recently(point: RestorePoint, now: datetime) -> bool:
    return (
        point.prune_held is not None
        and point.prune_held_at is not None
        and now - point.prune_held_at < timedelta(days=HELD_RETRY_DAYS)
    )


def _disk_parts(disk_id: str) -> tuple[str, str, str] | None:
    try:
        rid = parse_disk_id(disk_id)
    except InvalidInputError:
        return None
    return rid.subscription_id, rid.resource_group, rid.name


def _note(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    if len(items) < _LISTED:
        items.append(item)


__all__ = ["HELD_RETRY_DAYS", "DiskRetention", "disk_retention", "prune_disk", "run_finished"]
