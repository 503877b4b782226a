"""A restore's pure parts: the window chain, spans and windows, names, grant lengths, and the checks every
restore request passes (HTTP body, command line, orchestration input), each failure naming its field."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from backup.app.restore_routes import parse_restore_request
from backup.azure.names import validate_new_compute_name
from backup.azure.page_range import PageRange
from backup.errors import InvalidInputError
from backup.settings import Settings
from backup.workflow.restore_models import (
    PointRef,
    PruneInput,
    RestoreInput,
    RestoreResult,
    RestoreStatus,
)
from backup.workflow.restore_plan import (
    FULL_WINDOW_BYTES,
    GENESIS,
    chain_digest,
    full_windows,
    restore_batch_name,
    restore_prefix,
    spans,
    temporary_disk_name,
    write_grant_seconds,
)
from backup.workflow.restore_startup import (
    prune_id_for_run,
    prune_input,
    restore_input,
    restore_tests_id,
)
from backup.workflow.retries import ActivityRetry

MiB = 1 << 20
SUB = "00000000-0000-0000-0000-0000000000aa"
DISK = f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.Compute/disks/web-os"
SETTINGS = Settings.from_env({"BACKUP_SUBSCRIPTION_ID": SUB, "BACKUP_STORAGE_ACCOUNT": "backupacct"})


# -- the window chain ---------------------------------------------------------------------------------------


def test_the_window_chain_is_sha256_of_the_last_link_and_the_windows_digest() -> None:
    windows = [os.urandom(64) for _ in range(5)]
    digests = [hashlib.sha256(w).digest() for w in windows]
    state = bytes(32)
    for digest in digests:
        state = hashlib.sha256(state + digest).digest()
    assert chain_digest(GENESIS, digests) == state.hex()
    # However the windows are split among activities, the chain is the same.
    for cut in range(6):
        assert chain_digest(chain_digest(GENESIS, digests[:cut]), digests[cut:]) == state.hex()
    assert chain_digest(GENESIS, []) == GENESIS
    # Order matters: the same windows in another order make another chain.
    assert chain_digest(GENESIS, list(reversed(digests))) != state.hex()


@pytest.mark.parametrize(("previous", "digests"), [("00", []), ("G" * 64, []), (GENESIS, [b"short"])])
def test_the_window_chain_refuses_what_is_not_a_digest(previous: str, digests: list[bytes]) -> None:
    with pytest.raises(InvalidInputError):
        chain_digest(previous, digests)


@pytest.mark.parametrize(
    ("disk", "span", "expected"),
    [
        (24 * MiB, 8 * MiB, [(0, 8 * MiB - 1), (8 * MiB, 16 * MiB - 1), (16 * MiB, 24 * MiB - 1)]),
        (10 * MiB + 512, 8 * MiB, [(0, 8 * MiB - 1), (8 * MiB, 10 * MiB + 511)]),
        (4 * MiB, 256 * MiB, [(0, 4 * MiB - 1)]),
    ],
)
def test_spans_and_windows_cover_the_disk_once_in_order(
    disk: int, span: int, expected: list[tuple[int, int]]
) -> None:
    cut = spans(disk, span)
    assert [(s.start, s.end) for s in cut] == expected
    windows = [w for s in cut for w in full_windows(s)]
    assert windows[0].start == 0 and windows[-1].end == disk - 1
    assert all(a.end + 1 == b.start for a, b in pairwise(windows))
    assert all(w.length <= FULL_WINDOW_BYTES and w.start % FULL_WINDOW_BYTES == 0 for w in windows)


@pytest.mark.parametrize(
    ("disk", "span"), [(0, 8 * MiB), (1000, 8 * MiB), (8 * MiB, MiB), (8 * MiB, 6 * MiB)]
)
def test_spans_refuse_sizes_that_do_not_fit(disk: int, span: int) -> None:
    with pytest.raises(InvalidInputError):
        spans(disk, span)


def test_windows_start_on_a_window_boundary() -> None:
    with pytest.raises(InvalidInputError):
        full_windows(PageRange(512, 8 * MiB - 1))


# -- names and lengths --------------------------------------------------------------------------------------


def test_a_restores_plan_lives_apart_from_every_backup_blob() -> None:
    assert restore_prefix("restore-1") == "restores/restore-1/"
    assert restore_batch_name("restore-1", 2, 7) == "restores/restore-1/plan/000002-00007.json"
    with pytest.raises(InvalidInputError):
        restore_prefix("a/b")


def test_a_restore_tests_disk_name_is_valid_and_the_same_for_the_same_restore() -> None:
    name = temporary_disk_name("restore-20261127T030000Z-abcd1234")
    assert name == temporary_disk_name("restore-20261127T030000Z-abcd1234")
    assert name != temporary_disk_name("restore-20261127T030000Z-abcd1235")
    assert validate_new_compute_name(name) == name and name.startswith("diskbackup-test-")


@pytest.mark.parametrize(
    ("disk_bytes", "seconds"),
    [(1, 3601), (30 * MiB, 3601), (30 * MiB * 3600, 7200), (32 * 1024**4, 7 * 24 * 3600)],
)
def test_a_write_grant_lasts_the_disk_at_half_upload_speed_and_an_hour(disk_bytes: int, seconds: int) -> None:
    assert write_grant_seconds(disk_bytes) == seconds


def test_instance_ids() -> None:
    assert prune_id_for_run("nightly-20261127T010000Z") == "nightly-20261127T010000Z-prune"
    assert restore_tests_id(datetime(2026, 11, 29, 4, 0, tzinfo=UTC)) == "restore-tests-20261129T040000Z"


# -- requests -----------------------------------------------------------------------------------------------

GOOD_TARGET = {"resourceGroup": "rg-restored", "diskName": "web-os-restored"}


def test_a_restore_request_becomes_its_orchestration_input() -> None:
    body = {
        "diskId": DISK,
        "at": "2026-11-27T03:00:00+01:00",
        "target": {
            **GOOD_TARGET,
            "location": "westeurope",
            "sku": "premium_lrs",
            "zone": "2",
            "tags": {"a": "b"},
        },
        "verify": "sample",
        "keepOnFailure": True,
    }
    request = parse_restore_request(json.dumps(body).encode(), SETTINGS)
    assert (request.disk_id, request.run_id, request.at) == (DISK, None, "2026-11-27T02:00:00.000Z")
    target = request.target
    assert (target.subscription_id, target.location, target.sku, target.zone) == (
        SUB,
        "westeurope",
        "Premium_LRS",
        "2",
    )
    assert target.disk_id.endswith(
        "/resourceGroups/rg-restored/providers/Microsoft.Compute/disks/web-os-restored"
    )
    assert (request.verify, request.keep_on_failure, request.purpose, request.trigger) == (
        "sample",
        True,
        "restore",
        "http",
    )
    assert RestoreInput.from_json(json.loads(json.dumps(request.to_json()))) == request
    defaults = parse_restore_request(
        json.dumps({"diskId": DISK, "runId": "nightly-1", "target": GOOD_TARGET}).encode(), SETTINGS
    )
    assert (defaults.verify, defaults.target.location, defaults.target.sku) == ("full", None, None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"runId": None}, "runId"),  # neither runId nor at
        ({"at": "2026-11-27T03:00:00Z"}, "runId"),  # both
        ({"diskId": "/subscriptions/x/disks/y"}, "diskId"),
        ({"diskId": 7}, "diskId"),
        ({"runId": "night one"}, "runId"),
        ({"runId": None, "at": "yesterday"}, "at"),
        ({"runId": None, "at": "2026-11-27T03:00:00"}, "at"),  # no zone
        ({"verify": "half"}, "verify"),
        ({"keepOnFailure": "yes"}, "keepOnFailure"),
        ({"target": "rg/disk"}, "target"),
        ({"target": {**GOOD_TARGET, "diskName": "."}}, "target.diskName"),
        ({"target": {**GOOD_TARGET, "diskName": "a.b"}}, "target.diskName"),  # no '.' in names we create
        ({"target": {**GOOD_TARGET, "resourceGroup": "a/b"}}, "target.resourceGroup"),
        ({"target": {**GOOD_TARGET, "location": "West Europe"}}, "target.location"),
        ({"target": {**GOOD_TARGET, "sku": "Fast_LRS"}}, "target.sku"),
        ({"target": {**GOOD_TARGET, "zone": "0"}}, "target.zone"),
        ({"target": {**GOOD_TARGET, "subscriptionId": "not-a-guid"}}, "target.subscriptionId"),
        ({"target": {**GOOD_TARGET, "tags": {"a/b": "c"}}}, "target.tags name"),
        ({"target": {**GOOD_TARGET, "tags": {f"t{i}": "v" for i in range(49)}}}, "target.tags"),
        ({"target": {**GOOD_TARGET, "tags": {"A": "1", "a": "2"}}}, "target.tags"),
        ({"target": {**GOOD_TARGET, "color": "blue"}}, "target.color"),
        ({"extra": 1}, "extra"),
    ],
)
def test_every_bad_restore_request_names_its_field(change: dict[str, Any], field: str) -> None:
    body = {"diskId": DISK, "runId": "nightly-1", "target": GOOD_TARGET, **change}
    body = {key: value for key, value in body.items() if value is not None or key == "runId"}
    if body.get("runId") is None:
        del body["runId"]
    with pytest.raises(InvalidInputError) as caught:
        parse_restore_request(json.dumps(body).encode(), SETTINGS)
    assert caught.value.field == field, caught.value


@pytest.mark.parametrize(
    ("body", "field"), [(b"", "body"), (b"[]", "body"), (b"{", "body"), (b"{}", "diskId")]
)
def test_a_restore_body_that_is_not_a_request(body: bytes, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_restore_request(body, SETTINGS)
    assert caught.value.field == field


# -- records ------------------------------------------------------------------------------------------------


def test_records_go_through_json_and_back() -> None:
    request = restore_input(SETTINGS, "cli", disk_id=DISK, target=GOOD_TARGET, run_id="nightly-1")
    assert RestoreInput.from_json(request.to_json()) == request
    result = RestoreResult(
        restore_id="restore-1",
        status="Succeeded",
        phase="done",
        disk_id=DISK,
        target_disk_id=request.target.disk_id,
        purpose="restore",
        verify="full",
        started_at="2026-11-27T03:00:00.000Z",
        finished_at="2026-11-27T03:05:00.000Z",
        verdict="Passed",
        source_digest="ab" * 32,
        disk_digest="ab" * 32,
        warnings=("one",),
    )
    assert RestoreResult.from_json(result.to_json()) == result
    assert RestoreResult.read({"status": "Sort of"}) is None and RestoreStatus.read("text") is None
    with pytest.raises(InvalidInputError) as caught:
        RestoreResult.from_json({**result.to_json(), "sourceDigest": "sig=abc"})
    assert caught.value.field == "restore result.sourceDigest"
    point = PointRef(
        "nightly-1", "disk-backups", "a/b/c/chain.vhd", None, 24 * MiB, "full", "2026-11-27T01:00:00.000Z"
    )
    assert PointRef.from_json(point.to_json()) == point
    pruning = prune_input(SETTINGS, "schedule", after_run_id="nightly-20261127T010000Z")
    assert PruneInput.from_json(pruning.to_json()) == pruning
    assert pruning.policy == "daily=7,weekly=4,monthly=12,yearly=3" and pruning.selection.kind == "tag"


def test_restore_and_prune_inputs_carry_their_retry_policy_validated_with_defaults_when_absent() -> None:
    request = restore_input(SETTINGS, "cli", disk_id=DISK, target=GOOD_TARGET, run_id="nightly-1")
    pruning = prune_input(SETTINGS, "cli")
    assert request.options.retry == pruning.options.retry == ActivityRetry()  # 6 calls, 5 s doubling to 60
    chosen = ActivityRetry(attempts=3, first_seconds=10, max_seconds=30)
    restore_json = request.to_json()
    restore_json["options"]["retry"] = chosen.to_json()
    assert RestoreInput.from_json(restore_json).options.retry == chosen
    prune_json = pruning.to_json()
    prune_json["options"]["retry"] = chosen.to_json()
    assert PruneInput.from_json(prune_json).options.retry == chosen
    # An input written before retries existed has none: the defaults.
    del restore_json["options"]["retry"], prune_json["options"]["retry"]
    assert RestoreInput.from_json(restore_json).options.retry == ActivityRetry()
    assert PruneInput.from_json(prune_json).options.retry == ActivityRetry()
    # A bad one names what is wrong.
    for retry, field in (
        ({"attempts": 0}, "retry.attempts"),
        ({"attempts": "6"}, "options.retry.attempts"),
        ({"firstSeconds": 90, "maxSeconds": 60}, "retry"),
        ("often", "options.retry"),
    ):
        for parse, data in ((RestoreInput.from_json, restore_json), (PruneInput.from_json, prune_json)):
            data["options"]["retry"] = retry
            with pytest.raises(InvalidInputError) as caught:
                parse(data)
            assert caught.value.field == field, (retry, caught.value)
