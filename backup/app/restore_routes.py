"""The HTTP routes of restore and retention (auth level FUNCTION), beside :mod:`backup.app.http_routes`:

- ``POST /api/restores``: restore a restore point into a new managed disk. The JSON body:
  ``{"diskId", "runId" | "at", "target": {"resourceGroup", "diskName", "location"?, "sku"?, "zone"?,
  "subscriptionId"?, "tags"?}, "verify"?: "full" | "sample" | "none", "keepOnFailure"?: bool}``
  (``at``: the newest good point taken at or before that time; ``verify`` defaults to ``full``; the target's
  location and SKU default to the source disk's). Answers 202 with ``restoreId`` and ``statusUri`` (also
  ``Location``): this API's own status route, never the Durable management URLs (they carry the system
  key). 409 ``TargetExists`` when the target disk exists (it is never overwritten: the restore does not
  start); 404 ``NoRestorePoint`` when no good point matches.
- ``GET /api/restores/{restoreId}``: the restore's phase and bytes as it goes, and its result once done
  (the verification's verdict and digests, or the failure's code and reason).
- ``GET /api/retention/preview?disk=<disk resource ID>``: what the disk's policy keeps and what would go,
  each point with its reasons.

Errors have the shape of :mod:`backup.app.http_routes`: 400 naming the field, 502/503 for a backend.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from backup.app.bounded_json import parse_json
from backup.app.http_routes import (
    MAX_BODY_BYTES,
    _key,
    _route_url,
    _runtime,
    _time,
    error_response,
    json_response,
    parse_instance_id,
)
from backup.azure.resource_id import parse_disk_id
from backup.catalog import Catalog
from backup.clients import AzureClients
from backup.errors import InvalidInputError, NotFoundError
from backup.failures import INTERNAL_MESSAGE, Failure, FailureCode
from backup.redact import get_logger
from backup.settings import Settings
from backup.workflow.models import iso
from backup.workflow.prune_activities import disk_retention
from backup.workflow.restore_models import RESTORE_ORCHESTRATOR, RestoreInput, RestoreResult, RestoreStatus
from backup.workflow.restore_startup import new_restore_id, restore_input

log = get_logger(__name__)

_RESTORE_KEYS = {"diskId", "runId", "at", "target", "verify", "keepOnFailure"}


def parse_restore_request(body: bytes, settings: Settings) -> RestoreInput:
    """Validate a ``POST /api/restores`` body into the restore's input; errors name the field."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInputError("body", f"is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    if not body.strip():
        raise InvalidInputError("body", "is empty; send diskId, runId or at, and target")
    data: Any = parse_json(body, "body")
    if not isinstance(data, dict):
        raise InvalidInputError("body", f"must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - _RESTORE_KEYS)
    if unknown:
        raise InvalidInputError(
            _key(unknown[0]), f"is not a known field (known: {', '.join(sorted(_RESTORE_KEYS))})"
        )
    if "diskId" not in data:
        raise InvalidInputError("diskId", "is required: the resource ID of the disk whose point to restore")
    target = data.get("target")
    if not isinstance(target, dict):
        raise InvalidInputError("target", 'must be an object {"resourceGroup", "diskName", ...}')
    keep = data.get("keepOnFailure", False)
    if not isinstance(keep, bool):
        raise InvalidInputError("keepOnFailure", "must be true or false")
    return restore_input(
        settings,
        "http",
        disk_id=data["diskId"],
        target=target,
        run_id=data.get("runId"),
        at=data.get("at"),
        verify=data.get("verify", "full"),
        keep_on_failure=keep,
    )


def restore_refusal(clients: AzureClients, request: RestoreInput) -> tuple[int, str, str, str] | None:
    """Why a restore must not start, checked before it does: ``(status, code, message, field)``, or
    ``None``. The orchestration checks both again (a disk may appear meanwhile)."""
    try:
        clients.compute.get_disk(request.target.disk_id)
    except NotFoundError:
        pass
    else:
        return (
            409,
            FailureCode.TARGET_EXISTS.value,
            f"the disk {request.target.disk_id} already exists; a restore never writes over a disk",
            "target.diskName",
        )
    problem = point_problem(clients.catalog, request)
    if problem is not None:
        return 404, FailureCode.NO_RESTORE_POINT.value, problem, "runId" if request.run_id else "at"
    return None


def point_problem(catalog: Catalog, request: RestoreInput) -> str | None:
    """Why the restore point the request names cannot be restored, or ``None`` (it is a good one)."""
    if request.run_id is not None:
        point = catalog.find_restore_point(request.disk_id, request.run_id)
        if point is None:
            return f"run {request.run_id} recorded no restore point of this disk"
        if point.status != "Succeeded":
            return f"run {request.run_id}'s restore point is {point.status.lower()}: it cannot be restored"
        return None
    assert request.at is not None
    moment = datetime.fromisoformat(request.at.replace("Z", "+00:00"))
    if catalog.good_point_at(request.disk_id, moment) is None:
        return f"the disk has no good restore point taken at or before {request.at}"
    return None


async def start_restore(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, settings: Settings, clients: AzureClients
) -> func.HttpResponse:
    """``POST /api/restores``."""
    request = parse_restore_request(req.get_body() or b"", settings)
    refused = await asyncio.to_thread(restore_refusal, clients, request)
    if refused is not None:
        status, code, message, field = refused
        return error_response(status, code, message, field)
    restore_id = new_restore_id(datetime.now(UTC))
    await client.start_new(RESTORE_ORCHESTRATOR, restore_id, request.to_json())
    log.info("started restore %s of %s into %s", restore_id, request.disk_id, request.target.disk_id)
    status_uri = _route_url(req.url, f"restores/{restore_id}")
    payload = {
        "restoreId": restore_id,
        "diskId": request.disk_id,
        "runId": request.run_id,
        "at": request.at,
        "targetDiskId": request.target.disk_id,
        "verify": request.verify,
        "statusUri": status_uri,
    }
    return json_response(202, payload, {"Location": status_uri, "Retry-After": "10"})


async def get_restore(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """``GET /api/restores/{restoreId}``: phase and bytes while it runs, the result once it ended."""
    restore_id = parse_instance_id(req.route_params.get("restoreId", ""))
    status = await client.get_status(restore_id)
    if not status or status.name != RESTORE_ORCHESTRATOR:
        return error_response(404, "RestoreNotFound", f"no restore has id {restore_id!r}")
    progress = RestoreStatus.read(status.custom_status)
    result = RestoreResult.read(status.output)
    runtime = _runtime(status)
    body: dict[str, Any] = {
        "restoreId": restore_id,
        "runtimeStatus": runtime,
        "createdTime": _time(status.created_time),
        "lastUpdatedTime": _time(status.last_updated_time),
        "phase": progress.phase if progress else None,
        "runId": progress.run_id if progress else None,
        "bytesWritten": progress.bytes_written if progress else 0,
        "bytesTotal": progress.bytes_total if progress else 0,
        "result": result.to_json() if result is not None else None,
    }
    if result is None and runtime in ("Failed", "Terminated"):
        failure = (
            Failure(FailureCode.TERMINATED, "the restore was terminated")
            if runtime == "Terminated"
            else Failure(FailureCode.INTERNAL, INTERNAL_MESSAGE)
        )
        body["error"] = failure.to_json()
    return json_response(200, body)


async def retention_preview(
    req: func.HttpRequest, clients: AzureClients, settings: Settings
) -> func.HttpResponse:
    """``GET /api/retention/preview?disk=<id>``: what the disk's policy keeps and what would go, and why."""
    raw = req.params.get("disk")
    if not raw:
        raise InvalidInputError("disk", "is required: the disk's resource ID")
    disk = parse_disk_id(raw, "disk")
    now = datetime.now(UTC)
    retention = await asyncio.to_thread(disk_retention, clients, str(disk), settings.retention.text(), now)
    return json_response(200, {**retention.to_json(), "asOf": iso(now)})
