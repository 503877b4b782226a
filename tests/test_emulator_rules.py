"""The emulator's pure parts, by tables of cases: request-body checks, ids, faults, operations, tokens."""

from __future__ import annotations

from typing import Any

import pytest

from backup.errors import InvalidInputError
from testbed.emulator import arm_errors
from testbed.emulator.arm_errors import ArmError
from testbed.emulator.faults import FaultPlan, parse_fault
from testbed.emulator.operations import Operation, failure_error
from testbed.emulator.resources import (
    ResourceKey,
    is_valid_name,
    is_valid_resource_group,
    normalize_location,
    parse_compute_id,
    parse_storage_account_id,
    size_gb,
)
from testbed.emulator.schema import SchemaProblem, validate_body
from testbed.emulator.tokens import TokenAuthority

COPY = {"createOption": "Copy", "sourceResourceId": "/subscriptions/s/resourceGroups/r/providers/x"}


@pytest.mark.parametrize(
    ("definition", "body"),
    [
        ("Snapshot", {"location": "westus", "properties": {"creationData": COPY}}),
        ("Snapshot", {"location": "westus", "properties": {"creationData": COPY, "incremental": True}}),
        ("Snapshot", {"location": "West US", "tags": {"a": "b"}, "properties": {"creationData": COPY}}),
        # read-only properties in a request are ignored, as ARM ignores them
        ("Snapshot", {"location": "x", "id": 5, "properties": {"creationData": COPY, "diskState": 7}}),
        # enum values match case-insensitively; unknown properties are ignored
        ("Disk", {"location": "x", "properties": {"creationData": {"createOption": "empty"}, "zzz": 1}}),
        ("Disk", {"location": "x", "sku": {"name": "Premium_LRS"}, "properties": {"creationData": COPY}}),
        ("GrantAccessData", {"access": "Read", "durationInSeconds": 3600}),
        ("GrantAccessData", {"access": "Read", "durationInSeconds": 60, "fileFormat": "VHDX"}),
    ],
)
def test_valid_bodies_pass(definition: str, body: dict[str, Any]) -> None:
    validate_body(definition, body)


@pytest.mark.parametrize(
    ("definition", "body", "target"),
    [
        ("Snapshot", {"properties": {"creationData": COPY}}, "location"),
        ("Snapshot", {"location": "x", "properties": {}}, "properties.creationData"),
        (
            "Snapshot",
            {"location": "x", "properties": {"creationData": {}}},
            "properties.creationData.createOption",
        ),
        (
            "Snapshot",
            {"location": "x", "properties": {"creationData": {"createOption": "Nope"}}},
            "properties.creationData.createOption",
        ),
        (
            "Snapshot",
            {"location": "x", "properties": {"creationData": COPY, "incremental": "yes"}},
            "properties.incremental",
        ),
        ("Snapshot", {"location": 3, "properties": {"creationData": COPY}}, "location"),
        ("Snapshot", {"location": "x", "tags": {"a": 1}, "properties": {"creationData": COPY}}, "tags.a"),
        (
            "Snapshot",
            {"location": "x", "sku": {"name": "UltraSSD_LRS"}, "properties": {"creationData": COPY}},
            "sku.name",
        ),
        (
            "Disk",
            {"location": "x", "properties": {"creationData": COPY, "diskSizeGB": 2**31}},
            "properties.diskSizeGB",
        ),
        (
            "Disk",
            {"location": "x", "properties": {"creationData": COPY, "diskSizeGB": 1.5}},
            "properties.diskSizeGB",
        ),
        (
            "Snapshot",
            {"location": "x", "properties": {"creationData": {**COPY, "instantAccessDurationMinutes": 0}}},
            "properties.creationData.instantAccessDurationMinutes",
        ),
        ("GrantAccessData", {"access": "Read"}, "durationInSeconds"),
        ("GrantAccessData", {"durationInSeconds": 5}, "access"),
        ("GrantAccessData", {"access": "Read", "durationInSeconds": True}, "durationInSeconds"),
        ("GrantAccessData", [], "body"),
    ],
)
def test_invalid_bodies_name_the_property(definition: str, body: Any, target: str) -> None:
    with pytest.raises(SchemaProblem) as caught:
        validate_body(definition, body)
    assert caught.value.target == target
    assert target in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1",
            ("s1", "rg", "disks", "d1"),
        ),
        (
            "subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/snapshots/x",
            ("s1", "rg", "snapshots", "x"),
        ),
        (
            "/SUBSCRIPTIONS/s1/resourcegroups/rg/providers/microsoft.compute/DISKS/d1/",
            ("s1", "rg", "disks", "d1"),
        ),
        ("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v", None),
        ("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/extra", None),
        ("not an id", None),
    ],
)
def test_parse_compute_id(text: str, expected: tuple[str, str, str, str] | None) -> None:
    key = parse_compute_id(text)
    if expected is None:
        assert key is None
    else:
        assert key is not None
        assert (key.subscription_id, key.resource_group, key.resource_type, key.name) == expected


def test_keys_compare_case_insensitively_and_ids_are_canonical() -> None:
    one = ResourceKey("S", "RG", "disks", "Disk1")
    two = ResourceKey("s", "rg", "disks", "disk1")
    assert one.folded() == two.folded()
    assert one.id == "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/disks/Disk1"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("disk-1_a", True),
        ("D" * 80, True),
        ("D" * 81, False),
        ("has.dot", False),
        ("", False),
        ("sp ace", False),
        ("disk\n", False),  # fullmatch: '$' would let a trailing newline through
    ],
)
def test_name_rule(name: str, ok: bool) -> None:
    assert is_valid_name(name) is ok


def test_resource_group_rule_refuses_a_trailing_newline() -> None:
    assert is_valid_resource_group("rg-1") and not is_valid_resource_group("rg-1\n")


def test_small_helpers() -> None:
    assert (
        parse_storage_account_id(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a1"
        )
        == "a1"
    )
    assert (
        parse_storage_account_id("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/disks/a1")
        is None
    )
    assert normalize_location("West US 2") == "westus2"
    assert size_gb(512) == 1
    assert size_gb(1 << 30) == 1
    assert size_gb((1 << 30) + 512) == 2


# -- faults ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"operation": "Snapshots_Nope", "action": "429"}, "operation"),
        ({"operation": "Snapshots_Get", "action": "404"}, "action"),
        ({"operation": "Snapshots_Get", "action": "Failed"}, "action"),  # not long-running
        ({"operation": "Snapshots_Get", "action": "429", "count": 0}, "count"),
        ({"operation": "Snapshots_Get", "action": "429", "retry_after": -1}, "retry_after"),
        ({"operation": "Snapshots_Get", "action": "429", "resource_name": 3}, "resource_name"),
        ("not an object", "body"),
    ],
)
def test_bad_fault_requests_name_the_field(request_body: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_fault(request_body)
    assert caught.value.field == field


def test_faults_are_consumed_in_order_and_per_resource() -> None:
    plan = FaultPlan()
    plan.add({"operation": "Snapshots_GrantAccess", "action": "429", "count": 2, "resource_name": "snapA"})
    plan.add({"operation": "Snapshots_GrantAccess", "action": "500"})
    plan.add({"operation": "Snapshots_CreateOrUpdate", "action": "Canceled"})
    assert plan.take_call_fault("Snapshots_Get", "snapA") is None
    first = plan.take_call_fault("Snapshots_GrantAccess", "SNAPA")
    assert first is not None and first.action == "429"
    other = plan.take_call_fault("Snapshots_GrantAccess", "snapB")
    assert other is not None and other.action == "500"
    again = plan.take_call_fault("Snapshots_GrantAccess", "snapA")
    assert again is not None and again.action == "429"
    assert plan.take_call_fault("Snapshots_GrantAccess", "snapA") is None
    # outcome faults are separate from call faults
    assert plan.take_call_fault("Snapshots_CreateOrUpdate", "x") is None
    outcome = plan.take_outcome_fault("Snapshots_CreateOrUpdate", "x")
    assert outcome is not None and outcome.action == "Canceled"
    assert plan.pending() == []


# -- operations --------------------------------------------------------------------------------------


def _operation(polls: int, complete: Any = None, failed: list[str] | None = None) -> Operation:
    key = ResourceKey("s", "rg", "snapshots", "snap")
    return Operation(
        name="Snapshots_GrantAccess",
        key=key,
        location="westus",
        polls_left=polls,
        complete=complete or (lambda: {"accessSAS": "https://x/y?sig=z"}),
        fail=lambda: (failed if failed is not None else []).append("fail"),
    )


def test_operation_runs_for_its_polls_then_reports_output() -> None:
    operation = _operation(3)
    operation.advance()
    operation.advance()
    assert operation.status_body()["status"] == "InProgress"
    assert "endTime" not in operation.status_body()
    operation.advance()
    body = operation.status_body()
    assert body["status"] == "Succeeded"
    assert body["properties"] == {"output": {"accessSAS": "https://x/y?sig=z"}}
    assert "endTime" in body
    operation.advance()  # polls after the end change nothing
    assert operation.status_body()["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [("Failed", 500, "InternalExecutionError"), ("Canceled", 409, "OperationPreempted")],
)
def test_forced_outcomes_report_an_error_and_undo(outcome: Any, status: int, code: str) -> None:
    failed: list[str] = []
    operation = _operation(1, failed=failed)
    operation.outcome = outcome
    operation.error = failure_error(outcome, None, None)
    operation.advance()
    body = operation.status_body()
    assert body["status"] == outcome
    assert body["error"]["code"] == code
    assert "properties" not in body
    assert operation.error.status == status
    assert failed == ["fail"]


def test_an_effect_that_fails_fails_the_operation() -> None:
    failed: list[str] = []

    def complete() -> None:
        raise arm_errors.internal_error()

    operation = _operation(1, complete=complete, failed=failed)
    operation.advance()
    assert operation.status == "Failed"
    assert operation.status_body()["error"]["code"] == "InternalExecutionError"
    assert failed == ["fail"]


# -- tokens ------------------------------------------------------------------------------------------


def test_tokens_are_checked_as_arm_does() -> None:
    authority = TokenAuthority()
    authority.check("Bearer " + authority.mint())
    cases: list[tuple[str | None, str]] = [
        (None, "AuthenticationFailed"),
        ("", "AuthenticationFailed"),
        ("Basic abc", "AuthenticationFailedInvalidHeader"),
        ("Bearer", "AuthenticationFailedInvalidHeader"),
        ("Bearer not-a-jwt", "InvalidAuthenticationToken"),
        ("Bearer " + TokenAuthority().mint(), "InvalidAuthenticationToken"),  # another emulator's key
        ("Bearer " + authority.mint(-10), "ExpiredAuthenticationToken"),
    ]
    for header, code in cases:
        with pytest.raises(ArmError) as caught:
            authority.check(header)
        assert caught.value.status == 401
        assert caught.value.code == code, header


def test_tampered_token_is_refused() -> None:
    authority = TokenAuthority()
    header, claims, signature = authority.mint().split(".")
    forged = claims[:-2] + ("A" if claims[-2] != "A" else "B") + claims[-1]
    with pytest.raises(ArmError) as caught:
        authority.check(f"Bearer {header}.{forged}.{signature}")
    assert caught.value.code == "InvalidAuthenticationToken"
