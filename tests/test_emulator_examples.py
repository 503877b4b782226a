"""The spec's own examples (both saved folders) replayed against the emulator, answers compared in shape.

Each example's request is sent as written, with three substitutions: our subscription, a fresh resource
group for ``myResourceGroup``, and, for Import, a real fixed-VHD blob in the backup account in place of
``mystorageaccount.blob.core.windows.net``. Whatever the request needs to exist first (the disk or
snapshot it names, the source it copies, the items a list shows) is made first. Then the answer must
have a status the example lists, and its body the example's shape: every key the example shows, with a
value of the same JSON type, except the keys listed in ``NOT_MODELLED`` (each says why). A 202 is
followed to its end and the final body compared with the example's 200. Ids, names and times may
differ. Every answer is also checked against the schema by :class:`spec_oracle.ArmClient`.

Two examples are *expected* to be refused: they import a blob without ``storageAccountId``, which
``CreationData`` says is "Required if createOption is Import" (the examples predate the rule); the
emulator follows the rule and answers 400 InvalidParameter naming the property.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from spec_oracle import ArmClient, SpecOracle, example_files, load_example

from backup import vhd
from testbed.proving_ground import ProvingGround

MIB = 1 << 20
TAGS = {"department": "Development", "project": "ManagedDisks"}

#: Keys of example bodies the emulator does not produce, and why.
NOT_MODELLED = {
    "managedBy": "attachment to VMs is not modelled; an emulated disk is never attached",
    "properties.osType": "OS-disk metadata comes from images and VMs, not modelled (echoed when sent)",
    "properties.hyperVGeneration": "OS-disk metadata, not modelled (echoed when sent)",
    "properties.purchasePlan": "marketplace images are not modelled",
    "properties.supportedCapabilities": "image capabilities are not modelled",
    "properties.supportsHibernation": "VM hibernation is not modelled",
    "properties.securityProfile": "trusted launch / confidential VM disks are not modelled",
    "properties.encryptionSettingsCollection": "Azure Disk Encryption (guest-side) is not modelled",
    "properties.LastOwnershipUpdateTime": "not in the spec's schema at all",
    "properties.creationData.imageReference": "createOption FromImage is not modelled",
}

#: Examples that omit ``storageAccountId`` on Import (see the module docstring).
REFUSED = {
    "Disk_Create_ByImportingBlobFromTheSameSubscription",
    "Snapshot_Create_ByImportingAnUnmanagedBlobFromTheSameSubscription",
}

#: Older example files carry no operationId; their names say it.
_BY_PREFIX = (
    ("Disk_Create_", "Disks_CreateOrUpdate"),
    ("Disk_Delete", "Disks_Delete"),
    ("Disk_ListBySubscription", "Disks_List"),
    ("Snapshot_Create_", "Snapshots_CreateOrUpdate"),
    ("Snapshot_Get", "Snapshots_Get"),
    ("Snapshot_BeginGetAccess", "Snapshots_GrantAccess"),
    ("Snapshot_ListBySubscription", "Snapshots_List"),
)


def operation_of(path: Path, example: dict[str, Any]) -> str:
    if "operationId" in example:
        return str(example["operationId"])
    for prefix, operation in _BY_PREFIX:
        if path.stem.startswith(prefix):
            return operation
    raise AssertionError(f"no operation for {path.name}")


def shape_mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` lacks a key of ``expected`` or holds another JSON type (NOT_MODELLED aside)."""
    if path in NOT_MODELLED:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '<root>'}: expected an object, got {type(actual).__name__}"]
        problems = []
        for key, value in expected.items():
            child = f"{path}.{key}" if path else key
            if child in NOT_MODELLED:
                continue
            if key not in actual:
                problems.append(f"{child}: missing")
            else:
                problems.extend(shape_mismatches(value, actual[key], child))
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected an array"]
        # A list page's items are resources: compare them from the root, as the resource itself.
        item_path = "" if path == "value" else path
        if expected and actual:
            return [p for item in actual for p in shape_mismatches(expected[0], item, item_path)]
        return []
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", type(None): "null"}
    if kinds[type(expected)] != kinds.get(type(actual)):
        return [f"{path}: expected {kinds[type(expected)]}, got {type(actual).__name__}"]
    return []


class Replay:
    """One example's world: a resource group, the resources it needs, and the request it makes."""

    def __init__(self, pg: ProvingGround, arm: ArmClient, rg: str) -> None:
        self.pg = pg
        self.arm = arm
        self.rg = rg

    def substitute(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if isinstance(value, str):
            value = re.sub(r"\{subscription-?[iI]d\}", self.pg.subscription_id, value)
            return value.replace("myResourceGroup", self.rg)
        return value

    def make_disk(self, name: str, rg: str | None = None, tags: dict[str, str] | None = TAGS) -> None:
        self.pg.control("PUT", f"/resourceGroups/{rg or self.rg}", {})
        self.pg.control(
            "PUT",
            f"/resourceGroups/{rg or self.rg}/disks/{name}",
            {"size_bytes": 2 * MIB, "fill": {"seed": 1, "fraction": 0.2}, "tags": tags or {}},
        )

    def put(self, kind: str, name: str, body: dict[str, Any]) -> None:
        path = (
            f"/subscriptions/{self.pg.subscription_id}/resourceGroups/{self.rg}"
            f"/providers/Microsoft.Compute/{kind}/{name}?api-version=2026-03-02"
        )
        self.arm.wait(self.arm.put(path, body))

    def make_like(self, kind: str, name: str, shown: dict[str, Any]) -> None:
        """A resource made the way a listed example item was (Copy, Import, or else an empty disk)."""
        option = shown["properties"]["creationData"]["createOption"]
        tags = shown.get("tags")
        if kind == "disks" and option != "Copy":
            self.make_disk(name, tags=tags)
            return
        creation: dict[str, Any] = {"createOption": option}
        if option == "Import":
            creation["sourceUri"] = self.import_blob()
            creation["storageAccountId"] = (
                f"/subscriptions/{self.pg.subscription_id}/resourceGroups/{self.rg}"
                f"/providers/Microsoft.Storage/storageAccounts/{self.pg.backup_account}"
            )
        else:
            self.make_disk(f"src-{name}")
            creation["createOption"] = "Copy"
            creation["sourceResourceId"] = self.pg.disk_id(f"src-{name}", self.rg)
        body: dict[str, Any] = {"location": "westus", "properties": {"creationData": creation}}
        if tags:
            body["tags"] = tags
        self.put(kind, name, body)

    def make_snapshot(self, name: str, *, incremental: bool = False, rg: str | None = None) -> None:
        group = rg or self.rg
        source = f"src-{name}"
        self.make_disk(source, group)
        body = {
            "location": "westus",
            "tags": TAGS,
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": self.pg.disk_id(source, group)},
                "incremental": incremental,
            },
        }
        path = (
            f"/subscriptions/{self.pg.subscription_id}/resourceGroups/{group}"
            f"/providers/Microsoft.Compute/snapshots/{name}?api-version=2026-03-02"
        )
        self.arm.wait(self.arm.put(path, body))

    def make_source(self, resource_id: str) -> None:
        match = re.search(
            r"resourceGroups/([^/]+)/providers/Microsoft\.Compute/(disks|snapshots)/([^/]+)",
            resource_id,
            re.I,
        )
        assert match, resource_id
        group, kind, name = match.groups()
        if kind.lower() == "disks":
            self.make_disk(name, group)
        else:
            self.make_snapshot(name, rg=group)

    def import_blob(self) -> str:
        """A fixed-VHD page blob in the backup account (what Import reads); its URL."""
        service = BlobServiceClient.from_connection_string(self.pg.azurite.connection_string())
        container = service.get_container_client(self.rg.lower())
        if not container.exists():
            container.create_container()
        blob = container.get_blob_client("osimage.vhd")
        blob.create_page_blob(MIB + 512)
        blob.upload_page(b"\x01" * 512, offset=0, length=512)
        blob.upload_page(vhd.build_footer(MIB, uuid.uuid4()), offset=MIB, length=512)
        return str(blob.url)


@pytest.fixture(scope="module")
def oracle() -> SpecOracle:
    return SpecOracle()


@pytest.fixture
def arm(proving_ground: ProvingGround, oracle: SpecOracle) -> Iterator[ArmClient]:
    client = ArmClient(
        proving_ground.arm_endpoint, proving_ground.arm_token, proving_ground.arm_ca_cert, oracle
    )
    yield client
    client.close()
    proving_ground.control("PATCH", "/config", {"page_size": 2})


@pytest.mark.parametrize("path", example_files(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_example_replays(
    path: Path, proving_ground: ProvingGround, arm: ArmClient, oracle: SpecOracle, unique_name: str
) -> None:
    example = load_example(path)
    operation_id = operation_of(path, example)
    replay = Replay(proving_ground, arm, unique_name)
    proving_ground.control("PUT", f"/resourceGroups/{unique_name}", {})
    parameters = replay.substitute(example["parameters"])
    template, operation = next(
        (t, methods[m])
        for t, methods in oracle.spec["paths"].items()
        for m in methods
        if isinstance(methods[m], dict) and methods[m].get("operationId") == operation_id
    )
    method = next(
        m for m in oracle.spec["paths"][template] if oracle.spec["paths"][template][m] is operation
    ).upper()
    body_name = next((p["name"] for p in operation.get("parameters", []) if p.get("in") == "body"), None)
    body = parameters.get(body_name) if body_name else None
    kind = "disks" if operation_id.startswith("Disks_") else "snapshots"
    name = parameters.get("diskName") or parameters.get("snapshotName")

    # What must exist before the call.
    if operation_id.endswith("_CreateOrUpdate"):
        creation = body["properties"]["creationData"]
        if "sourceResourceId" in creation:
            replay.make_source(creation["sourceResourceId"])
        if creation["createOption"] == "Import":
            creation["sourceUri"] = replay.import_blob()
            if "storageAccountId" in creation:
                creation["storageAccountId"] = re.sub(
                    r"storageAccounts/[^/]+$",
                    f"storageAccounts/{proving_ground.backup_account}",
                    creation["storageAccountId"],
                )
    elif operation_id.endswith(("_Get", "_GrantAccess", "_RevokeAccess", "_Delete")):
        if kind == "disks":
            replay.make_disk(name)
        else:
            replay.make_snapshot(name, incremental="Incremental" in path.stem)
    elif operation_id.endswith(("_List", "_ListByResourceGroup")):
        for index, shown in enumerate(example["responses"]["200"]["body"]["value"]):
            replay.make_like(kind, f"listed{index}", shown)

    url = re.sub(r"\{(\w+)\}", lambda m: parameters.get(m.group(1), m.group(0)), template)
    url = f"{url}?api-version=2026-03-02"
    response = arm.request(method, url, json_body=body)
    expected = example["responses"]

    if path.stem in REFUSED:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["target"] == "properties.creationData.storageAccountId"
        return
    assert str(response.status_code) in expected, (
        f"{response.status_code} not in {sorted(expected)}: {response.text}"
    )
    answer = expected[str(response.status_code)]
    if operation_id.endswith(("_List", "_ListByResourceGroup")):
        # The session's other tests share the subscription: compare our items, page by page, in order.
        ours = [
            item
            for page in arm.pages(url)
            for item in page["value"]
            if f"/{unique_name}/" in item["id"] and item["name"].startswith("listed")
        ]
        shown = answer["body"]["value"]
        assert len(ours) == len(shown)
        for mine, theirs in zip(ours, shown, strict=True):
            assert shape_mismatches(theirs, mine) == []
        return
    if "body" in answer:
        assert shape_mismatches(answer["body"], response.json()) == []
    else:
        assert not response.content, response.text
    for header in answer.get("headers", {}):
        assert header in response.headers, header
    if response.status_code == 202:
        final = arm.wait(response)
        assert str(final.status_code) in expected, final.text
        final_expected = expected[str(final.status_code)]
        if "body" in final_expected and final.status_code == 200:
            got = final.json()
            assert shape_mismatches(final_expected["body"], got) == []
            if isinstance(got, dict) and "properties" in got:
                assert got["properties"]["provisioningState"] == "Succeeded"
        elif final.status_code in (200, 204):
            assert not final.content or operation_id.endswith("_CreateOrUpdate")
    if operation_id.endswith("_GrantAccess"):
        arm.wait(arm.post(url.replace("beginGetAccess", "endGetAccess")))


def test_shape_comparison_catches_missing_keys_and_type_changes() -> None:
    expected = {
        "id": "x",
        "properties": {"diskSizeGB": 1, "creationData": {"createOption": "Copy"}},
        "managedBy": "vm",
    }
    assert (
        shape_mismatches(
            expected, {"id": "y", "properties": {"diskSizeGB": 2, "creationData": {"createOption": "Empty"}}}
        )
        == []
    )
    assert shape_mismatches(expected, {"id": "y", "properties": {"diskSizeGB": "2", "creationData": {}}}) == [
        "properties.diskSizeGB: expected number, got str",
        "properties.creationData.createOption: missing",
    ]
