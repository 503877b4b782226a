"""The emulator's control surface: JSON over HTTP under ``/_emulator``, for tests, the demo and users.

It reaches past ARM into the emulated world: make a disk of any size with sparse content, write and trim
its pages (or apply "a day of churn"), read content back, and inject faults. No bearer token is needed
(it listens on loopback only). ``docs/emulator.md`` documents every route; :func:`handle` answers one
request as ``(status, content type, bytes)``. Bad input gets 400 with
``{"error": {"code": "InvalidInput", "message", "target"}}`` naming the field.
"""

from __future__ import annotations

import base64
import json
import random
import re
from typing import TYPE_CHECKING, Any

from backup.errors import InvalidInputError
from testbed.emulator import arm_errors
from testbed.emulator.arm_errors import ArmError
from testbed.emulator.pages import PAGE_SIZE, PageMap, churn, fill_sparse
from testbed.emulator.resources import (
    DISK_SKUS,
    GIB,
    ManagedResource,
    ResourceKey,
    ResourceType,
    normalize_location,
    render,
)

if TYPE_CHECKING:
    from testbed.emulator.arm import ComputeEmulator

PREFIX = "/_emulator"

#: Largest single read of content through the control surface.
MAX_READ = 64 << 20

_RESOURCE = re.compile(
    r"/resourceGroups/(?P<rg>[^/]+)/(?P<type>disks|snapshots)/(?P<name>[^/]+)(?:/(?P<action>[a-z-]+))?/?"
)
_GROUP = re.compile(r"/resourceGroups/(?P<rg>[^/]+)/?")

Answer = tuple[int, str, bytes]


def _json(status: int, body: Any) -> Answer:
    return status, "application/json; charset=utf-8", json.dumps(body).encode("utf-8")


def handle(emulator: ComputeEmulator, method: str, path: str, query: dict[str, str], body: bytes) -> Answer:
    """Answer one control request (``path`` is below ``/_emulator``)."""
    try:
        return _handle(emulator, method, path or "/", query, body)
    except InvalidInputError as error:
        return _json(
            400, {"error": {"code": "InvalidInput", "message": error.message, "target": error.field}}
        )
    except ArmError as error:
        return _json(error.status, error.body())


def _handle(emulator: ComputeEmulator, method: str, path: str, query: dict[str, str], body: bytes) -> Answer:
    service = emulator.service
    if path in ("/", ""):
        return _json(200, _index(emulator))
    if path == "/config":
        if method == "PATCH":
            changes = _object(body)
            try:
                service.settings.update(changes)
            except ValueError as error:
                raise InvalidInputError("config", str(error)) from None
            if "copy_pending_polls" in changes:
                value = changes["copy_pending_polls"]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidInputError("copy_pending_polls", "must be a non-negative integer")
                emulator.data_plane.copy_pending_polls = value
            if "copy_pending_seconds" in changes:
                seconds = changes["copy_pending_seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
                    raise InvalidInputError("copy_pending_seconds", "must be a non-negative number")
                emulator.data_plane.copy_pending_seconds = seconds
        elif method != "GET":
            return _not_allowed(method)
        return _json(200, _config(emulator))
    if path == "/faults":
        if method == "GET":
            return _json(200, {"faults": service.faults.pending()})
        if method == "POST":
            request = _parse(body)
            added = [
                service.faults.add(item) for item in (request if isinstance(request, list) else [request])
            ]
            return _json(201, {"added": len(added), "faults": service.faults.pending()})
        if method == "DELETE":
            service.faults.clear()
            return _json(200, {"faults": []})
        return _not_allowed(method)
    if path == "/grants" and method == "GET":
        return _json(200, service.active_grants())
    if path == "/reset" and method == "POST":
        service.reset()
        return _json(200, {"reset": True})
    group = _GROUP.fullmatch(path)
    if group is not None:
        if method != "PUT":
            return _not_allowed(method)
        request = _object(body) if body.strip() else {}
        location = _optional_str(request, "location") or "westus"
        made = service.ensure_resource_group(group["rg"], location)
        return _json(200, {"name": made.name, "location": made.location})
    match = _RESOURCE.fullmatch(path)
    if match is None:
        return _json(404, {"error": {"code": "NotFound", "message": f"no control route {path}"}})
    kind: ResourceType = "disks" if match["type"] == "disks" else "snapshots"
    key = ResourceKey(service.subscription_id, match["rg"], kind, match["name"])
    action = match["action"]
    if action is None:
        if method == "PUT" and kind == "disks":
            return _json(200, _create_disk(emulator, key, _object(body)))
        if method == "GET":
            return _json(200, render(service.find(key)))
        return _not_allowed(method)
    resource = service.find(key)
    if method == "GET":
        if action == "content":
            return _content(resource, query)
        if action == "digest":
            content = resource.content
            return _json(
                200,
                {
                    "sha256": content.sha256(),
                    "size": content.size,
                    "populated_bytes": content.populated_bytes(),
                },
            )
        if action == "ranges":
            return _json(
                200, {"size": resource.content.size, "ranges": [list(r) for r in resource.content.ranges()]}
            )
        return _json(404, {"error": {"code": "NotFound", "message": f"no control route {path}"}})
    if method != "POST":
        return _not_allowed(method)
    request = _object(body) if body.strip() else {}
    if action in ("write", "trim", "churn"):
        if kind != "disks":
            raise InvalidInputError("path", "snapshot content never changes; only disks can be written")
        if resource.has_active_sas():
            raise ArmError(
                409, "OperationNotAllowed", f"'{key.name}' has an active SAS; it is not attached to write."
            )
        if resource.upload_state is not None:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"'{key.name}' is {resource.upload_state}: it is written through its write SAS.",
            )
        if action == "write":
            _write(resource.content, request)
        elif action == "trim":
            resource.content.clear(_int(request, "offset"), _int(request, "length"))
        else:
            churn(
                resource.content,
                seed=_int(request, "seed"),
                write_fraction=_fraction(request, "write_fraction", 0.02),
                trim_fraction=_fraction(request, "trim_fraction", 0.005),
            )
        # No sha256 here: hashing a large disk takes seconds; ask /digest for it.
        content = resource.content
        return _json(200, {"size": content.size, "populated_bytes": content.populated_bytes()})
    if action == "copy-fails":
        description = _optional_str(request, "description") or "The source blob could not be read."
        emulator.data_plane.fail_next_copy(resource.id, description)
        return _json(200, {"resource": resource.id, "next_copy": "fails", "description": description})
    if action == "source-disappears":
        emulator.data_plane.make_source_disappear(resource.id)
        return _json(200, {"resource": resource.id, "source": "disappeared"})
    if action == "sas-expires":
        ended = service.expire_access(key)
        return _json(200, {"resource": resource.id, "sas": "expired" if ended else "none active"})
    return _json(404, {"error": {"code": "NotFound", "message": f"no control route {path}"}})


def _index(emulator: ComputeEmulator) -> dict[str, Any]:
    return {
        "arm_endpoint": emulator.endpoint,
        "subscription_id": emulator.subscription_id,
        "config": _config(emulator),
        "docs": "docs/emulator.md",
    }


def _config(emulator: ComputeEmulator) -> dict[str, Any]:
    settings = emulator.service.settings
    return {
        "operation_polls": settings.operation_polls,
        "page_size": settings.page_size,
        "retry_after": settings.retry_after,
        "copy_pending_polls": emulator.data_plane.copy_pending_polls,
        "background_copy_polls": settings.background_copy_polls,
        "copy_pending_seconds": emulator.data_plane.copy_pending_seconds,
    }


def _create_disk(emulator: ComputeEmulator, key: ResourceKey, request: dict[str, Any]) -> dict[str, Any]:
    size = request.get("size_bytes")
    if size is None:
        size_gb = request.get("size_gb")
        if isinstance(size_gb, bool) or not isinstance(size_gb, int) or size_gb <= 0:
            raise InvalidInputError(
                "size_bytes", "give size_bytes (a multiple of 512) or size_gb (a positive integer)"
            )
        size = size_gb * GIB
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % PAGE_SIZE:
        raise InvalidInputError("size_bytes", f"must be a positive multiple of {PAGE_SIZE}; got {size!r}")
    content = PageMap(size)
    fill = request.get("fill")
    if fill is not None:
        if not isinstance(fill, dict):
            raise InvalidInputError("fill", "must be an object {seed, fraction}")
        fill_sparse(content, seed=_int(fill, "seed"), fraction=_fraction(fill, "fraction", 0.1))
    tags = request.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidInputError("tags", "must be an object of string values")
    sku = _optional_str(request, "sku") or "Standard_LRS"
    if sku not in DISK_SKUS:
        raise InvalidInputError("sku", f"must be one of {', '.join(sorted(DISK_SKUS))}; got {sku!r}")
    group = emulator.service.ensure_resource_group(key.resource_group)
    resource = ManagedResource(
        key=key,
        location=normalize_location(_optional_str(request, "location") or group.location),
        content=content,
        creation_data={"createOption": "Empty"},
        sku_name=sku,
        tags=dict(tags),
        family_id=None,
    )
    resource.family_id = resource.unique_id  # the family every incremental snapshot of this disk joins
    emulator.service.put_direct(resource)
    return render(resource)


def _write(content: PageMap, request: dict[str, Any]) -> None:
    offset = _int(request, "offset")
    data = request.get("data")
    if data is not None:
        if not isinstance(data, str):
            raise InvalidInputError("data", "must be base64 text")
        try:
            payload = base64.b64decode(data, validate=True)
        except ValueError:
            raise InvalidInputError("data", "is not valid base64") from None
    else:
        length = _int(request, "length")
        seed = _int(request, "seed")
        if length <= 0 or length > MAX_READ:
            raise InvalidInputError("length", f"must be between 1 and {MAX_READ}")
        payload = random.Random(seed).randbytes(length)  # noqa: S311 - synthetic test content
    content.write(offset, payload)


def _content(resource: ManagedResource, query: dict[str, str]) -> Answer:
    size = resource.content.size
    try:
        offset = int(query.get("offset", "0"))
        length = int(query.get("length", str(min(size, MAX_READ))))
    except ValueError:
        raise InvalidInputError("offset", "offset and length must be integers") from None
    if length > MAX_READ:
        raise InvalidInputError("length", f"at most {MAX_READ} bytes per read")
    return 200, "application/octet-stream", resource.content.read(offset, length)


def _not_allowed(method: str) -> Answer:
    error = arm_errors.method_not_allowed(method)
    return _json(405, error.body())


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError("body", f"is not JSON: {error}") from None


def _object(body: bytes) -> dict[str, Any]:
    parsed = _parse(body)
    if not isinstance(parsed, dict):
        raise InvalidInputError("body", "must be a JSON object")
    return parsed


def _int(request: dict[str, Any], name: str) -> int:
    value = request.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(name, f"must be an integer; got {value!r}")
    return value


def _fraction(request: dict[str, Any], name: str, default: float) -> float:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidInputError(name, f"must be a number between 0 and 1; got {value!r}")
    return float(value)


def _optional_str(request: dict[str, Any], name: str) -> str | None:
    value = request.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(name, "must be a string")
    return value
