"""The control surface over real HTTPS: disks with content, writes, trims, reads, config, faults, reset."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from testbed.emulator.arm import ComputeEmulator
from testbed.proving_ground import ProvingGround

MIB = 1 << 20


@pytest.fixture
def rg(proving_ground: ProvingGround, unique_name: str) -> Iterator[str]:
    proving_ground.control("PUT", f"/resourceGroups/{unique_name}", {"location": "West Europe"})
    yield unique_name
    proving_ground.control("DELETE", "/faults")
    proving_ground.control("PATCH", "/config", {"operation_polls": 2, "page_size": 2, "retry_after": 1})


def raw(pg: ProvingGround, path: str) -> bytes:
    response = requests.get(pg.control_url + path, verify=str(pg.arm_ca_cert), timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/octet-stream"
    return response.content


def test_disk_content_can_be_made_written_trimmed_and_read(proving_ground: ProvingGround, rg: str) -> None:
    body = proving_ground.control(
        "PUT", f"/resourceGroups/{rg}/disks/d", {"size_bytes": 2 * MIB, "tags": {"a": "1"}}
    )
    assert body["location"] == "westeurope"  # the resource group's
    assert body["properties"]["diskSizeBytes"] == 2 * MIB and body["tags"] == {"a": "1"}
    page = bytes(range(256)) * 2
    written = proving_ground.control(
        "POST",
        f"/resourceGroups/{rg}/disks/d/write",
        {"offset": 4096, "data": base64.b64encode(page).decode()},
    )
    assert written["populated_bytes"] == 512
    proving_ground.control(
        "POST", f"/resourceGroups/{rg}/disks/d/write", {"offset": MIB, "length": 8192, "seed": 3}
    )
    ranges = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/d/ranges")
    assert ranges == {"size": 2 * MIB, "ranges": [[4096, 4607], [MIB, MIB + 8191]]}
    assert raw(
        proving_ground, f"/resourceGroups/{rg}/disks/d/content?offset=4096&length=1024"
    ) == page + bytes(512)
    proving_ground.control("POST", f"/resourceGroups/{rg}/disks/d/trim", {"offset": MIB, "length": 4096})
    ranges = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/d/ranges")["ranges"]
    assert ranges == [[4096, 4607], [MIB + 4096, MIB + 8191]]
    whole = raw(proving_ground, f"/resourceGroups/{rg}/disks/d/content")
    digest = proving_ground.control("GET", f"/resourceGroups/{rg}/disks/d/digest")
    assert digest["sha256"] == hashlib.sha256(whole).hexdigest()
    assert digest["populated_bytes"] == 512 + 4096


def test_fill_and_churn_are_deterministic(proving_ground: ProvingGround, rg: str) -> None:
    request = {"size_bytes": 4 * MIB, "fill": {"seed": 42, "fraction": 0.2}}
    digests = []
    for name in ("one", "two"):
        proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/{name}", request)
        proving_ground.control(
            "POST", f"/resourceGroups/{rg}/disks/{name}/churn", {"seed": 9, "write_fraction": 0.05}
        )
        digests.append(proving_ground.control("GET", f"/resourceGroups/{rg}/disks/{name}/digest"))
    assert digests[0] == digests[1]
    assert 0 < digests[0]["populated_bytes"] < 4 * MIB


@pytest.mark.parametrize(
    ("path", "body", "target"),
    [
        ("/disks/x", {"size_bytes": 1000}, "size_bytes"),
        ("/disks/x", {}, "size_bytes"),
        ("/disks/x", {"size_gb": 0}, "size_bytes"),
        ("/disks/x", {"size_bytes": MIB, "fill": {"seed": 1, "fraction": 2}}, "fraction"),
        ("/disks/x", {"size_bytes": MIB, "fill": {"fraction": 0.1}}, "seed"),
        ("/disks/x", {"size_bytes": MIB, "tags": {"a": 1}}, "tags"),
        ("/disks/base/write", {"offset": 100, "data": base64.b64encode(bytes(512)).decode()}, "offset"),
        ("/disks/base/write", {"offset": 0, "data": "@@@"}, "data"),
        ("/disks/base/write", {"offset": 0, "data": base64.b64encode(bytes(100)).decode()}, "length"),
        ("/disks/base/trim", {"offset": 0}, "length"),
        ("/disks/base/churn", {"seed": 1, "write_fraction": -1}, "write_fraction"),
    ],
)
def test_bad_control_requests_name_the_field(
    proving_ground: ProvingGround, rg: str, path: str, body: dict[str, Any], target: str
) -> None:
    proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/base", {"size_bytes": MIB})
    answer = proving_ground.control(
        "PUT" if path.count("/") == 2 else "POST", f"/resourceGroups/{rg}{path}", body
    )
    assert answer["error"]["code"] == "InvalidInput"
    assert answer["error"]["target"] == target


def test_config_and_fault_requests_are_validated(proving_ground: ProvingGround, rg: str) -> None:
    assert (
        proving_ground.control("PATCH", "/config", {"operation_polls": -1})["error"]["code"] == "InvalidInput"
    )
    assert (
        proving_ground.control("PATCH", "/config", {"copy_pending_polls": "x"})["error"]["target"]
        == "copy_pending_polls"
    )
    config = proving_ground.control("PATCH", "/config", {"page_size": 5, "copy_pending_polls": 2})
    assert config["page_size"] == 5 and config["copy_pending_polls"] == 2
    assert proving_ground.data_plane is not None and proving_ground.data_plane.copy_pending_polls == 2
    proving_ground.control("PATCH", "/config", {"copy_pending_polls": 3})
    for bad_seconds in (-1, "x", True):
        answer = proving_ground.control("PATCH", "/config", {"copy_pending_seconds": bad_seconds})
        assert answer["error"]["target"] == "copy_pending_seconds"
    config = proving_ground.control("PATCH", "/config", {"copy_pending_seconds": 90.5})
    assert config["copy_pending_seconds"] == 90.5 == proving_ground.data_plane.copy_pending_seconds
    assert (
        proving_ground.control("PATCH", "/config", {"copy_pending_seconds": 0})["copy_pending_seconds"] == 0
    )
    bad = proving_ground.control("POST", "/faults", {"operation": "Nope", "action": "429"})
    assert bad["error"]["target"] == "operation"
    added = proving_ground.control("POST", "/faults", {"operation": "Disks_Get", "action": "500", "count": 3})
    assert added["faults"][0]["remaining"] == 3
    assert proving_ground.control("DELETE", "/faults") == {"faults": []}
    assert proving_ground.control("GET", "/nowhere")["error"]["code"] == "NotFound"
    assert (
        proving_ground.control("GET", f"/resourceGroups/{rg}/disks/absent/digest")["error"]["code"]
        == "ResourceNotFound"
    )


def test_a_malformed_fault_answers_200_with_a_page_that_is_not_json(
    proving_ground: ProvingGround, rg: str
) -> None:
    # Not through the spec-checking client of test_emulator_arm.py: this answer is off the spec on purpose.
    proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/md", {"size_bytes": MIB})
    fault = {"operation": "Disks_Get", "action": "malformed", "resource_name": "md"}
    assert proving_ground.control("POST", "/faults", fault)["faults"][0]["action"] == "malformed"
    url = f"{proving_ground.arm_endpoint}{proving_ground.disk_id('md', rg)}?api-version=2026-03-02"
    headers = {"Authorization": f"Bearer {proving_ground.arm_token}"}

    def get() -> requests.Response:
        return requests.get(url, headers=headers, verify=str(proving_ground.arm_ca_cert), timeout=60)

    garbled = get()
    assert garbled.status_code == 200 and garbled.headers["Content-Type"] == "text/html"
    assert garbled.headers["x-ms-request-id"] and garbled.content.startswith(b"<html>")
    with pytest.raises(ValueError):
        garbled.json()
    assert get().json()["name"] == "md"  # the next call is answered as usual


def test_a_lost_answer_is_a_reset_after_the_call_took_effect(proving_ground: ProvingGround, rg: str) -> None:
    proving_ground.control("PATCH", "/config", {"operation_polls": 0})
    fault = {"operation": "Disks_CreateOrUpdate", "action": "lost", "resource_name": "made"}
    assert proving_ground.control("POST", "/faults", fault)["faults"][0]["action"] == "lost"
    url = f"{proving_ground.arm_endpoint}{proving_ground.disk_id('made', rg)}?api-version=2026-03-02"
    headers = {"Authorization": f"Bearer {proving_ground.arm_token}"}
    body = {"location": "westus", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}
    with pytest.raises(requests.ConnectionError):
        requests.put(url, json=body, headers=headers, verify=str(proving_ground.arm_ca_cert), timeout=60)
    # The client heard nothing, but the disk was made.
    made = requests.get(url, headers=headers, verify=str(proving_ground.arm_ca_cert), timeout=60)
    assert made.status_code == 200 and made.json()["properties"]["provisioningState"] == "Succeeded"


def test_a_sas_can_be_made_to_run_out_now(proving_ground: ProvingGround, rg: str) -> None:
    proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/ends", {"size_bytes": MIB})
    proving_ground.control("PATCH", "/config", {"operation_polls": 0})
    url = (
        f"{proving_ground.arm_endpoint}/subscriptions/{proving_ground.subscription_id}/resourceGroups/{rg}"
        "/providers/Microsoft.Compute/disks/ends/beginGetAccess?api-version=2026-03-02"
    )
    auth = {"Authorization": f"Bearer {proving_ground.arm_token}"}
    grant = {"access": "Read", "durationInSeconds": 3600}
    sas = requests.post(url, json=grant, headers=auth, verify=str(proving_ground.arm_ca_cert), timeout=60)
    sas_url = sas.json()["accessSAS"]
    assert requests.head(sas_url, timeout=60).status_code == 200
    ended = proving_ground.control("POST", f"/resourceGroups/{rg}/disks/ends/sas-expires")
    assert ended["sas"] == "expired"
    assert requests.head(sas_url, timeout=60).status_code == 403
    held = [g["id"] for g in proving_ground.control("GET", "/grants")["resources"]]
    assert proving_ground.disk_id("ends", rg) not in held
    again = proving_ground.control("POST", f"/resourceGroups/{rg}/disks/ends/sas-expires")
    assert again["sas"] == "none active"


def test_a_disk_with_an_active_sas_is_not_written(proving_ground: ProvingGround, rg: str) -> None:
    proving_ground.control("PUT", f"/resourceGroups/{rg}/disks/busy", {"size_bytes": MIB})
    proving_ground.control("PATCH", "/config", {"operation_polls": 0})
    url = (
        f"{proving_ground.arm_endpoint}/subscriptions/{proving_ground.subscription_id}/resourceGroups/{rg}"
        "/providers/Microsoft.Compute/disks/busy/{action}?api-version=2026-03-02"
    )
    auth = {"Authorization": f"Bearer {proving_ground.arm_token}"}
    verify = str(proving_ground.arm_ca_cert)
    grant = {"access": "Read", "durationInSeconds": 60}
    granted = requests.post(
        url.format(action="beginGetAccess"), json=grant, headers=auth, verify=verify, timeout=60
    )
    assert granted.status_code == 200 and "accessSAS" in granted.json()
    refused = proving_ground.control(
        "POST", f"/resourceGroups/{rg}/disks/busy/trim", {"offset": 0, "length": 512}
    )
    assert refused["error"]["code"] == "OperationNotAllowed"
    revoked = requests.post(url.format(action="endGetAccess"), headers=auth, verify=verify, timeout=60)
    assert revoked.status_code == 200
    assert "error" not in proving_ground.control(
        "POST", f"/resourceGroups/{rg}/disks/busy/trim", {"offset": 0, "length": 512}
    )


def test_reset_forgets_resources_and_revokes(proving_ground: ProvingGround) -> None:
    # A second emulator on the session's data plane, so the reset cannot touch other tests' resources.
    assert proving_ground.data_plane is not None
    with ComputeEmulator(proving_ground.data_plane, operation_polls=0) as emulator:
        verify = str(emulator.ca_cert)
        control = emulator.control_url
        requests.put(f"{control}/resourceGroups/rg", json={}, verify=verify, timeout=60)
        requests.put(
            f"{control}/resourceGroups/rg/disks/d", json={"size_bytes": MIB}, verify=verify, timeout=60
        )
        arm = f"{emulator.endpoint}/subscriptions/{emulator.subscription_id}/resourceGroups/rg"
        arm += "/providers/Microsoft.Compute"
        auth = {"Authorization": f"Bearer {emulator.token}"}
        grant = {"access": "Read", "durationInSeconds": 60}
        granted = requests.post(
            f"{arm}/disks/d/beginGetAccess?api-version=2026-03-02",
            json=grant,
            headers=auth,
            verify=verify,
            timeout=60,
        )
        sas = granted.json()["accessSAS"]
        assert requests.head(sas, timeout=30).status_code == 200
        assert requests.get(f"{control}/grants", verify=verify, timeout=60).json()["total"] == 1
        assert requests.post(f"{control}/reset", verify=verify, timeout=60).json() == {"reset": True}
        assert requests.get(f"{control}/grants", verify=verify, timeout=60).json()["total"] == 0
        assert requests.head(sas, timeout=30).status_code in (403, 404)
        listed = requests.get(
            f"{arm}/disks?api-version=2026-03-02", headers=auth, verify=verify, timeout=60
        ).json()
        assert listed == {"value": []}
