"""The HTTP routes: validate what a caller sent, start runs, report status and the catalog.

Routes (auth level FUNCTION):

- ``POST /api/backups``: start a run. The JSON body selects disks with exactly one of ``diskIds`` (a list
  of disk resource IDs), ``tag`` (``{"name": ..., "value": ...}``) or ``resourceGroup`` (a name in the
  configured subscription); an empty body or ``{}`` uses the configured selection. ``options`` may set
  ``kind`` (``"incremental"``, the default: the chain copies what changed when it can; ``"full"``: copy
  every disk whole tonight) and ``keepSnapshot`` (bool). Answers 202 with the run id and ``statusUri``
  (also the ``Location`` header): this API's own status route. Not the Durable management URLs: they
  carry the app's system key, which can terminate or purge any instance, and a caller needs none of that.
- ``GET /api/backups/{instanceId}``: the run's status, its disks counted by phase, and one page of its
  disks (``?top=`` 1-1000, default 100; ``?continuationToken=`` from the previous page's
  ``nextContinuationToken``), each with its phase, copy progress, how it is copied tonight (``kind``)
  and, once done, the bytes it moved (``bytesMoved``); read with a bounded number of Durable queries
  however many disks the run has (:mod:`backup.workflow.run_progress`).
- ``GET /api/backups``: recent runs, from the catalog (``?top=`` 1-100, default 20).
- ``GET /api/restore-points?disk=<disk resource ID>``: the disk's restore points, newest first
  (``?includeFailed=true`` adds failed attempts, ``?includeExpired=true`` the points retention expired;
  ``?top=`` 1-1000, default 100).

Anything a caller sends wrong gets 400 with ``{"error": {"code", "field", "message"}}`` naming the field
(bodies are parsed with limits on nesting and number size, :mod:`backup.app.bounded_json`; what a caller
sent is echoed back at most in part); an unknown run 404; a backend that does not answer 503; a 500 only
for our own faults, and then without internals.
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

from backup.app.bounded_json import parse_json
from backup.app.instance_query import query_instances
from backup.azure.resource_id import parse_disk_id
from backup.catalog import Catalog
from backup.errors import (
    AzureHttpError,
    ConfigurationError,
    InvalidInputError,
    TransportError,
    UnexpectedResponseError,
)
from backup.failures import INTERNAL_MESSAGE, Failure, FailureCode, one_line
from backup.redact import get_logger, strip_query
from backup.report import (
    HISTORY_POINTS,
    HistoryPoint,
    gather_history,
    render_message_page,
    render_run_report,
)
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, RunInput, RunSummary, Selection
from backup.workflow.run_progress import (
    ACTIVE_STATUSES,
    MAX_LANES,
    disk_prefix,
    disk_view,
    lane_prefix,
    phase_counts,
    unwrap_token,
    wait_prefix,
    with_copy_progress,
    wrap_token,
)
from backup.workflow.startup import (
    disk_ids_selection,
    new_run_id,
    resource_group_selection,
    run_input,
    tag_selection,
)

log = get_logger(__name__)

MAX_BODY_BYTES = 256 * 1024
#: What an error answer shows at most of its message and of a field's name (both may echo input).
MAX_ERROR_MESSAGE = 300
MAX_ERROR_FIELD = 100
_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_TOP_LEVEL_KEYS = {"diskIds", "tag", "resourceGroup", "options"}
_OPTION_KEYS = {"kind", "keepSnapshot"}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,98}")


# -- request parsing (pure) ---------------------------------------------------------------------------


def parse_start_request(body: bytes, settings: Settings) -> RunInput:
    """Validate a ``POST /api/backups`` body into the run input; errors name the field."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInputError("body", f"is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    data: Any = {}
    if body.strip():
        data = parse_json(body, "body")
    if not isinstance(data, dict):
        raise InvalidInputError("body", f"must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise InvalidInputError(
            _key(unknown[0]), f"is not a known field (known: {', '.join(sorted(_TOP_LEVEL_KEYS))})"
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
            f"options.{_key(unknown[0])}", f"is not a known option (known: {', '.join(sorted(_OPTION_KEYS))})"
        )
    if "kind" in options:
        kind = options["kind"]
        if kind not in ("incremental", "full"):
            raise InvalidInputError("options.kind", f"{echo(kind)} is not incremental or full")
        force_full = kind == "full"
    if "keepSnapshot" in options:
        if not isinstance(options["keepSnapshot"], bool):
            raise InvalidInputError("options.keepSnapshot", "must be true or false")
        keep_snapshot = options["keepSnapshot"]
    return run_input(settings, "http", selection, keep_snapshot=keep_snapshot, force_full=force_full)


def _key(name: str) -> str:
    """A caller's key as a field name: itself when it reads as one, else quoted (and shortened)."""
    return name if _PLAIN_KEY.fullmatch(name) else echo(name)


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


def parse_page_token(params: Any, run_id: str) -> str | None:
    """The ``continuationToken`` query parameter: a token an earlier page of this run gave out."""
    raw = params.get("continuationToken")
    if raw is None:
        return None
    return unwrap_token(run_id, raw, "continuationToken")


def echo(value: object, limit: int = 100) -> str:
    """A caller's value, quoted, shortened for an error message (never echoed whole)."""
    return one_line(repr(value), limit)


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
    """The one error body shape: ``{"error": {"code", "message", "field"?}}``, each redacted, on one
    line and bounded (a message or field may echo what a caller sent)."""
    error: dict[str, Any] = {"code": code, "message": one_line(message, MAX_ERROR_MESSAGE)}
    if field is not None:
        error["field"] = one_line(field, MAX_ERROR_FIELD)
    return json_response(status, {"error": error})


async def guarded(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run a handler: caller mistakes become 400, off-spec Azure answers 502, a backend that did not
    answer 503, a setting that does not work (no token could be had) 500 ``InvalidSettings``, anything
    else 500 ``InternalError``."""
    try:
        return await handler()
    except InvalidInputError as exc:
        return error_response(400, "InvalidInput", exc.problem, exc.field)
    except UnexpectedResponseError as exc:
        # Not the caller's fault: a backend answered off its spec. The request's URL stays in the log;
        # the caller gets what was wrong and the request id to quote.
        log.warning("a backend answered unexpectedly: %s", exc)
        request_id = f" (x-ms-request-id {exc.request_id})" if exc.request_id else ""
        message = f"a backing service answered unexpectedly: {exc.field}: {exc.problem}{request_id}"
        return error_response(502, "BadGateway", message)
    except (TransportError, AzureHttpError) as exc:
        log.warning("a backend did not answer: %s", exc)
        return error_response(503, "BackendUnavailable", "a backing service did not answer; try again later")
    except ConfigurationError as exc:
        # Not the caller's mistake, and not one that waiting mends (a 503 would invite retries): a setting
        # or the app's identity (no token could be had) needs a person. The details stay in the log.
        log.error("a setting does not work: %s", exc)
        message = f"the app's settings do not work: {exc.setting}; its logs have the details"
        return error_response(500, "InvalidSettings", message)
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
    status_uri = _route_url(req.url, f"backups/{instance_id}")
    payload = {"runId": instance_id, "selection": run.selection.to_json(), "statusUri": status_uri}
    headers = {"Location": status_uri, "Retry-After": "10"}
    return json_response(202, payload, headers)


def _route_url(request_url: str, route: str) -> str:
    """The URL of another route of this API, beside the one ``request_url`` called (no query)."""
    base = strip_query(request_url)
    marker = "/api/"
    prefix = base[: base.index(marker) + len(marker)] if marker in base else base.rstrip("/") + marker
    return prefix + route


async def get_backup(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, settings: Settings
) -> func.HttpResponse:
    """``GET /api/backups/{instanceId}``: the run's status, its disks by phase and a page of its disks.

    At most five Durable calls whatever the run's size: the run's status, its lanes, its disks at work
    and their waits (while it runs; each bounded by the lane count: the copies' progress is in their
    copy watches), and one page of its disk orchestrations.
    """
    instance_id = parse_instance_id(req.route_params.get("instanceId", ""))
    top = parse_top(req.params, default=100, highest=1000)
    continuation = parse_page_token(req.params, instance_id)
    status = await client.get_status(instance_id)
    if not status or status.name != RUN_ORCHESTRATOR:
        return error_response(404, "RunNotFound", f"no backup run has instance id {instance_id!r}")
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    summary = RunSummary.read(status.output)
    runtime = _runtime(status)
    running = summary is None  # also a run that ended without one (failed, terminated): count its lanes
    lanes: list[dict[str, Any]] = []
    active: list[dict[str, Any]] = []
    waits: list[dict[str, Any]] = []
    disks = disk_prefix(instance_id)
    if running:
        (lanes, _), (active, _), (waits, _) = await asyncio.gather(
            query_instances(client, prefix=lane_prefix(instance_id), top=MAX_LANES),
            query_instances(client, prefix=disks, top=MAX_LANES, statuses=ACTIVE_STATUSES),
            query_instances(client, prefix=wait_prefix(instance_id), top=MAX_LANES, statuses=ACTIVE_STATUSES),
        )
    page, next_token = await query_instances(client, prefix=disks, top=top, continuation=continuation)
    at_work = with_copy_progress(instance_id, [disk_view(instance_id, d) for d in active], waits)
    listed = with_copy_progress(instance_id, [disk_view(instance_id, d) for d in page], waits)
    result = summary.to_json() if summary is not None else None
    if result is not None:
        del result["disks"]  # each disk's result is on its page; a run's may list a thousand
    body: dict[str, Any] = {
        "instanceId": instance_id,
        "runtimeStatus": runtime,
        "createdTime": _time(status.created_time),
        "lastUpdatedTime": _time(status.last_updated_time),
        "progress": custom,
        "counts": phase_counts(custom, summary, lanes, at_work),
        "disks": [view.to_json() for view in listed],
        "nextContinuationToken": wrap_token(instance_id, next_token) if next_token else None,
        "result": result,
    }
    if summary is None and runtime in ("Failed", "Terminated"):
        # The orchestration ended without a summary (a bug, or terminated by hand); its output is the
        # platform's text, for the logs only.
        terminated = runtime == "Terminated"
        failure = (
            Failure(FailureCode.TERMINATED, "the run was terminated")
            if terminated
            else Failure(FailureCode.INTERNAL, INTERNAL_MESSAGE)
        )
        body["error"] = failure.to_json()
    return json_response(200, body)


def _runtime(status: Any) -> str | None:
    runtime = status.runtime_status
    return getattr(runtime, "value", runtime)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- the run report --------------------------------------------------------------------------------


async def get_backup_report(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, catalog: Catalog
) -> func.HttpResponse:
    """``GET /api/backups/{instanceId}/report``: the run's HTML report (:mod:`backup.report`).

    From the run's Durable status when the task hub still has it, else from the catalog. A running run
    gets a short page saying so; a report of a run whose disks' history the catalog cannot give is
    still a report, without the charts.
    """
    instance_id = parse_instance_id(req.route_params.get("instanceId", ""))
    status = await client.get_status(instance_id)
    summary: RunSummary | None = None
    if status and status.name == RUN_ORCHESTRATOR:
        summary = RunSummary.read(status.output)
        if summary is None:
            phase = status.custom_status.get("phase") if isinstance(status.custom_status, dict) else None
            page = render_message_page(
                f"Run {instance_id}",
                f"The run is {str(_runtime(status)).lower()} ({phase or 'starting'}): "
                "its report comes when it ends.",
            )
            return _html(page)
    if summary is None:
        summary = await asyncio.to_thread(catalog.run_summary, instance_id)
    if summary is None:
        return error_response(404, "RunNotFound", f"no backup run has instance id {instance_id!r}")
    found = summary

    def history() -> dict[str, list[HistoryPoint]]:
        def points(disk_id: str) -> list[dict[str, Any]]:
            listing = catalog.list_restore_points(disk_id, include_failed=True, top=HISTORY_POINTS)
            return [point.to_json() for point in listing.items]

        return gather_history(found, points)

    try:
        drawn = await asyncio.to_thread(history)
    except (TransportError, AzureHttpError, UnexpectedResponseError) as exc:
        log.warning("report of %s without history: %s", instance_id, exc)
        drawn = {}
    return _html(render_run_report(found, drawn, generated_at=datetime.now(UTC)))


def _html(page: str) -> func.HttpResponse:
    return func.HttpResponse(
        body=page,
        status_code=200,
        mimetype="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:"},
    )


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
    include_expired = parse_bool_param(req.params, "includeExpired")
    top = parse_top(req.params, default=100, highest=1000)
    listing = await asyncio.to_thread(
        lambda: catalog.list_restore_points(
            str(disk), include_failed=include_failed, include_expired=include_expired, top=top
        )
    )
    body: dict[str, Any] = {
        "diskId": str(disk),
        "restorePoints": [point.to_json() for point in listing.items],
    }
    if listing.problems:
        body["unreadableRows"] = listing.problems
    return json_response(200, body)
