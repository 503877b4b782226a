"""Table REST (backup/azure/table.py) against a real Azurite: every operation, success and failure paths."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from backup.azure.odata import and_, eq, ge, lt
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.table import (
    EntityValue,
    TableClient,
    UpsertMode,
    entity_from_json,
    entity_to_json,
    parse_edm_datetime,
    parse_table_error,
)
from backup.azure.transport import Transport
from backup.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
    UnexpectedResponseError,
)
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite, new_account_key
from testbed.fault_proxy import FaultPlan, FaultProxy

SIGNER = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE)


@pytest.fixture
def table(azurite: Azurite, unique_name: str) -> Iterator[TableClient]:
    client = TableClient(azurite.table_endpoint(), unique_name, SIGNER)
    client.create_if_missing()
    yield client
    client.delete_table()


TYPED: dict[str, EntityValue] = {
    "Size": 2**53 + 1,  # beyond a JSON double: only a string-valued Edm.Int64 keeps it
    "Negative": -(2**63),
    "Small": 7,
    "Taken": datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC),
    "Ratio": 2.0,  # a whole float stays a float
    "Done": True,
    "Name": "disk-é-'quoted'",
    "Id": uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    "Blob": b"\x00\xffbytes",
}


# -- the table -------------------------------------------------------------------------------------------


def test_create_if_missing_and_delete_table(azurite: Azurite, unique_name: str) -> None:
    client = TableClient(azurite.table_endpoint(), unique_name, SIGNER)
    assert client.create_if_missing() is True
    assert client.create_if_missing() is False  # 409 TableAlreadyExists is fine
    client.delete_table()
    with pytest.raises(NotFoundError):
        client.delete_table()


# -- entities: typed round trip, insert/get/upsert/delete --------------------------------------------------


def test_typed_values_round_trip(table: TableClient) -> None:
    inserted = table.insert("disk1", "2024-02-29", TYPED)
    assert inserted.etag
    got = table.get("disk1", "2024-02-29")
    assert got.properties == TYPED
    assert {name: type(value) for name, value in got.properties.items()} == {
        name: type(value) for name, value in TYPED.items()
    }
    assert got.etag == inserted.etag
    assert got.timestamp is not None and got.timestamp.tzinfo is UTC


def test_insert_duplicate_is_409(table: TableClient) -> None:
    table.insert("p", "r", {"A": 1})
    with pytest.raises(ConflictError) as caught:
        table.insert("p", "r", {"A": 2})
    assert caught.value.code == "EntityAlreadyExists"
    assert table.get("p", "r").properties == {"A": 1}


def test_get_missing_is_404(table: TableClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        table.get("p", "nothing")
    assert caught.value.code == "ResourceNotFound"
    assert caught.value.error_message == "The specified resource does not exist."


def test_upsert_merge_and_replace(table: TableClient) -> None:
    table.upsert("p", "r", {"A": 1, "B": "two"})  # creates
    table.upsert("p", "r", {"B": "zwei", "C": True}, mode=UpsertMode.MERGE)
    assert table.get("p", "r").properties == {"A": 1, "B": "zwei", "C": True}
    table.upsert("p", "r", {"D": 4.5}, mode=UpsertMode.REPLACE)
    assert table.get("p", "r").properties == {"D": 4.5}
    table.upsert("p", "new", {"E": "e"}, mode=UpsertMode.REPLACE)  # replace also creates
    assert table.get("p", "new").properties == {"E": "e"}


def test_conditional_update_and_delete_with_etag(table: TableClient) -> None:
    first = table.insert("p", "r", {"Status": "running"}).etag
    assert first is not None
    second = table.upsert("p", "r", {"Status": "done"}, etag=first)
    assert second and second != first
    with pytest.raises(PreconditionFailedError) as caught:
        table.upsert("p", "r", {"Status": "lost update"}, etag=first)
    assert caught.value.status == 412
    assert caught.value.code == "UpdateConditionNotSatisfied"
    with pytest.raises(PreconditionFailedError):
        table.delete("p", "r", etag=first)
    table.delete("p", "r", etag=second)
    with pytest.raises(NotFoundError):
        table.get("p", "r")
    with pytest.raises(NotFoundError):
        table.upsert("p", "r", {"Status": "x"}, etag="*")  # conditional update needs the entity
    with pytest.raises(InvalidInputError, match="etag"):
        table.delete("p", "r", etag="")


def test_delete_unconditionally_with_star(table: TableClient) -> None:
    table.insert("p", "r", {})
    table.delete("p", "r", etag="*")
    with pytest.raises(NotFoundError):
        table.delete("p", "r", etag="*")


def test_keys_with_quotes_and_unicode(table: TableClient) -> None:
    table.insert("o'brien", "ünï cödé 'x'", {"A": 1})
    got = table.get("o'brien", "ünï cödé 'x'")
    assert (got.partition_key, got.row_key) == ("o'brien", "ünï cödé 'x'")
    assert got.etag is not None
    table.delete("o'brien", "ünï cödé 'x'", etag=got.etag)


# -- queries -------------------------------------------------------------------------------------------


def test_query_filter_select_top_and_continuation(table: TableClient) -> None:
    for index in range(10):
        table.insert("disk1" if index < 7 else "disk2", f"{index:03}", {"Index": index, "Note": f"n{index}"})
    disk1 = list(table.query(eq("PartitionKey", "disk1"), page_size=3))  # 3 pages via continuation
    assert [e.row_key for e in disk1] == [f"{i:03}" for i in range(7)]
    assert all(e.etag for e in disk1)
    ranged = list(table.query(and_(ge("Index", 2), lt("Index", 9))))
    assert [e.properties["Index"] for e in ranged] == list(range(2, 9))
    top = list(table.query(eq("PartitionKey", "disk1"), top=5, page_size=2))
    assert [e.row_key for e in top] == ["000", "001", "002", "003", "004"]
    selected = list(table.query(eq("PartitionKey", "disk2"), select=["Note"]))
    assert [(e.partition_key, e.row_key, e.properties) for e in selected] == [
        ("disk2", "007", {"Note": "n7"}),
        ("disk2", "008", {"Note": "n8"}),
        ("disk2", "009", {"Note": "n9"}),
    ]
    assert table.get("disk2", "007", select=["Index"]).properties == {"Index": 7}
    assert list(table.query(eq("PartitionKey", "nobody"))) == []
    assert len(list(table.query())) == 10


@pytest.mark.slow
def test_query_crosses_azurites_1000_row_pages(table: TableClient) -> None:
    # No $top: the service decides the page (Azurite: 1,000 rows), we follow the continuation.
    for index in range(1003):
        table.insert("p", f"{index:05}", {})
    rows = [e.row_key for e in table.query(eq("PartitionKey", "p"))]
    assert rows == [f"{index:05}" for index in range(1003)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"top": 0}, "top"),
        ({"page_size": 1001}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"select": "Note"}, "select"),
        ({"select": ["bad name"]}, "property name"),
    ],
)
def test_query_arguments_are_validated(table: TableClient, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        list(table.query(**kwargs))  # type: ignore[arg-type]
    assert caught.value.field == field


# -- validation before sending -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition_key", "row_key", "properties", "field"),
    [
        ("a/b", "r", {}, "partition_key"),
        ("p", "a#b", {}, "row_key"),
        ("p", "100%", {}, "row_key"),
        ("p", "tab\t", {}, "row_key"),
        ("p" * 1025, "r", {}, "partition_key"),
        ("p", "r", {"RowKey": "x"}, "properties"),
        ("p", "r", {"bad-name": 1}, "property name"),
        ("p", "r", {"Big": 2**63}, "property Big"),
        ("p", "r", {"Nan": float("nan")}, "property Nan"),
        ("p", "r", {"Naive": datetime(2024, 1, 1)}, "datetime"),
        ("p", "r", {"Nothing": None}, "property Nothing"),
    ],
)
def test_bad_entities_are_refused(
    table: TableClient, partition_key: str, row_key: str, properties: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        table.insert(partition_key, row_key, properties)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_key_error_points_to_encode_key() -> None:
    with pytest.raises(InvalidInputError, match="encode_key"):
        entity_to_json("/subscriptions/x", "r", {})


@pytest.mark.parametrize(
    ("endpoint", "name", "field"),
    [
        ("ftp://x", "abc", "table endpoint"),
        ("http://x?a=b", "abc", "table endpoint"),
        ("http://x", "ab", "table"),
        ("http://x", "1abc", "table"),
        ("http://x", "Tables", "table"),
        ("http://x", "a-b-c", "table"),
    ],
)
def test_bad_table_addresses(endpoint: str, name: str, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        TableClient(endpoint, name, SIGNER)
    assert caught.value.field == field


# -- pure parsing ----------------------------------------------------------------------------------------


def test_entity_from_json_reads_annotations() -> None:
    entity = entity_from_json(
        {
            "odata.etag": 'W/"1"',
            "PartitionKey": "p",
            "RowKey": "r",
            "Timestamp": "2024-01-02T03:04:05.1234567Z",
            "Int32": 5,
            "Int64@odata.type": "Edm.Int64",
            "Int64": "-12",
            "Double@odata.type": "Edm.Double",
            "Double": "NaN",
            "When@odata.type": "Edm.DateTime",
            "When": "2024-01-02T03:04:05Z",
        }
    )
    assert entity.etag == 'W/"1"'
    assert entity.timestamp == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert entity.properties["Int32"] == 5 and entity.properties["Int64"] == -12
    assert entity.properties["When"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert entity.properties["Double"] != entity.properties["Double"]  # NaN


@pytest.mark.parametrize(
    "item",
    [
        {"RowKey": "r"},
        {"PartitionKey": "p", "RowKey": "r", "A@odata.type": "Edm.Int64", "A": "x"},
        {"PartitionKey": "p", "RowKey": "r", "A@odata.type": "Edm.Unknown", "A": "x"},
        {"PartitionKey": "p", "RowKey": "r", "A": [1]},
        {"PartitionKey": "p", "RowKey": "r", "Timestamp": "yesterday"},
    ],
)
def test_entity_from_json_refuses_malformed(item: dict[str, object]) -> None:
    with pytest.raises(UnexpectedResponseError):
        entity_from_json(item)


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02T03:04:05",
        "2024-01-02 03:04:05Z",
        "2024-01-02T03:04:05.12345678Z",
        "2024-13-02T03:04:05Z",  # the shape, but no such month
        "2024-01-02T03:04:05Z\n",
    ],
)
def test_parse_edm_datetime_refuses(text: str) -> None:
    with pytest.raises(UnexpectedResponseError):
        parse_edm_datetime(text)


def test_parse_table_error_tolerates_odd_bodies() -> None:
    response = requests.Response()
    response.status_code = 500
    response.reason = "Internal Server Error"
    response._content = b"<html>not json</html>"
    assert parse_table_error(response) == (None, "Internal Server Error")


# -- failure paths: 403 and 429, Shared Key Lite ----------------------------------------------------------


def test_wrong_key_is_403(azurite: Azurite, table: TableClient) -> None:
    wrong = SharedKeyAuthorizer(DEV_ACCOUNT, new_account_key(), service=StorageService.TABLE)
    client = TableClient(azurite.table_endpoint(), table.table, wrong)
    with pytest.raises(AuthenticationError) as caught:
        client.insert("p", "r", {})
    assert caught.value.status == 403


def test_429_then_success(azurite: Azurite, table: TableClient) -> None:
    # Seam: the test bed's fault proxy answers 429 + Retry-After once, the Transport's sleep records it.
    waits: list[float] = []
    with FaultProxy(azurite.table_url, FaultPlan(retry_after=3)) as proxy:
        proxy.fail_next("throttle", 1)
        client = TableClient(f"{proxy.url}/{DEV_ACCOUNT}", table.table, SIGNER, Transport(sleep=waits.append))
        client.insert("p", "r", {"A": 1})  # a POST, retried because 429 means "not done"
        assert client.get("p", "r").properties == {"A": 1}
    assert waits == [3.0]
    assert [action for action, _, _ in proxy.faults] == ["throttle"] and proxy.stats["forwarded"] == 2


def test_shared_key_lite_client(azurite: Azurite, table: TableClient) -> None:
    lite = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE, lite=True)
    client = TableClient(azurite.table_endpoint(), table.table, lite)
    etag = client.upsert("p", "lite", {"A": 1})
    assert [e.row_key for e in client.query(eq("PartitionKey", "p"))] == ["lite"]
    client.delete("p", "lite", etag=etag)
