"""What the emulated Compute RP does, without HTTP: the rules of disks, snapshots, grants and operations.

:class:`ComputeService` holds the resource groups, disks, snapshots and long-running operations of one
subscription and implements each spec operation as a method that returns a :class:`Reply` (answered at
once) or an :class:`Accepted` (a long-running operation was started) and raises
:class:`~testbed.emulator.arm_errors.ArmError` for every refusal. :mod:`testbed.emulator.arm` wraps it in
HTTP; the control surface (:mod:`testbed.emulator.control`) reaches past ARM into the same state.

Rules modelled (Azure's, see ``docs/emulator.md`` for the sources and what is left out):

- a snapshot's content is the disk's content at the PUT (``PageMap.frozen()``), never changed after;
- incremental snapshots of one disk share its ``incrementalSnapshotFamilyId``; at most 500 per disk;
- at most 5 snapshots of one family hold an active SAS at once (the 6th grant: 409 OperationNotAllowed);
- a disk or snapshot with an active SAS cannot be deleted (409 OperationNotAllowed): revoke first;
- an incremental snapshot of a Premium SSD v2 / Ultra disk copies in the background after its creation:
  ``completionPercent`` rises over ``background_copy_polls`` GETs of it, its ``snapshotAccessState`` is
  ``Pending`` (``InstantAccess`` if asked for) until then; meanwhile it cannot be granted access, copied,
  or (unless instant access) restored (409 OperationNotAllowed), and a disk has at most 3 such pending
  snapshots;
- Import needs ``storageAccountId`` naming the account that holds ``sourceUri``;
- DELETE of something absent answers 204, as ARM does;
- direct upload: ``createOption: Upload`` with ``uploadSizeBytes`` (20 MiB + 512 to 32 TiB + 512, less
  512 a multiple of MiB) makes a ``ReadyToUpload`` disk of ``uploadSizeBytes - 512`` bytes; a ``Write``
  grant gives a write SAS and ``ActiveUpload``; revoke makes it ``Unattached`` with what was written.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from backup.errors import DiskBackupError
from backup.redact import get_logger, strip_query
from testbed.emulator import arm_errors
from testbed.emulator.faults import FaultPlan
from testbed.emulator.operations import Operation, Outcome, failure_error
from testbed.emulator.pages import PageMap
from testbed.emulator.resources import (
    BACKGROUND_COPY_SKUS,
    GIB,
    ManagedResource,
    ResourceKey,
    ResourceType,
    is_valid_name,
    is_valid_resource_group,
    normalize_location,
    parse_compute_id,
    parse_storage_account_id,
    render,
    utc_now,
)
from testbed.emulator.resources import size_gb as gib_of
from testbed.emulator.schema import SchemaProblem, validate_body

log = get_logger(__name__)

#: Azure's limits on incremental snapshots and their SAS (learn.microsoft.com, incremental snapshots).
MAX_INCREMENTAL_PER_DISK = 500
MAX_ACTIVE_SAS_PER_FAMILY = 5
#: Pending (background-copying) snapshots a Premium SSD v2 / Ultra disk may have at once.
MAX_PENDING_BACKGROUND_COPIES = 3
#: ``uploadSizeBytes`` bounds (DiskRP.json CreationData.uploadSizeBytes): 20972032 ("20 MiB + 512 bytes
#: for the VHD footer") to 35183298347520 ("32 TiB + 512": in fact 32,767 GiB, the largest managed disk,
#: + 512); the size less the footer must be whole MiB.
UPLOAD_FOOTER = 512
MIN_UPLOAD_SIZE = 20 * (1 << 20) + UPLOAD_FOOTER
MAX_UPLOAD_SIZE = 32767 * (1 << 30) + UPLOAD_FOOTER
_MIB = 1 << 20
#: How many operations the emulator remembers; past that, the oldest finished ones are forgotten (their
#: status URLs then answer 404, as Azure's do once an operation's record expires).
MAX_KEPT_OPERATIONS = 2000


class DataPlanePort(Protocol):
    """What the ARM side needs of :class:`testbed.emulator.dataplane.DataPlane`."""

    copy_pending_polls: int
    copy_pending_seconds: float

    def grant(
        self, *, resource_id: str, family_id: str | None, content: PageMap, duration_seconds: int
    ) -> str:
        """Make ``content`` readable behind a fresh read SAS and return its URL."""
        ...

    def revoke(self, resource_id: str) -> None:
        """End the SAS of ``resource_id`` (a write SAS too; what was uploaded stays)."""
        ...

    def active_grants(self, family_id: str) -> int:
        """How many snapshots of the family hold an active SAS."""
        ...

    def read_blob(self, source_uri: str) -> PageMap:
        """The content of a page blob (Import)."""
        ...

    def grant_upload(self, *, resource_id: str, upload_size: int, duration_seconds: int) -> str:
        """A write SAS onto the resource's upload blob; replaces its earlier one, keeps what was written."""
        ...

    def finish_upload(self, resource_id: str) -> PageMap | None:
        """End the upload: its SAS stops; the disk's bytes (``None`` if write access was never granted)."""
        ...

    def forget(self, resource_id: str) -> None:
        """The resource is gone: revoke and drop what the data plane holds for it."""
        ...

    def expire(self, resource_id: str) -> bool:
        """End the resource's read SAS now, as its expiry would (a copy still reading from it fails)."""
        ...

    def fail_next_copy(self, resource_id: str, description: str) -> None:
        """The next copy from this resource's SAS fails with ``description``."""
        ...

    def make_source_disappear(self, resource_id: str) -> None:
        """This resource's SAS source vanishes (copies from it fail)."""
        ...


@dataclass
class Reply:
    """An answer given at once: status and JSON body (``None``: no body)."""

    status: int
    body: dict[str, Any] | None = None


@dataclass
class Accepted:
    """A long-running operation was started: answer 202 with its URLs and ``body`` (if any)."""

    operation: Operation
    body: dict[str, Any] | None = None


@dataclass
class Settings:
    """The emulator's knobs, changeable at run time through the control surface."""

    operation_polls: int = 2
    page_size: int = 2
    retry_after: int = 1
    #: GETs of a new Premium SSD v2 / Ultra snapshot until its background copy completes (0: at once).
    background_copy_polls: int = 3

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``{"operation_polls": 3, ...}``; raises ``ValueError`` naming a bad field."""
        for name, value in changes.items():
            if name not in ("operation_polls", "page_size", "retry_after", "background_copy_polls"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
            if name == "page_size" and value < 1:
                raise ValueError("page_size must be at least 1")
            setattr(self, name, value)


@dataclass
class ResourceGroup:
    """A resource group the emulator knows (ARM's resource groups are another RP's; here they are a set)."""

    name: str
    location: str = "westus"


@dataclass
class ComputeService:
    """Disks, snapshots and operations of one subscription; thread-safe. See the module docstring."""

    data_plane: DataPlanePort
    subscription_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    settings: Settings = field(default_factory=Settings)
    faults: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        # Grants of one snapshot family (or one resource) serialise among themselves, so the count of a
        # family's active SAS holds, without blocking reads or other disks' grants (materialising
        # content takes a while: one lock for every grant held up a 1,000-disk run's 16 lanes).
        self._grant_locks: dict[str, threading.Lock] = {}
        self._groups: dict[str, ResourceGroup] = {}
        self._resources: dict[tuple[str, str, str, str], ManagedResource] = {}
        self._operations: dict[str, Operation] = {}

    # -- resource groups and lookups ----------------------------------------------------------------

    def ensure_resource_group(self, name: str, location: str = "westus") -> ResourceGroup:
        """Create a resource group (or return the existing one)."""
        if not is_valid_resource_group(name):
            raise arm_errors.invalid_parameter(
                "resourceGroupName", f"Resource group name '{name}' is invalid."
            )
        with self._lock:
            group = self._groups.get(name.lower())
            if group is None:
                group = ResourceGroup(name, normalize_location(location))
                self._groups[name.lower()] = group
            return group

    def check_scope(self, subscription_id: str, resource_group: str | None) -> None:
        """Raise 404 unless the subscription is ours and the resource group (if named) exists."""
        if subscription_id.lower() != self.subscription_id.lower():
            raise arm_errors.subscription_not_found(subscription_id)
        if resource_group is not None:
            with self._lock:
                if resource_group.lower() not in self._groups:
                    raise arm_errors.resource_group_not_found(resource_group)

    def find(self, key: ResourceKey) -> ManagedResource:
        """The resource at ``key`` or 404 (``ResourceGroupNotFound``/``ResourceNotFound``)."""
        self.check_scope(key.subscription_id, key.resource_group)
        with self._lock:
            resource = self._resources.get(key.folded())
        if resource is None:
            raise arm_errors.resource_not_found(key.resource_type, key.name, key.resource_group)
        return resource

    def resources(self) -> list[ManagedResource]:
        """Every disk and snapshot (for the control surface)."""
        with self._lock:
            return list(self._resources.values())

    def operation(self, operation_id: str) -> Operation:
        """A long-running operation by id, or 404."""
        with self._lock:
            found = self._operations.get(operation_id)
        if found is None:
            raise arm_errors.operation_not_found(operation_id)
        return found

    def _advance_operations_on(self, key: ResourceKey) -> None:
        # A client may poll the resource itself (provisioningState) instead of the operation URLs.
        with self._lock:
            running = [op for op in self._operations.values() if op.key == key and not op.done]
        for op in running:
            op.advance()

    # -- GET and lists ------------------------------------------------------------------------------

    def get(self, key: ResourceKey) -> Reply:
        """``Disks_Get`` / ``Snapshots_Get``; a GET of a created snapshot advances its background copy."""
        resource = self.find(key)
        created = resource.provisioning_state == "Succeeded"
        self._advance_operations_on(key)
        resource = self.find(key)
        if created:
            with self._lock:
                resource.copy_polls_left = max(0, resource.copy_polls_left - 1)
        return Reply(200, render(resource))

    def list(
        self,
        subscription_id: str,
        resource_group: str | None,
        resource_type: ResourceType,
        skiptoken: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list operation and the ``$skiptoken`` of the next (``None``: last page).

        The order is stable (resource group, then name) and the token names the last item returned, so a
        resource created or deleted between pages neither repeats nor hides another.
        """
        self.check_scope(subscription_id, resource_group)
        after = _decode_token(skiptoken) if skiptoken else None
        with self._lock:
            chosen = sorted(
                (
                    ((r.key.resource_group.lower(), r.key.name.lower()), r)
                    for r in self._resources.values()
                    if r.key.resource_type == resource_type
                    and (resource_group is None or r.key.resource_group.lower() == resource_group.lower())
                ),
                key=lambda pair: pair[0],
            )
        if after is not None:
            chosen = [pair for pair in chosen if pair[0] > after]
        page = chosen[: self.settings.page_size]
        more = len(chosen) > len(page)
        token = _encode_token(page[-1][0]) if more and page else None
        return [render(r) for _, r in page], token

    # -- PUT ----------------------------------------------------------------------------------------

    def create_or_update(self, key: ResourceKey, body: Any) -> Reply | Accepted:
        """``Disks_CreateOrUpdate`` / ``Snapshots_CreateOrUpdate``."""
        definition = "Disk" if key.resource_type == "disks" else "Snapshot"
        _validate(definition, body)
        if not is_valid_name(key.name):
            raise arm_errors.invalid_parameter(
                "diskName" if key.resource_type == "disks" else "snapshotName",
                f"The entity name '{key.name}' is invalid: use a-z, A-Z, 0-9, _ and -, "
                "at most 80 characters.",
            )
        self.check_scope(key.subscription_id, key.resource_group)
        properties = body.get("properties") or {}
        if not properties.get("creationData"):
            raise arm_errors.invalid_parameter(
                "properties.creationData", "Required parameter 'properties.creationData' is missing (null)."
            )
        creation = dict(properties["creationData"])
        with self._lock:
            existing = self._resources.get(key.folded())
        if existing is not None:
            return self._update(existing, body, properties, creation)
        resource = self._new_resource(key, body, properties, creation)
        operation_name = (
            "Disks_CreateOrUpdate" if key.resource_type == "disks" else "Snapshots_CreateOrUpdate"
        )
        with self._lock:
            if key.folded() in self._resources:
                raise arm_errors.operation_not_allowed(f"'{key.name}' is being created by another request.")
            self._resources[key.folded()] = resource

        def complete() -> dict[str, Any]:
            resource.provisioning_state = "Succeeded"
            return render(resource)

        def fail() -> None:
            resource.provisioning_state = "Failed"

        return self._start(operation_name, resource, complete, fail, body_now=lambda: render(resource))

    def _update(
        self,
        resource: ManagedResource,
        body: dict[str, Any],
        properties: dict[str, Any],
        creation: dict[str, Any],
    ) -> Reply | Accepted:
        old = resource.creation_data
        if str(creation.get("createOption", "")).lower() != str(old.get("createOption", "")).lower():
            raise arm_errors.property_change_not_allowed("properties.creationData.createOption")
        for name in ("sourceResourceId", "sourceUri"):
            if (
                name in creation
                and str(creation[name]).strip("/").lower() != str(old.get(name, "")).strip("/").lower()
            ):
                raise arm_errors.property_change_not_allowed(f"properties.creationData.{name}")
        if "uploadSizeBytes" in creation and creation["uploadSizeBytes"] != old.get("uploadSizeBytes"):
            raise arm_errors.property_change_not_allowed("properties.creationData.uploadSizeBytes")
        if normalize_location(body["location"]) != resource.location:
            raise arm_errors.property_change_not_allowed("location")
        new_size = properties.get("diskSizeGB")
        if new_size is not None and resource.upload_state is not None:
            if new_size == gib_of(resource.content.size):
                new_size = None  # the size it has: not a resize
            else:
                raise arm_errors.operation_not_allowed(
                    f"'{resource.key.name}' is in state {resource.upload_state}: it cannot be resized "
                    "before its upload is finished.",
                    target="properties.diskSizeGB",
                )
        if new_size is not None:
            if resource.key.resource_type == "snapshots":
                if new_size * GIB < resource.content.size:
                    raise arm_errors.invalid_parameter("properties.diskSizeGB", "A snapshot cannot shrink.")
            elif new_size * GIB < resource.content.size:
                raise arm_errors.operation_not_allowed(
                    f"Disk resizing is allowed only to a larger size: {resource.content.size // GIB} GiB "
                    f"to {new_size} GiB was requested.",
                    target="properties.diskSizeGB",
                )
        operation_name = (
            "Disks_CreateOrUpdate" if resource.key.resource_type == "disks" else "Snapshots_CreateOrUpdate"
        )
        tags = body.get("tags")

        def complete() -> dict[str, Any]:
            if tags is not None:
                resource.tags = dict(tags)
            if (
                new_size is not None
                and resource.key.resource_type == "disks"
                and new_size * GIB > resource.content.size
            ):
                resource.content.resize(new_size * GIB)
            resource.provisioning_state = "Succeeded"
            return render(resource)

        def fail() -> None:
            resource.provisioning_state = "Failed"

        resource.provisioning_state = "Updating"
        return self._start(operation_name, resource, complete, fail, body_now=lambda: render(resource))

    # -- PATCH --------------------------------------------------------------------------------------

    def update_tags(self, key: ResourceKey, body: Any) -> Reply | Accepted:
        """``Snapshots_Update`` (PATCH): the emulator changes tags only, as a long-running operation.

        A patch of anything else (properties, sku) is refused with 400 rather than half-applied.
        """
        _validate("SnapshotUpdate", body)
        if not isinstance(body, dict):
            raise arm_errors.invalid_request_content("the request body is not a JSON object")
        others = sorted(name for name in body if name != "tags" and body[name] not in (None, {}))
        if others:
            raise arm_errors.invalid_parameter(
                others[0], f"PATCH of '{others[0]}' is not supported by this emulator (tags only)."
            )
        resource = self.find(key)
        if resource.provisioning_state != "Succeeded":
            raise arm_errors.operation_not_allowed(
                f"'{key.name}' is in provisioning state {resource.provisioning_state}; it cannot be updated."
            )
        tags = body.get("tags")
        if tags is not None and len(tags) > 50:
            raise arm_errors.invalid_parameter("tags", "At most 50 tags are allowed per resource.")

        def complete() -> dict[str, Any]:
            if tags is not None:
                resource.tags = dict(tags)
            resource.provisioning_state = "Succeeded"
            return render(resource)

        def fail() -> None:
            resource.provisioning_state = "Succeeded"

        resource.provisioning_state = "Updating"
        return self._start("Snapshots_Update", resource, complete, fail, body_now=lambda: render(resource))

    def _new_resource(
        self, key: ResourceKey, body: dict[str, Any], properties: dict[str, Any], creation: dict[str, Any]
    ) -> ManagedResource:
        is_disk = key.resource_type == "disks"
        option = str(creation.get("createOption", ""))
        canonical = {o.lower(): o for o in ("Empty", "Import", "Copy", "CopyStart", "Upload")}.get(
            option.lower()
        )
        allowed = ("Empty", "Import", "Copy", "Upload") if is_disk else ("Import", "Copy", "CopyStart")
        if canonical not in allowed:
            raise arm_errors.invalid_parameter(
                "properties.creationData.createOption",
                f"createOption '{option}' is not supported for {key.resource_type} by this emulator "
                f"(supported: {', '.join(allowed)}).",
            )
        creation["createOption"] = canonical
        size_gb = properties.get("diskSizeGB")
        if size_gb is not None and size_gb <= 0:
            raise arm_errors.invalid_parameter("properties.diskSizeGB", "diskSizeGB must be positive.")
        family_id: str | None = None
        background_copy = False
        incremental = bool(properties.get("incremental", False)) and not is_disk
        upload_state: Literal["ReadyToUpload"] | None = None
        if canonical == "Upload":
            content = PageMap(_upload_disk_size(creation, size_gb))
            size_gb = None  # checked against the upload size; an upload disk need not be whole GiB
            upload_state = "ReadyToUpload"
        elif canonical == "Empty":
            if size_gb is None:
                raise arm_errors.invalid_parameter(
                    "properties.diskSizeGB", "Required parameter 'diskSizeGB' is missing (null)."
                )
            content = PageMap(size_gb * GIB)
        elif canonical == "Import":
            content = self._import(creation)
        else:
            source = self._copy_source(creation, for_disk=is_disk)
            creation["sourceUniqueId"] = source.unique_id
            if is_disk:
                content = source.content.copy()
            else:
                content = source.content.frozen()
                if incremental:
                    family_id = self._incremental_family(source)
                    background_copy = (
                        source.key.resource_type == "disks" and source.sku_name in BACKGROUND_COPY_SKUS
                    )
                    if background_copy:
                        self._check_pending_copies(source, family_id)
        if size_gb is not None and size_gb * GIB != content.size:
            if size_gb * GIB < content.size:
                raise arm_errors.invalid_parameter(
                    "properties.diskSizeGB",
                    f"diskSizeGB {size_gb} is smaller than the source ({content.size} bytes).",
                )
            if not is_disk:
                raise arm_errors.invalid_parameter(
                    "properties.diskSizeGB", "A snapshot takes the size of its source."
                )
            content.resize(size_gb * GIB)
        if not is_disk:
            content = content.frozen()
        sku = (body.get("sku") or {}).get("name") or "Standard_LRS"
        echoed: dict[str, Any] = {
            name: properties[name]
            for name in ("osType", "hyperVGeneration", "networkAccessPolicy", "publicNetworkAccess")
            if name in properties
        }
        return ManagedResource(
            key=key,
            location=normalize_location(body["location"]),
            content=content,
            creation_data=creation,
            sku_name=sku,
            tags=dict(body.get("tags") or {}),
            provisioning_state="Updating",
            incremental=incremental,
            family_id=str(uuid.uuid4()) if is_disk else family_id,
            extra_properties=echoed,
            background_copy=background_copy,
            copy_polls_total=self.settings.background_copy_polls if background_copy else 0,
            copy_polls_left=self.settings.background_copy_polls if background_copy else 0,
            instant_access=background_copy and creation.get("instantAccessDurationMinutes") is not None,
            upload_state=upload_state,
        )

    def _check_pending_copies(self, disk: ManagedResource, family_id: str | None) -> None:
        with self._lock:
            pending = sum(
                1
                for r in self._resources.values()
                if r.background_copy
                and r.family_id == family_id
                and r.copying
                and r.provisioning_state != "Failed"  # a failed creation holds no copy
            )
        if pending >= MAX_PENDING_BACKGROUND_COPIES:
            raise arm_errors.operation_not_allowed(
                f"The disk '{disk.key.name}' already has {pending} snapshots whose background copy is in "
                f"progress; at most {MAX_PENDING_BACKGROUND_COPIES} may be pending at once.",
            )

    def _incremental_family(self, source: ManagedResource) -> str | None:
        family = source.family_id
        if family is None:
            return None
        with self._lock:
            members = sum(1 for r in self._resources.values() if r.incremental and r.family_id == family)
        if members >= MAX_INCREMENTAL_PER_DISK:
            raise arm_errors.operation_not_allowed(
                f"The disk '{source.key.name}' already has {members} incremental snapshots; "
                f"at most {MAX_INCREMENTAL_PER_DISK} are allowed per disk."
            )
        return family

    def _copy_source(self, creation: dict[str, Any], *, for_disk: bool) -> ManagedResource:
        source_id = creation.get("sourceResourceId")
        target = "properties.creationData.sourceResourceId"
        if not source_id:
            raise arm_errors.invalid_parameter(
                target, "Required parameter 'sourceResourceId' is missing (null)."
            )
        source_key = parse_compute_id(str(source_id))
        if source_key is None:
            raise arm_errors.invalid_parameter(
                target, f"'{source_id}' is not the resource id of a disk or snapshot."
            )
        source = self.find(source_key)
        if source.upload_state is not None:
            raise arm_errors.operation_not_allowed(
                f"The source '{source.key.name}' is in state {source.upload_state}: it can be copied once "
                "its upload is finished (endGetAccess).",
                target=target,
            )
        if source.provisioning_state != "Succeeded":
            raise arm_errors.operation_not_allowed(
                f"The source '{source.key.name}' is in provisioning state {source.provisioning_state}.",
                target=target,
            )
        # An instant-access snapshot can restore disks while it copies; nothing else can use it yet.
        if source.copying and not (for_disk and source.instant_access):
            raise arm_errors.background_copy_in_progress(
                source.key.name, source.completion_percent(), target=target
            )
        return source

    def _import(self, creation: dict[str, Any]) -> PageMap:
        source_uri = creation.get("sourceUri")
        if not source_uri:
            raise arm_errors.invalid_parameter(
                "properties.creationData.sourceUri", "Required parameter 'sourceUri' is missing (null)."
            )
        account_id = creation.get("storageAccountId")
        target = "properties.creationData.storageAccountId"
        if not account_id:
            raise arm_errors.invalid_parameter(
                target, "Required parameter 'storageAccountId' is missing (null): it is required for Import."
            )
        account = parse_storage_account_id(str(account_id))
        if account is None:
            raise arm_errors.invalid_parameter(
                target, f"'{account_id}' is not a storage account resource id."
            )
        uri_account = _account_of(str(source_uri))
        if uri_account is None or uri_account.lower() != account.lower():
            raise arm_errors.invalid_parameter(
                target, f"The blob '{strip_query(str(source_uri))}' is not in storage account '{account}'."
            )
        try:
            return self.data_plane.read_blob(str(source_uri))
        except DiskBackupError as error:
            raise arm_errors.invalid_parameter(
                "properties.creationData.sourceUri",
                f"The blob '{strip_query(str(source_uri))}' could not be read: {error.message}",
            ) from None

    # -- DELETE -------------------------------------------------------------------------------------

    def delete(self, key: ResourceKey) -> Reply | Accepted:
        """``Disks_Delete`` / ``Snapshots_Delete``: 204 when absent; 409 while a SAS is active."""
        self.check_scope(key.subscription_id, key.resource_group)
        with self._lock:
            resource = self._resources.get(key.folded())
        if resource is None:
            return Reply(204)
        if resource.has_active_sas() or resource.upload_state == "ActiveUpload":
            raise arm_errors.operation_not_allowed(
                f"Operation 'Delete' is not allowed on '{key.name}' since it has an active SAS: "
                "revoke access (endGetAccess) first.",
            )
        previous_state = resource.provisioning_state
        resource.provisioning_state = "Deleting"

        def complete() -> None:
            with self._lock:
                self._resources.pop(key.folded(), None)
            self.data_plane.forget(resource.id)

        def fail() -> None:
            resource.provisioning_state = previous_state

        operation_name = "Disks_Delete" if key.resource_type == "disks" else "Snapshots_Delete"
        return self._start(operation_name, resource, complete, fail, output_in_status=False)

    # -- grant and revoke ---------------------------------------------------------------------------

    def grant_access(self, key: ResourceKey, body: Any) -> Reply | Accepted:
        """``beginGetAccess``: a read SAS for ``durationInSeconds`` (at most 5 per snapshot family), or a
        write SAS on a disk made for upload (``access: Write``)."""
        _validate("GrantAccessData", body)
        resource = self.find(key)
        access = str(body["access"]).lower()
        if access == "none":
            raise arm_errors.invalid_parameter(
                "access", "The value 'None' of parameter 'access' is not valid for a grant."
            )
        if access == "write" and resource.upload_state is None:
            raise arm_errors.operation_not_allowed(
                f"Write access can only be granted on a disk in state ReadyToUpload; '{key.name}' is not.",
                target="access",
            )
        duration = body["durationInSeconds"]
        if duration <= 0:
            raise arm_errors.invalid_parameter("durationInSeconds", "durationInSeconds must be positive.")
        if resource.provisioning_state != "Succeeded":
            raise arm_errors.operation_not_allowed(
                f"'{key.name}' is in provisioning state {resource.provisioning_state}; "
                "access cannot be granted."
            )
        if not resource.readable:
            raise arm_errors.background_copy_in_progress(key.name, resource.completion_percent())
        if access == "write":
            return self._grant_upload(resource, duration)
        if resource.upload_state is not None:
            raise arm_errors.operation_not_allowed(
                f"Read access cannot be granted on '{key.name}' in state {resource.upload_state}: finish the "
                "upload (endGetAccess) first.",
                target="access",
            )
        operation_name = "Disks_GrantAccess" if key.resource_type == "disks" else "Snapshots_GrantAccess"
        family = resource.family_id if key.resource_type == "snapshots" else None
        with self._grant_lock(resource):
            if family is not None:
                others = self.data_plane.active_grants(family) - (1 if resource.has_active_sas() else 0)
                if others >= MAX_ACTIVE_SAS_PER_FAMILY:
                    raise arm_errors.operation_not_allowed(
                        f"At most {MAX_ACTIVE_SAS_PER_FAMILY} snapshots of one incremental snapshot family "
                        "can "
                        f"have an active SAS at once; revoke access to one of them before granting access "
                        f"to '{key.name}'."
                    )
            if resource.has_active_sas():
                self.data_plane.revoke(resource.id)  # a new grant replaces the old SAS
            try:
                sas = self.data_plane.grant(
                    resource_id=resource.id,
                    family_id=family,
                    content=resource.content.frozen(),
                    duration_seconds=duration,
                )
            except DiskBackupError as error:
                log.warning("grant on %s failed in the data plane: %s", resource.id, error.message)
                raise arm_errors.internal_error() from None
            resource.sas_expires_at = utc_now() + timedelta(seconds=duration)

        def complete() -> dict[str, Any]:
            return {"accessSAS": sas}

        def fail() -> None:
            self.data_plane.revoke(resource.id)
            resource.sas_expires_at = None

        # An injected outcome is taken only now, so a refused grant does not use it up.
        return self._start(operation_name, resource, complete, fail)

    def _grant_upload(self, resource: ManagedResource, duration: int) -> Reply | Accepted:
        """A write SAS onto an upload disk: ``ActiveUpload`` from now; a repeated grant replaces the SAS
        and keeps what was written (so an interrupted upload can go on)."""
        with self._grant_lock(resource):
            before = resource.upload_state
            try:
                sas = self.data_plane.grant_upload(
                    resource_id=resource.id,
                    upload_size=resource.content.size + UPLOAD_FOOTER,
                    duration_seconds=duration,
                )
            except DiskBackupError as error:
                log.warning("write grant on %s failed in the data plane: %s", resource.id, error.message)
                raise arm_errors.internal_error() from None
            resource.upload_state = "ActiveUpload"
            resource.sas_expires_at = utc_now() + timedelta(seconds=duration)

        def complete() -> dict[str, Any]:
            return {"accessSAS": sas}

        def fail() -> None:
            self.data_plane.revoke(resource.id)
            resource.sas_expires_at = None
            resource.upload_state = before

        return self._start("Disks_GrantAccess", resource, complete, fail)

    def _grant_lock(self, resource: ManagedResource) -> threading.Lock:
        """The lock that grants and revokes of ``resource``'s family (or of it alone) take."""
        key = (
            resource.family_id
            if resource.key.resource_type == "snapshots" and resource.family_id
            else resource.id
        )
        with self._lock:
            return self._grant_locks.setdefault(key.lower(), threading.Lock())

    def revoke_access(self, key: ResourceKey) -> Reply | Accepted:
        """``endGetAccess``: the SAS stops working when the operation succeeds."""
        resource = self.find(key)

        def complete() -> None:
            with self._grant_lock(resource):
                if resource.upload_state == "ReadyToUpload":
                    return  # nothing granted yet: the disk stays ready for its upload
                if resource.upload_state == "ActiveUpload":
                    # The upload ends here: the disk is what was written (less the footer), Unattached.
                    uploaded = self.data_plane.finish_upload(resource.id)
                    if uploaded is not None:
                        resource.content = uploaded
                    resource.upload_state = None
                self.data_plane.revoke(resource.id)
                resource.sas_expires_at = None

        operation_name = "Disks_RevokeAccess" if key.resource_type == "disks" else "Snapshots_RevokeAccess"
        return self._start(operation_name, resource, complete, lambda: None, output_in_status=False)

    def expire_access(self, key: ResourceKey) -> bool:
        """The resource's read SAS runs out now, as if its ``se`` had passed (a test's shortcut to an
        expiry): ARM shows no active SAS, the SAS answers 403, and a copy still reading from it fails.
        Answers whether there was one to end."""
        resource = self.find(key)
        with self._grant_lock(resource):
            had = resource.has_active_sas() and resource.upload_state is None
            if had:
                resource.sas_expires_at = utc_now()
            ended = self.data_plane.expire(resource.id)
        return had and ended

    # -- operations ---------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        resource: ManagedResource,
        complete: Callable[[], dict[str, Any] | None],
        fail: Callable[[], None],
        *,
        body_now: Callable[[], dict[str, Any]] | None = None,
        output_in_status: bool = True,
    ) -> Reply | Accepted:
        fault = self.faults.take_outcome_fault(name, resource.key.name)
        operation = Operation(
            name=name,
            key=resource.key,
            location=resource.location,
            polls_left=self.settings.operation_polls,
            complete=complete,
            fail=fail,
            output_in_status=output_in_status,
        )
        if fault is not None:
            outcome: Outcome = "Canceled" if fault.action == "Canceled" else "Failed"
            operation.outcome = outcome
            operation.error = failure_error(outcome, fault.code, fault.message)
            operation.polls_left = max(1, operation.polls_left)
        if operation.polls_left <= 0:
            # Synchronous: the spec's 200 answer.
            operation.finish_now()
            if operation.status != "Succeeded":
                assert operation.error is not None
                raise operation.error
            return Reply(200, operation.result)
        with self._lock:
            self._operations[operation.id] = operation
            excess = len(self._operations) - MAX_KEPT_OPERATIONS
            if excess > 0:
                # Finished operations hold their resource (and its content) alive: the oldest finished go,
                # at least half the limit at a time so the sweep stays rare; how many ran before does not
                # change which go.
                finished = [i for i, op in self._operations.items() if op.done]
                for old_id in finished[: max(excess, MAX_KEPT_OPERATIONS // 2)]:
                    del self._operations[old_id]
        return Accepted(operation, body_now() if body_now else None)

    # -- control surface ----------------------------------------------------------------------------

    def put_direct(self, resource: ManagedResource) -> None:
        """Store a resource made by the control surface (already Succeeded), replacing any same-named one."""
        self.check_scope(resource.key.subscription_id, resource.key.resource_group)
        with self._lock:
            old = self._resources.get(resource.key.folded())
            if old is not None and old.has_active_sas():
                raise arm_errors.operation_not_allowed(f"'{resource.key.name}' has an active SAS.")
            self._resources[resource.key.folded()] = resource

    def active_grants(self) -> dict[str, Any]:
        """Every resource holding an active SAS and the data plane's count per snapshot family."""
        with self._lock:
            holding = [r for r in self._resources.values() if r.has_active_sas()]
            families = sorted(
                {r.family_id for r in self._resources.values() if r.incremental and r.family_id}
            )
        counts = {family: self.data_plane.active_grants(family) for family in families}
        return {
            "total": len(holding),
            "resources": [
                {
                    "id": r.id,
                    "family_id": r.family_id if r.key.resource_type == "snapshots" else None,
                    "expires": r.sas_expires_at.isoformat() if r.sas_expires_at else None,
                }
                for r in holding
            ],
            "families": {family: count for family, count in counts.items() if count},
        }

    def reset(self) -> None:
        """Forget every resource (revoking their SAS), operation and fault; keep the resource groups."""
        with self._lock:
            everything = list(self._resources.values())
            self._resources.clear()
            self._operations.clear()
        for resource in everything:
            self.data_plane.forget(resource.id)
        self.faults.clear()


def _upload_disk_size(creation: dict[str, Any], size_gb_given: int | None) -> int:
    """The disk size an Upload body asks for: ``uploadSizeBytes`` less the footer, checked as Compute does."""
    upload = creation.get("uploadSizeBytes")
    if upload is None:
        raise arm_errors.invalid_parameter(
            "properties.creationData.uploadSizeBytes",
            "Required parameter 'uploadSizeBytes' is missing (null): it is required for Upload.",
        )
    if not MIN_UPLOAD_SIZE <= upload <= MAX_UPLOAD_SIZE:
        raise arm_errors.bad_request(
            f"The upload size in bytes {upload} must be between {MIN_UPLOAD_SIZE} (20 MiB + 512 bytes for "
            f"the VHD footer) and {MAX_UPLOAD_SIZE} (32 TiB + 512 bytes for the VHD footer)."
        )
    disk = upload - UPLOAD_FOOTER
    if disk % _MIB:
        raise arm_errors.bad_request(
            f"The upload size in bytes {upload} - 512 bytes for the VHD footer ({disk} in this case) must be "
            "a multiple of MiB."
        )
    if size_gb_given is not None and size_gb_given != gib_of(disk):
        raise arm_errors.invalid_parameter(
            "properties.diskSizeGB",
            f"diskSizeGB {size_gb_given} disagrees with uploadSizeBytes {upload} ({gib_of(disk)} GiB).",
        )
    return disk


def _validate(definition: str, body: Any) -> None:
    try:
        validate_body(definition, body)
    except SchemaProblem as problem:
        raise arm_errors.invalid_parameter(problem.target, problem.message) from None


def _account_of(uri: str) -> str | None:
    """The storage account a blob URL names: first path segment for IP/localhost hosts, else host label."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if not host:
        return None
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        segments = [s for s in parts.path.split("/") if s]
        return segments[0] if segments else None
    return host.split(".", 1)[0]


def _encode_token(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode("\n".join(position).encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        group, name = text.split("\n")
    except (ValueError, UnicodeDecodeError):
        raise arm_errors.invalid_parameter("$skiptoken", "The $skiptoken is invalid.") from None
    return group, name
