"""The HTTP routes: validate what a caller sent, start runs, report status and the catalog.

Routes (auth level FUNCTION):

- ``POST /api/backups``: start a run. The JSON body selects disks with exactly one of ``diskIds`` (a list
  of disk resource IDs), ``tag`` (``{"name": ..., "value": ...}``) or ``resourceGroup`` (a name in the
  configured subscription); an empty body or ``{}`` uses the configured selection. ``options`` may set
  ``kind`` (``"incremental"``, the default: the chain copies what changed when it can; ``"full"``: copy
  every disk whole tonight) and ``keepSnapshot`` (bool). Answers 202
  with the Durable status URLs and the run id.
- ``GET /api/backups/{instanceId}``: the run's status with each disk's phase, copy progress, and once
  decided how it is copied tonight (``kind``) and, once done, the bytes it moved (``bytesMoved``).
- ``GET /api/backups``: recent runs, from the catalog (``?top=`` 1-100, default 20).
- ``GET /api/restore-points?disk=<disk resource ID>``: the disk's restore points, newest first
  (``?includeFailed=true`` adds failed attempts; ``?top=`` 1-1000, default 100).

Anything a caller sends wrong gets 400 with ``{"error": {"code", "field", "message"}}`` naming the field;
an unknown run 404; a 500 only for our own faults, and then without internals.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from backup.azure.resource_id import parse_disk_id
from backup.catalog import Catalog
from backup.errors import AzureHttpError, InvalidInputError, TransportError
from backup.redact import get_logger, redact
from backup.settings import Settings
from backup.workflow.models import (
    DISK_ORCHESTRATOR,
    RUN_ORCHESTRATOR,
    DiskResult,
    DiskStatus,
    RunInput,
    RunSummary,
    Selection,
    sub_orchestration_id,
)
from backup.workflow.startup import (
    MAX_DISK_IDS,
    disk_ids_selection,
    new_run_id,
    resource_group_selection,
    run_input,
    tag_selection,
)

log = get_logger(__name__)

MAX_BODY_BYTES = 256 * 1024
_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_TOP_LEVEL_KEYS = {"diskIds", "tag", "resourceGroup", "options"}
_OPTION_KEYS = {"kind", "keepSnapshot"}


# -- request parsing (pure) ---------------------------------------------------------------------------


def parse_start_request(body: bytes, settings: Settings) -> RunInput:
    """Validate a ``POST /api/backups`` body into the run input; errors name the field."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInputError("body", f"is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    data: Any = {}
    if body.strip():
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError("body", f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInputError("body", f"must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise InvalidInputError(
            unknown[0], f"is not a known field (known: {', '.join(sorted(_TOP_LEVEL_KEYS))})"
        )
    selectors = [key for key in ("diskIds", "tag", "resourceGroup") if key in data]
    if len(selectors) > 1:
        raise InvalidInputError(
            selectors[1], f"give only one of diskIds, tag, resourceGroup (got {selectors})"
        )

    selection: Selection | None = None
    if "diskIds" in data:
        if not isinstance(data["diskIds"], list):
            raise InvalidInputError("diskIds", "must be a non-empty list of disk resource IDs")
        selection = disk_ids_selection(data["diskIds"])
    elif "tag" in data:
        tag = data["tag"]
        if not isinstance(tag, dict) or set(tag) != {"name", "value"}:
            raise InvalidInputError("tag", 'must be an object {"name": ..., "value": ...}')
        selection = tag_selection(tag["name"], tag["value"])
    elif "resourceGroup" in data:
        selection = resource_group_selection(data["resourceGroup"])

    keep_snapshot = None
    force_full = False
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise InvalidInputError("options", "must be a JSON object")
    unknown = sorted(set(options) - _OPTION_KEYS)
    if unknown:
        raise InvalidInputError(
            f"options.{unknown[0]}", f"is not a known option (known: {', '.join(sorted(_OPTION_KEYS))})"
        )
    if "kind" in options:
        kind = options["kind"]
        if kind not in ("incremental", "full"):
            raise InvalidInputError("options.kind", f"{kind!r:.40} is not incremental or full")
        force_full = kind == "full"
    if "keepSnapshot" in options:
        if not isinstance(options["keepSnapshot"], bool):
            raise InvalidInputError("options.keepSnapshot", "must be true or false")
        keep_snapshot = options["keepSnapshot"]
    return run_input(settings, "http", selection, keep_snapshot=keep_snapshot, force_full=force_full)


def parse_instance_id(value: str) -> str:
    """An instance id from a route: letters, digits and ``_.:-``, at most 100 characters."""
    if not _INSTANCE_ID.fullmatch(value or ""):
        raise InvalidInputError("instanceId", "must be 1-100 characters of letters, digits, _ . : -")
    return value


def parse_top(params: Any, default: int, highest: int) -> int:
    """The ``top`` query parameter: a whole number from 1 to ``highest``."""
    raw = params.get("top")
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= highest:
        raise InvalidInputError("top", f"must be a whole number from 1 to {highest}")
    return int(raw)


def parse_bool_param(params: Any, name: str) -> bool:
    """A ``true``/``false`` query parameter (absent = false)."""
    raw = params.get(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise InvalidInputError(name, "must be true or false")
    return raw.lower() == "true"


# -- responses ----------------------------------------------------------------------------------------


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON HTTP response."""
    return func.HttpResponse(
        body=json.dumps(body, indent=2, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )


def error_response(status: int, code: str, message: str, field: str | None = None) -> func.HttpResponse:
    """The one error body shape: ``{"error": {"code", "message", "field"?}}``."""
    error: dict[str, Any] = {"code": code, "message": redact(message)}
    if field is not None:
        error["field"] = field
    return json_response(status, {"error": error})


async def guarded(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run a handler; turn caller mistakes into 400s and our own faults into a bare 500 or 503."""
    try:
        return await handler()
    except InvalidInputError as exc:
        return error_response(400, "InvalidInput", exc.problem, exc.field)
    except (TransportError, AzureHttpError) as exc:
        log.warning("a backend did not answer: %s", exc)
        return error_response(503, "BackendUnavailable", "a backing service did not answer; try again later")
    except Exception:
        log.exception("request failed")
        return error_response(500, "InternalError", "the request failed on our side; see the app's logs")


# -- handlers -----------------------------------------------------------------------------------------


async def start_backup(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, settings: Settings
) -> func.HttpResponse:
    """``POST /api/backups``."""
    run = parse_start_request(req.get_body() or b"", settings)
    instance_id = new_run_id(datetime.now(UTC))
    await client.start_new(RUN_ORCHESTRATOR, instance_id, run.to_json())
    log.info("started run %s (%s)", instance_id, run.selection.kind)
    response = client.create_check_status_response(req, instance_id)
    payload = json.loads(response.get_body())
    payload["runId"] = instance_id
    payload["selection"] = run.selection.to_json()
    headers = {key: value for key, value in response.headers.items() if key.lower() != "content-length"}
    return func.HttpResponse(json.dumps(payload, indent=2), status_code=202, headers=headers)


async def get_backup(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, settings: Settings
) -> func.HttpResponse:
    """``GET /api/backups/{instanceId}``: the run's status, each disk's phase and copy progress."""
    instance_id = parse_instance_id(req.route_params.get("instanceId", ""))
    status = await client.get_status(instance_id)
    if not status or status.name != RUN_ORCHESTRATOR:
        return error_response(404, "RunNotFound", f"no backup run has instance id {instance_id!r}")
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    summary = RunSummary.read(status.output)
    total = summary.disk_count if summary is not None else custom.get("disks")
    disks: list[dict[str, Any]] = []
    if isinstance(total, int) and total > 0:
        statuses = await asyncio.gather(
            *(
                client.get_status(sub_orchestration_id(instance_id, i))
                for i in range(min(total, MAX_DISK_IDS))
            )
        )
        for index, disk_status in enumerate(statuses):
            disks.append(_disk_view(instance_id, index, disk_status))
    body = {
        "instanceId": instance_id,
        "runtimeStatus": _runtime(status),
        "createdTime": _time(status.created_time),
        "lastUpdatedTime": _time(status.last_updated_time),
        "progress": custom,
        "disks": disks,
        "result": summary.to_json() if summary is not None else None,
    }
    return json_response(200, body)


def _disk_view(run_id: str, index: int, status: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"index": index, "instanceId": sub_orchestration_id(run_id, index)}
    if not status or status.name != DISK_ORCHESTRATOR:
        view["runtimeStatus"] = "Pending"
        return view
    view["runtimeStatus"] = _runtime(status)
    custom = DiskStatus.read(status.custom_status)
    if custom is not None:
        view.update(
            disk=custom.disk,
            phase=custom.phase,
            bytesCopied=custom.bytes_copied,
            bytesTotal=custom.bytes_total,
            kind=custom.kind,
        )
    result = _disk_result(status.output)
    if result is not None:
        view.update(kind=result.kind, bytesMoved=result.bytes_moved, result=result.to_json())
    return view


def _disk_result(output: Any) -> DiskResult | None:
    try:
        return DiskResult.from_json(output)
    except InvalidInputError:
        return None


def _runtime(status: Any) -> str | None:
    runtime = status.runtime_status
    return getattr(runtime, "value", runtime)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- catalog listings ---------------------------------------------------------------------------------


async def list_backups(req: func.HttpRequest, catalog: Catalog) -> func.HttpResponse:
    """``GET /api/backups``: recent runs from the catalog, newest first."""
    top = parse_top(req.params, default=20, highest=100)
    listing = await asyncio.to_thread(catalog.list_runs, top)
    body: dict[str, Any] = {"runs": [run.to_json() for run in listing.items]}
    if listing.problems:
        body["unreadableRows"] = listing.problems
    return json_response(200, body)


async def list_restore_points(req: func.HttpRequest, catalog: Catalog) -> func.HttpResponse:
    """``GET /api/restore-points?disk=<id>``: a disk's restore points, newest first."""
    raw = req.params.get("disk")
    if not raw:
        raise InvalidInputError("disk", "is required: the disk's resource ID")
    disk = parse_disk_id(raw, "disk")
    include_failed = parse_bool_param(req.params, "includeFailed")
    top = parse_top(req.params, default=100, highest=1000)
    listing = await asyncio.to_thread(
        lambda: catalog.list_restore_points(str(disk), include_failed=include_failed, top=top)
    )
    body: dict[str, Any] = {
        "diskId": str(disk),
        "restorePoints": [point.to_json() for point in listing.items],
    }
    if listing.problems:
        body["unreadableRows"] = listing.problems
    return json_response(200, body)
