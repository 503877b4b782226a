"""Service and account SAS of the emulator's data plane, checked against the official storage SDK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import generate_account_sas, generate_blob_sas, generate_container_sas

from backup.azure.storage_auth import sign
from backup.errors import InvalidInputError
from testbed.azurite import new_account_key
from testbed.emulator import sas

ACCOUNT = "mdisks"
KEY = new_account_key()
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def _fields(query: str) -> dict[str, str]:
    return sas.sas_fields(query)


def _check(
    query: str, *, permission: str = "r", now: datetime = NOW, container: str = "c1", blob: str = "abcd"
):
    return sas.check_blob_sas(
        _fields(query),
        account=ACCOUNT,
        account_key=KEY,
        container=container,
        blob=blob,
        permission=permission,
        now=now,
    )


def test_string_to_sign_and_signature_equal_the_sdks() -> None:
    hooked: list[str] = []
    theirs = _fields(
        generate_blob_sas(
            ACCOUNT,
            "c1",
            "abcd",
            account_key=KEY,
            permission="r",
            start=NOW,
            expiry=NOW + timedelta(hours=1),
            sts_hook=hooked.append,
        )
    )
    assert theirs["sv"] >= "2020-12-06"  # the SDK signs with its own newest version
    assert hooked == [sas.service_sas_string_to_sign(theirs, ACCOUNT, "c1", "abcd")]
    assert sign(KEY, hooked[0]) == theirs["sig"]


def test_account_string_to_sign_equals_the_sdks() -> None:
    hooked: list[str] = []
    theirs = _fields(
        generate_account_sas(
            ACCOUNT, KEY, resource_types="o", permission="w", expiry=NOW, services="b", sts_hook=hooked.append
        )
    )
    assert hooked == [sas.account_sas_string_to_sign(theirs, ACCOUNT)]


def test_our_sas_equals_the_sdks_at_our_version() -> None:
    ours = _fields(
        sas.generate_blob_sas(
            account=ACCOUNT,
            account_key=KEY,
            container="c1",
            blob="abcd",
            permissions="r",
            start=NOW,
            expiry=NOW + timedelta(hours=1),
        )
    )
    assert ours["sv"] == sas.SAS_VERSION and ours["sr"] == "b" and ours["sp"] == "r"
    assert ours["st"] == "2026-03-02T12:00:00Z" and ours["se"] == "2026-03-02T13:00:00Z"
    assert ours["sig"] == sign(KEY, sas.service_sas_string_to_sign(ours, ACCOUNT, "c1", "abcd"))


def test_a_sas_we_issue_passes_our_check() -> None:
    query = sas.generate_blob_sas(
        account=ACCOUNT,
        account_key=KEY,
        container="c1",
        blob="abcd",
        permissions="r",
        expiry=NOW + timedelta(1),
    )
    assert _check(query) is None
    assert "sig=" in query and "sr=b" in query and "sp=r" in query


@pytest.mark.parametrize("version", ["2020-12-06", "2022-11-02", None])
def test_sdk_blob_and_container_sas_pass(version: str | None) -> None:
    expiry = NOW + timedelta(hours=1)
    extra = {"version": version} if version else {}
    blob_sas = generate_blob_sas(
        ACCOUNT, "c1", "abcd", account_key=KEY, permission="rw", expiry=expiry, **extra
    )
    container_sas = generate_container_sas(
        ACCOUNT, "c1", account_key=KEY, permission="rw", expiry=expiry, **extra
    )
    assert _check(blob_sas, permission="w") is None
    assert _check(container_sas, permission="w", blob="any/name") is None


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda q: q.replace("sp=r", "sp=rw"), "AuthenticationFailed"),  # a widened permission
        (lambda q: q + "&spr=https", "AuthorizationProtocolMismatch"),
        (lambda q: q.replace("sv=2022-11-02", "sv=2019-12-12"), "AuthenticationFailed"),
        (lambda q: q.replace("sr=b", "sr=bs"), "AuthenticationFailed"),
        (lambda q: q.split("&sig=")[0], "AuthenticationFailed"),
    ],
)
def test_tampering_is_refused(mutate, code: str) -> None:
    query = sas.generate_blob_sas(
        account=ACCOUNT,
        account_key=KEY,
        container="c1",
        blob="abcd",
        permissions="r",
        expiry=NOW + timedelta(1),
    )
    problem = _check(mutate(query))
    assert problem is not None and problem.status == 403 and problem.code == code


def test_other_blob_other_key_and_permission() -> None:
    query = sas.generate_blob_sas(
        account=ACCOUNT,
        account_key=KEY,
        container="c1",
        blob="abcd",
        permissions="r",
        expiry=NOW + timedelta(1),
    )
    assert _check(query, blob="other").code == "AuthenticationFailed"  # type: ignore[union-attr]
    assert _check(query, container="c2").code == "AuthenticationFailed"  # type: ignore[union-attr]
    problem = _check(query, permission="w")
    assert problem is not None and problem.code == "AuthorizationPermissionMismatch"
    forged = sas.generate_blob_sas(
        account=ACCOUNT,
        account_key=new_account_key(),
        container="c1",
        blob="abcd",
        permissions="r",
        expiry=NOW + timedelta(1),
    )
    assert _check(forged).detail == "Signature did not match."  # type: ignore[union-attr]


def test_time_window() -> None:
    query = sas.generate_blob_sas(
        account=ACCOUNT,
        account_key=KEY,
        container="c1",
        blob="abcd",
        permissions="r",
        start=NOW,
        expiry=NOW + timedelta(seconds=60),
    )
    assert _check(query, now=NOW + timedelta(seconds=60)) is None  # the expiry second itself still works
    late = _check(query, now=NOW + timedelta(seconds=61))
    early = _check(query, now=NOW - timedelta(seconds=1))
    for problem in (late, early):
        assert problem is not None and problem.code == "AuthenticationFailed"
        assert problem.detail.startswith("Signature not valid in the specified time frame")


def test_account_sas_from_the_sdk() -> None:
    query = generate_account_sas(
        ACCOUNT, KEY, resource_types="sco", permission="rw", expiry=NOW + timedelta(hours=1), services="b"
    )
    fields = _fields(query)
    check = {"account": ACCOUNT, "account_key": KEY, "now": NOW}
    assert sas.check_account_sas(fields, permission="w", resource_type="o", **check) is None
    read_only = _fields(
        generate_account_sas(
            ACCOUNT, KEY, resource_types="o", permission="r", expiry=NOW + timedelta(hours=1)
        )
    )
    problem = sas.check_account_sas(read_only, permission="w", resource_type="o", **check)
    assert problem is not None and problem.code == "AuthorizationPermissionMismatch"
    containers_only = _fields(
        generate_account_sas(
            ACCOUNT, KEY, resource_types="c", permission="w", expiry=NOW + timedelta(hours=1)
        )
    )
    problem = sas.check_account_sas(containers_only, permission="w", resource_type="o", **check)
    assert problem is not None and problem.code == "AuthorizationResourceTypeMismatch"
    fields["sig"] = fields["sig"][:-4] + "AAA="
    assert (
        sas.check_account_sas(fields, permission="w", resource_type="o", **check).code
        == "AuthenticationFailed"
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:00:00Z", datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("2026-03-02T10:00Z", datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),
        ("2026-03-02T10:00:00.1234567Z", datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_sas_time(text: str, expected: datetime | None) -> None:
    assert sas.parse_sas_time(text) == expected


def test_generate_validates_its_input() -> None:
    with pytest.raises(InvalidInputError, match="permissions"):
        sas.generate_blob_sas(
            account=ACCOUNT, account_key=KEY, container="c", blob="b", permissions="z", expiry=NOW
        )
    with pytest.raises(InvalidInputError, match="timezone"):
        sas.format_sas_time(datetime(2026, 1, 1))
