"""The emulated ARM over real HTTPS: auth, api-version, resources, paging, LROs, grants, errors, faults.

Every response is checked against DiskRP.json by :class:`spec_oracle.ArmClient` (the module ends by
asserting that the checks ran). Runs on the session's proving ground (real Azurite, real data plane).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.storage.blob import BlobServiceClient
from spec_oracle import ArmClient, SpecOracle

from backup import vhd
from testbed.emulator import service as service_module
from testbed.proving_ground import ProvingGround

API = "api-version=2026-03-02"
MIB = 1 << 20
EMPTY = {"createOption": "Empty"}
COPY = {"createOption": "Copy"}


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
    assert client.checked > 0, "every test here talks to ARM through the checking client"
    # The proving ground is shared by the session: leave its knobs and fault plan as they were.
    proving_ground.control("DELETE", "/faults")
    proving_ground.control("PATCH", "/config", {"operation_polls": 2, "page_size": 2, "retry_after": 1})


@pytest.fixture
def rg(proving_ground: ProvingGround, unique_name: str) -> str:
    """A fresh resource group for one test."""
    proving_ground.control("PUT", f"/resourceGroups/{unique_name}", {"location": "westus"})
    return unique_name


def base(pg: ProvingGround, rg: str) -> str:
    return f"/subscriptions/{pg.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute"


def make_disk(pg: ProvingGround, rg: str, name: str, size: int = 4 * MIB, fraction: float = 0.25,
              seed: int = 1, tags: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    return pg.control(
        "PUT",
        f"/resourceGroups/{rg}/disks/{name}",
        {"size_bytes": size, "fill": {"seed": seed, "fraction": fraction}, "tags": tags or {}},
    )


def snapshot_body(pg: ProvingGround, rg: str, disk: str, *, incremental: bool = True) -> dict[str, Any]:
    return {
        "location": "westus",
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": pg.disk_id(disk, rg)},
            "incremental": incremental,
        },
    }


def create_snapshot(
    arm: ArmClient, pg: ProvingGround, rg: str, disk: str, name: str, **kw: Any
) -> dict[str, Any]:
    accepted = arm.put(f"{base(pg, rg)}/snapshots/{name}?{API}", snapshot_body(pg, rg, disk, **kw))
    final = arm.wait(accepted)
    assert final.status_code == 200
    return final.json()


def grant(arm: ArmClient, pg: ProvingGround, rg: str, name: str, seconds: int = 600) -> requests.Response:
    accepted = arm.post(
        f"{base(pg, rg)}/snapshots/{name}/beginGetAccess?{API}",
        {"access": "Read", "durationInSeconds": seconds},
    )
    return arm.wait(accepted) if accepted.status_code == 202 else accepted


def revoke(arm: ArmClient, pg: ProvingGround, rg: str, name: str, kind: str = "snapshots") -> None:
    accepted = arm.post(f"{base(pg, rg)}/{kind}/{name}/endGetAccess?{API}")
    assert arm.wait(accepted).status_code == 200


def error_code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


# -- the gate: token, api-version, routes --------------------------------------------------------------


def test_every_call_needs_a_valid_bearer_token(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    url = f"{base(proving_ground, rg)}/disks?{API}"
    anonymous = ArmClient(arm.endpoint, None, arm.ca_cert, arm.oracle)
    missing = anonymous.get(url)
    assert missing.status_code == 401
    assert error_code(missing) == "AuthenticationFailed"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer ")
    wrong = arm.get(url, headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"})
    assert (wrong.status_code, error_code(wrong)) == (401, "InvalidAuthenticationToken")
    expired = arm.get(url, headers={"Authorization": "Bearer " + proving_ground.emulator.mint_token(-60)})
    assert (expired.status_code, error_code(expired)) == (401, "ExpiredAuthenticationToken")
    fresh = arm.get(url, headers={"Authorization": "Bearer " + proving_ground.emulator.mint_token(60)})
    assert fresh.status_code == 200
    anonymous.close()


def test_api_version_is_required_and_must_be_2026_03_02(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    path = f"{base(proving_ground, rg)}/disks"
    missing = arm.get(path)
    assert (missing.status_code, error_code(missing)) == (400, "MissingApiVersionParameter")
    other = arm.get(path + "?api-version=2025-01-02")
    assert (other.status_code, error_code(other)) == (400, "NoRegisteredProviderFound")
    assert "2026-03-02" in other.json()["error"]["message"]


def test_unknown_routes_and_verbs(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    unknown = arm.request("GET", f"{base(proving_ground, rg)}/diskAccesses?{API}")
    assert (unknown.status_code, error_code(unknown)) == (404, "InvalidResourceType")
    patch = arm.request("PATCH", f"{base(proving_ground, rg)}/disks/d?{API}", json_body={"tags": {}})
    assert patch.status_code == 405


def test_scope_must_exist(arm: ArmClient, proving_ground: ProvingGround) -> None:
    missing_group = arm.get(f"{base(proving_ground, 'no-such-group')}/disks?{API}")
    assert (missing_group.status_code, error_code(missing_group)) == (404, "ResourceGroupNotFound")
    other_sub = arm.get(
        f"/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Compute/disks?{API}"
    )
    assert (other_sub.status_code, error_code(other_sub)) == (404, "SubscriptionNotFound")


# -- disks -----------------------------------------------------------------------------------------------


def test_empty_disk_lifecycle(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    url = f"{base(proving_ground, rg)}/disks/empty1?{API}"
    body = {"location": "West US", "tags": {"team": "a"},
            "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 2}}  # fmt: skip
    accepted = arm.put(url, body)
    assert accepted.status_code == 202
    assert accepted.json()["properties"]["provisioningState"] == "Updating"
    final = arm.wait(accepted).json()
    assert final["properties"]["provisioningState"] == "Succeeded"
    assert final["location"] == "westus"
    assert final["properties"]["diskSizeBytes"] == 2 << 30
    assert final["tags"] == {"team": "a"}
    assert final["id"].endswith(f"/resourceGroups/{rg}/providers/Microsoft.Compute/disks/empty1")
    got = arm.get(url.replace("empty1", "EMPTY1")).json()  # names are case-insensitive
    assert got["properties"]["uniqueId"] == final["properties"]["uniqueId"]
    ranges = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/empty1/ranges")
    assert ranges == {"size": 2 << 30, "ranges": []}
    assert arm.wait(arm.delete(url)).status_code == 200
    gone = arm.get(url)
    assert (gone.status_code, error_code(gone)) == (404, "ResourceNotFound")
    assert arm.delete(url).status_code == 204  # deleting what is absent is not an error in ARM


def test_put_on_an_existing_disk_updates_tags_and_grows_but_keeps_its_source(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    url = f"{base(proving_ground, rg)}/disks/grow?{API}"
    body: dict[str, Any] = {
        "location": "westus",
        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1},
    }
    arm.wait(arm.put(url, body))
    body["tags"] = {"v": "2"}
    body["properties"]["diskSizeGB"] = 3
    updated = arm.wait(arm.put(url, body)).json()
    assert updated["tags"] == {"v": "2"}
    assert updated["properties"]["diskSizeGB"] == 3
    body["properties"]["diskSizeGB"] = 2
    shrink = arm.put(url, body)
    assert (shrink.status_code, error_code(shrink)) == (409, "OperationNotAllowed")
    body["properties"] = {
        "creationData": {"createOption": "Copy", "sourceResourceId": proving_ground.disk_id("x", rg)}
    }
    change = arm.put(url, body)
    assert (change.status_code, error_code(change)) == (409, "PropertyChangeNotAllowed")


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}, "location"),
        ({"location": "westus", "properties": {}}, "properties.creationData"),
        ({"location": "westus", "properties": {"creationData": EMPTY}}, "properties.diskSizeGB"),
        ({"location": "westus", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": "1"}},
         "properties.diskSizeGB"),
        ({"location": "westus", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 0}},
         "properties.diskSizeGB"),
        ({"location": "westus", "properties": {"creationData": {"createOption": "FromImage"}}},
         "properties.creationData.createOption"),
        ({"location": "westus", "properties": {"creationData": {"createOption": "Copy"}}},
         "properties.creationData.sourceResourceId"),
        ({"location": "westus", "properties": {"creationData": {**COPY, "sourceResourceId": "nope"}}},
         "properties.creationData.sourceResourceId"),
        ({"location": "x", "sku": {"name": "Gold"}, "properties": {"creationData": EMPTY, "diskSizeGB": 1}},
         "sku.name"),
    ],
)  # fmt: skip
def test_bad_disk_bodies_are_400_invalid_parameter_naming_the_property(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, body: dict[str, Any], target: str
) -> None:
    response = arm.put(f"{base(proving_ground, rg)}/disks/bad?{API}", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": "InvalidParameter",
        "target": target,
    }


def test_malformed_json_and_bad_names(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    url = f"{base(proving_ground, rg)}/disks/x?{API}"
    headers = {"Authorization": f"Bearer {arm.token}", "Content-Type": "application/json"}
    raw = arm.session.put(arm.endpoint + url, data=b"{not json", headers=headers, verify=str(arm.ca_cert))
    arm.oracle.check("PUT", arm.endpoint + url, raw.status_code, raw.json())
    assert (raw.status_code, raw.json()["error"]["code"]) == (400, "InvalidRequestContent")
    body = {"location": "westus", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}
    bad_name = arm.put(f"{base(proving_ground, rg)}/disks/{'n' * 81}?{API}", body)
    assert (bad_name.status_code, bad_name.json()["error"]["target"]) == (400, "diskName")
    dotted = arm.put(f"{base(proving_ground, rg)}/snapshots/a.b?{API}", body)
    assert (dotted.status_code, dotted.json()["error"]["target"]) == (400, "snapshotName")


def test_lists_page_with_next_link_and_carry_tags(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    names = [f"disk{i}" for i in range(5)]
    for index, name in enumerate(names):
        make_disk(
            proving_ground, rg, name, size=MIB, fraction=0.0, tags={"index": str(index), "backup": "yes"}
        )
    pages = list(arm.pages(f"{base(proving_ground, rg)}/disks?{API}"))
    assert len(pages) == 3  # page size 2
    assert all("nextLink" in page for page in pages[:-1]) and "nextLink" not in pages[-1]
    listed = [disk for page in pages for disk in page["value"]]
    assert [d["name"] for d in listed] == names
    assert [d["tags"]["index"] for d in listed] == ["0", "1", "2", "3", "4"]
    # Other tests share the subscription: a page must be big enough for every disk in it.
    proving_ground.control("PATCH", "/config", {"page_size": 10000})
    everything = list(
        arm.pages(f"/subscriptions/{proving_ground.subscription_id}/providers/Microsoft.Compute/disks?{API}")
    )
    assert len(everything) == 1
    assert {d["name"] for d in everything[0]["value"] if f"/resourceGroups/{rg}/" in d["id"]} == set(names)
    # The spec gives the list no $filter: ARM ignores it and the client filters by tag itself.
    filtered = arm.get(f"{base(proving_ground, rg)}/disks?{API}&$filter=tagName eq 'index'").json()
    assert len(filtered["value"]) == 5


def test_a_list_does_not_repeat_or_skip_when_resources_change_between_pages(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    for name in ("a", "b", "c", "d"):
        make_disk(proving_ground, rg, name, size=MIB, fraction=0.0)
    first = arm.get(f"{base(proving_ground, rg)}/disks?{API}").json()
    assert [d["name"] for d in first["value"]] == ["a", "b"]
    arm.wait(arm.delete(f"{base(proving_ground, rg)}/disks/a?{API}"))
    make_disk(proving_ground, rg, "bb", size=MIB, fraction=0.0)
    rest = [d["name"] for page in arm.pages(first["nextLink"]) for d in page["value"]]
    assert rest == ["bb", "c", "d"]


# -- snapshots and LROs ----------------------------------------------------------------------------------


def test_snapshot_lro_headers_status_body_and_final_result(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "src")
    proving_ground.control("PATCH", "/config", {"operation_polls": 3})
    accepted = arm.put(
        f"{base(proving_ground, rg)}/snapshots/snap?{API}", snapshot_body(proving_ground, rg, "src")
    )
    assert accepted.status_code == 202
    assert int(accepted.headers["Retry-After"]) >= 0
    status_url = accepted.headers["Azure-AsyncOperation"]
    assert accepted.headers["Location"] == status_url + "&monitor=true"
    assert "/providers/Microsoft.Compute/locations/westus/DiskOperations/" in status_url
    monitor = arm.get(accepted.headers["Location"])
    assert monitor.status_code == 202 and not monitor.content and "Location" in monitor.headers
    assert arm.get(status_url).json()["status"] == "InProgress"
    done = arm.get(status_url).json()
    assert done["status"] == "Succeeded"
    output = done["properties"]["output"]
    assert output["properties"]["provisioningState"] == "Succeeded"
    final = arm.get(accepted.headers["Location"])
    assert final.status_code == 200 and final.json() == output


def test_polling_the_resource_itself_also_advances_the_operation(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "src")
    url = f"{base(proving_ground, rg)}/snapshots/bybody?{API}"
    arm.put(url, snapshot_body(proving_ground, rg, "src"))
    states = [arm.get(url).json()["properties"]["provisioningState"] for _ in range(2)]
    assert states == ["Updating", "Succeeded"]


def test_zero_polls_answers_synchronously(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    make_disk(proving_ground, rg, "src")
    proving_ground.control("PATCH", "/config", {"operation_polls": 0})
    created = arm.put(
        f"{base(proving_ground, rg)}/snapshots/sync?{API}", snapshot_body(proving_ground, rg, "src")
    )
    assert created.status_code == 200
    assert created.json()["properties"]["provisioningState"] == "Succeeded"
    assert arm.delete(f"{base(proving_ground, rg)}/snapshots/sync?{API}").status_code == 200


def test_snapshot_is_the_disk_at_the_put_and_never_changes(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "live", size=8 * MIB, fraction=0.3, seed=7)
    before = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/live/digest")
    first = create_snapshot(arm, proving_ground, rg, "live", "day1")
    proving_ground.control(
        "POST",
        f"/resourceGroups/{rg}/disks/live/churn",
        {"seed": 3, "write_fraction": 0.1, "trim_fraction": 0.05},
    )
    after = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/live/digest")
    assert after["sha256"] != before["sha256"]
    second = create_snapshot(arm, proving_ground, rg, "live", "day2")
    assert (
        proving_ground.control("GET", f"/resourceGroups/{rg}/snapshots/day1/digest")["sha256"]
        == before["sha256"]
    )
    assert (
        proving_ground.control("GET", f"/resourceGroups/{rg}/snapshots/day2/digest")["sha256"]
        == after["sha256"]
    )
    family = first["properties"]["incrementalSnapshotFamilyId"]
    assert family and second["properties"]["incrementalSnapshotFamilyId"] == family
    assert first["properties"]["incremental"] is True
    disk = arm.get(f"{base(proving_ground, rg)}/disks/live?{API}").json()
    assert first["properties"]["creationData"]["sourceUniqueId"] == disk["properties"]["uniqueId"]
    full = create_snapshot(arm, proving_ground, rg, "live", "full", incremental=False)
    assert "incrementalSnapshotFamilyId" not in full["properties"]
    page = {"offset": 0, "data": base64.b64encode(b"x" * 512).decode()}
    written = proving_ground.control("POST", f"/resourceGroups/{rg}/snapshots/day1/write", page)
    assert written["error"]["target"] == "path"


def test_copy_from_a_snapshot_or_disk_makes_an_independent_disk(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "orig", size=4 * MIB, fraction=0.5, seed=9)
    create_snapshot(arm, proving_ground, rg, "orig", "point")
    snap_digest = proving_ground.control("GET", f"/resourceGroups/{rg}/snapshots/point/digest")["sha256"]
    source_id = proving_ground.disk_id("point", rg).replace("/disks/", "/snapshots/")
    body = {
        "location": "westus",
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source_id}},
    }
    restored = arm.wait(arm.put(f"{base(proving_ground, rg)}/disks/restored?{API}", body)).json()
    assert restored["properties"]["diskSizeBytes"] == 4 * MIB
    assert (
        proving_ground.control("GET", f"/resourceGroups/{rg}/disks/restored/digest")["sha256"] == snap_digest
    )
    proving_ground.control(
        "POST", f"/resourceGroups/{rg}/disks/restored/trim", {"offset": 0, "length": 4 * MIB}
    )
    assert (
        proving_ground.control("GET", f"/resourceGroups/{rg}/snapshots/point/digest")["sha256"] == snap_digest
    )
    missing = dict(
        body, properties={"creationData": {"createOption": "Copy", "sourceResourceId": source_id + "x"}}
    )
    absent = arm.put(f"{base(proving_ground, rg)}/disks/fromnothing?{API}", missing)
    assert (absent.status_code, error_code(absent)) == (404, "ResourceNotFound")


def test_import_needs_storage_account_id_and_reads_the_blob(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, unique_name: str
) -> None:
    service = BlobServiceClient.from_connection_string(proving_ground.azurite.connection_string())
    container = service.create_container(unique_name)
    blob = container.get_blob_client("image.vhd")
    # Import takes a fixed VHD, as Azure does: the disk's bytes, then a 512-byte footer.
    blob.create_page_blob(2 * MIB + 512)
    data = hashlib.sha256(b"seed").digest() * 16  # 512 bytes
    blob.upload_page(data, offset=MIB, length=512)
    blob.upload_page(vhd.build_footer(2 * MIB, uuid.uuid4()), offset=2 * MIB, length=512)
    source_uri = blob.url
    account_id = (
        f"/subscriptions/{proving_ground.subscription_id}/resourceGroups/{rg}"
        f"/providers/Microsoft.Storage/storageAccounts/{proving_ground.backup_account}"
    )
    creation: dict[str, Any] = {"createOption": "Import", "sourceUri": source_uri}
    body = {"location": "westus", "properties": {"creationData": creation}}
    no_account = arm.put(f"{base(proving_ground, rg)}/disks/imported?{API}", body)
    assert no_account.status_code == 400
    assert no_account.json()["error"]["target"] == "properties.creationData.storageAccountId"
    creation["storageAccountId"] = account_id.replace(proving_ground.backup_account, "otheraccount")
    wrong = arm.put(f"{base(proving_ground, rg)}/disks/imported?{API}", body)
    assert (
        wrong.status_code == 400
        and wrong.json()["error"]["target"] == "properties.creationData.storageAccountId"
    )
    creation["storageAccountId"] = account_id
    imported = arm.wait(arm.put(f"{base(proving_ground, rg)}/disks/imported?{API}", body)).json()
    assert imported["properties"]["diskSizeBytes"] == 2 * MIB
    content = requests.get(
        f"{proving_ground.control_url}/resourceGroups/{rg}/disks/imported/content?offset={MIB}&length=1024",
        verify=str(proving_ground.arm_ca_cert), timeout=30,
    ).content  # fmt: skip
    assert content == data + bytes(512)
    creation["sourceUri"] = source_uri.replace("image.vhd", "missing.vhd")
    gone = arm.put(f"{base(proving_ground, rg)}/disks/imported2?{API}", body)
    assert gone.status_code == 400 and gone.json()["error"]["target"] == "properties.creationData.sourceUri"


# -- grant and revoke ------------------------------------------------------------------------------------


def test_grant_gives_a_working_sas_until_revoked(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "g", size=2 * MIB, fraction=0.5)
    create_snapshot(arm, proving_ground, rg, "g", "gs")
    granted = grant(arm, proving_ground, rg, "gs", seconds=3600)
    assert granted.status_code == 200
    sas = granted.json()["accessSAS"]
    assert "sig=" in sas and "sr=b" in sas
    assert requests.head(sas, timeout=30).status_code == 200
    state = arm.get(f"{base(proving_ground, rg)}/snapshots/gs?{API}").json()["properties"]["diskState"]
    assert state == "ActiveSAS"
    mine = [
        g for g in proving_ground.control("GET", "/grants")["resources"] if g["id"].endswith("/snapshots/gs")
    ]
    assert len(mine) == 1
    busy = arm.delete(f"{base(proving_ground, rg)}/snapshots/gs?{API}")
    assert (busy.status_code, error_code(busy)) == (409, "OperationNotAllowed")
    revoke(arm, proving_ground, rg, "gs")
    assert requests.head(sas, timeout=30).status_code == 403
    state = arm.get(f"{base(proving_ground, rg)}/snapshots/gs?{API}").json()["properties"]["diskState"]
    assert state == "Unattached"
    assert arm.wait(arm.delete(f"{base(proving_ground, rg)}/snapshots/gs?{API}")).status_code == 200


def test_grant_result_is_on_the_status_body_too(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "g2", size=MIB, fraction=0.1)
    create_snapshot(arm, proving_ground, rg, "g2", "g2s")
    accepted = arm.post(
        f"{base(proving_ground, rg)}/snapshots/g2s/beginGetAccess?{API}",
        {"access": "Read", "durationInSeconds": 60},
    )
    assert accepted.status_code == 202 and not accepted.content
    status = arm.wait(accepted, via="Azure-AsyncOperation").json()
    sas = status["properties"]["output"]["accessSAS"]
    assert arm.get(accepted.headers["Location"]).json() == {"accessSAS": sas}
    revoke(arm, proving_ground, rg, "g2s")


def test_grant_requests_are_checked(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    make_disk(proving_ground, rg, "gc", size=MIB, fraction=0.1)
    create_snapshot(arm, proving_ground, rg, "gc", "gcs")
    url = f"{base(proving_ground, rg)}/snapshots/gcs/beginGetAccess?{API}"
    cases = [
        ({"durationInSeconds": 60}, 400, "access"),
        ({"access": "Read"}, 400, "durationInSeconds"),
        ({"access": "Read", "durationInSeconds": 0}, 400, "durationInSeconds"),
        ({"access": "None", "durationInSeconds": 60}, 400, "access"),
        ({"access": "Write", "durationInSeconds": 60}, 409, "access"),
    ]
    for body, status, target in cases:
        response = arm.post(url, body)
        assert (response.status_code, response.json()["error"].get("target")) == (status, target), body
    missing = arm.post(
        f"{base(proving_ground, rg)}/snapshots/nothing/beginGetAccess?{API}",
        {"access": "Read", "durationInSeconds": 60},
    )
    assert (missing.status_code, error_code(missing)) == (404, "ResourceNotFound")


def test_at_most_five_snapshots_of_a_family_hold_a_sas(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "fam", size=MIB, fraction=0.1)
    names = [f"f{i}" for i in range(7)]
    for name in names:
        create_snapshot(arm, proving_ground, rg, "fam", name)
    full = create_snapshot(arm, proving_ground, rg, "fam", "notinfamily", incremental=False)
    assert "incrementalSnapshotFamilyId" not in full["properties"]
    for name in names[:5]:
        assert grant(arm, proving_ground, rg, name).status_code == 200
    family = arm.get(f"{base(proving_ground, rg)}/snapshots/f0?{API}").json()["properties"][
        "incrementalSnapshotFamilyId"
    ]
    assert proving_ground.control("GET", "/grants")["families"][family] == 5
    sixth = grant(arm, proving_ground, rg, names[5])
    assert (sixth.status_code, error_code(sixth)) == (409, "OperationNotAllowed")
    assert grant(arm, proving_ground, rg, names[0]).status_code == 200  # a re-grant replaces, it does not add
    assert grant(arm, proving_ground, rg, "notinfamily").status_code == 200  # full snapshots are not counted
    revoke(arm, proving_ground, rg, names[1])
    assert grant(arm, proving_ground, rg, names[5]).status_code == 200
    for name in [names[0], *names[2:6], "notinfamily"]:
        revoke(arm, proving_ground, rg, name)
    assert family not in proving_ground.control("GET", "/grants")["families"]


def test_disk_grant_and_revoke(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    make_disk(proving_ground, rg, "dg", size=MIB, fraction=0.2)
    accepted = arm.post(
        f"{base(proving_ground, rg)}/disks/dg/beginGetAccess?{API}",
        {"access": "Read", "durationInSeconds": 120},
    )
    sas = arm.wait(accepted).json()["accessSAS"]
    assert requests.head(sas, timeout=30).status_code == 200
    revoke(arm, proving_ground, rg, "dg", kind="disks")
    assert requests.head(sas, timeout=30).status_code == 403


# -- faults ----------------------------------------------------------------------------------------------


def test_injected_429_500_and_reset_hit_only_the_named_calls(
    arm: ArmClient, proving_ground: ProvingGround, rg: str
) -> None:
    make_disk(proving_ground, rg, "fd", size=MIB, fraction=0.1)
    create_snapshot(arm, proving_ground, rg, "fd", "fs")
    proving_ground.control("POST", "/faults", [
        {"operation": "Snapshots_Get", "action": "429", "retry_after": 7, "resource_name": "fs"},
        {"operation": "Snapshots_Get", "action": "500", "resource_name": "fs"},
        {"operation": "Snapshots_Get", "action": "reset", "resource_name": "fs"},
    ])  # fmt: skip
    url = f"{base(proving_ground, rg)}/snapshots/fs?{API}"
    assert (
        arm.get(f"{base(proving_ground, rg)}/disks/fd?{API}").status_code == 200
    )  # other operations untouched
    throttled = arm.get(url)
    assert (throttled.status_code, error_code(throttled), throttled.headers["Retry-After"]) == (
        429,
        "TooManyRequests",
        "7",
    )
    failed = arm.get(url)
    assert (failed.status_code, error_code(failed)) == (500, "InternalExecutionError")
    with pytest.raises(requests.ConnectionError):
        arm.get(url)
    assert arm.get(url).status_code == 200
    assert proving_ground.control("GET", "/faults")["faults"] == []


def test_the_status_poll_can_be_throttled(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    make_disk(proving_ground, rg, "pd", size=MIB, fraction=0.1)
    accepted = arm.put(
        f"{base(proving_ground, rg)}/snapshots/ps?{API}", snapshot_body(proving_ground, rg, "pd")
    )
    proving_ground.control(
        "POST", "/faults", {"operation": "DiskOperations_Get", "action": "429", "count": 2}
    )
    assert arm.get(accepted.headers["Azure-AsyncOperation"]).status_code == 429
    assert arm.get(accepted.headers["Location"]).status_code == 429
    assert arm.wait(accepted).status_code == 200


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [("Failed", 500, "InternalExecutionError"), ("Canceled", 409, "OperationPreempted")],
)
def test_an_operation_can_be_made_to_end_failed_or_canceled(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, outcome: str, status: int, code: str
) -> None:
    make_disk(proving_ground, rg, "od", size=MIB, fraction=0.1)
    proving_ground.control(
        "POST", "/faults", {"operation": "Snapshots_CreateOrUpdate", "action": outcome, "resource_name": "os"}
    )
    accepted = arm.put(
        f"{base(proving_ground, rg)}/snapshots/os?{API}", snapshot_body(proving_ground, rg, "od")
    )
    assert accepted.status_code == 202
    body = arm.wait(accepted, via="Azure-AsyncOperation").json()
    assert body["status"] == outcome and body["error"]["code"] == code
    final = arm.get(accepted.headers["Location"])
    assert (final.status_code, error_code(final)) == (status, code)
    state = arm.get(f"{base(proving_ground, rg)}/snapshots/os?{API}").json()["properties"][
        "provisioningState"
    ]
    assert state == "Failed"


def test_a_failed_grant_leaves_no_sas(arm: ArmClient, proving_ground: ProvingGround, rg: str) -> None:
    make_disk(proving_ground, rg, "fg", size=MIB, fraction=0.1)
    create_snapshot(arm, proving_ground, rg, "fg", "fgs")
    fault = {"operation": "Snapshots_GrantAccess", "action": "Failed", "code": "InternalDiskManagementError"}
    proving_ground.control("POST", "/faults", fault)
    accepted = arm.post(
        f"{base(proving_ground, rg)}/snapshots/fgs/beginGetAccess?{API}",
        {"access": "Read", "durationInSeconds": 60},
    )
    final = arm.wait(accepted)
    assert (final.status_code, error_code(final)) == (500, "InternalDiskManagementError")
    assert not [g for g in proving_ground.control("GET", "/grants")["resources"] if g["id"].endswith("/fgs")]


def test_no_token_or_signature_reaches_the_emulator_logs(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="testbed.emulator")
    make_disk(proving_ground, rg, "lg", size=MIB, fraction=0.1)
    create_snapshot(arm, proving_ground, rg, "lg", "lgs")
    proving_ground.control("POST", "/faults", {"operation": "Snapshots_GrantAccess", "action": "429"})
    assert grant(arm, proving_ground, rg, "lgs").status_code == 429
    sas = grant(arm, proving_ground, rg, "lgs").json()["accessSAS"]
    revoke(arm, proving_ground, rg, "lgs")
    signature = parse_qs(urlsplit(sas).query)["sig"][0]
    assert caplog.records  # the emulator did log these calls
    assert proving_ground.arm_token not in caplog.text
    assert signature not in caplog.text


def test_old_finished_operations_are_forgotten(
    arm: ArmClient, proving_ground: ProvingGround, rg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "MAX_KEPT_OPERATIONS", 4)
    body = {"location": "westus", "properties": {"creationData": EMPTY, "diskSizeGB": 1}}
    first = arm.put(f"{base(proving_ground, rg)}/disks/op0?{API}", body)
    arm.wait(first)
    for index in range(1, 6):
        arm.wait(arm.put(f"{base(proving_ground, rg)}/disks/op{index}?{API}", body))
    forgotten = arm.get(first.headers["Azure-AsyncOperation"])
    assert (forgotten.status_code, error_code(forgotten)) == (404, "NotFound")
