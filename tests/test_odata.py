"""OData literals, filters and key encoding (backup/azure/odata.py).

The claim to prove: no value can change a filter's meaning. Two ways: a tokenizer written here from the
OData v3 literal grammar shows each literal is exactly one token that decodes back to the value; and real
Azurite, asked with a filter built from an arbitrary text, returns exactly the row stored with that text
and none of the decoys built to be matched by an injection.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backup.azure.odata import and_, decode_key, encode_key, eq, ge, gt, le, literal, lt, ne, not_, or_
from backup.azure.storage_auth import SharedKeyAuthorizer, StorageService
from backup.azure.table import TableClient
from backup.errors import InvalidInputError
from testbed.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, Azurite

# -- a small tokenizer of OData filter text ---------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<typed>(?:datetime|guid|X|binary)'[^']*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?L?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<paren>[()])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(text: str) -> list[tuple[str, str]]:
    """Tokens of a filter; raises on anything that is not a token (e.g. an unterminated string)."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"no token at {position}: {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            value = match.group()
            if kind == "string":
                value = value[1:-1].replace("''", "'")
            tokens.append((kind, value))
        position = match.end()
    return tokens


# -- literal ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("''", "''''''"),
        ("", "''"),
        (True, "true"),
        (False, "false"),
        (0, "0L"),
        (-(2**63), "-9223372036854775808L"),
        (2**63 - 1, "9223372036854775807L"),
        (2.5, "2.5"),
        (2.0, "2.0"),
        (1e300, "1" + "0" * 300 + ".0"),
        (1e-7, "0.0000001"),
        (-0.0, "-0.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "datetime'2024-01-02T03:04:05.000006Z'"),
        (
            datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "datetime'2024-01-02T03:04:05.000000Z'",
        ),
        (uuid.UUID(int=1), "guid'00000000-0000-0000-0000-000000000001'"),
    ],
)
def test_literal(value: object, expected: str) -> None:
    assert literal(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [2**63, -(2**63) - 1, float("nan"), float("inf"), datetime(2024, 1, 1), None, b"x", [1], 1j]
)
def test_literal_refuses(value: object) -> None:
    with pytest.raises(InvalidInputError):
        literal(value)  # type: ignore[arg-type]


def test_builders() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    built = and_(eq("PartitionKey", "disk'1"), or_(gt("Size", 5), le("Taken", when)), not_(ne("Done", True)))
    assert built.text == (
        "(PartitionKey eq 'disk''1') and ((Size gt 5L) or (Taken le datetime'2024-01-01T00:00:00.000000Z'))"
        " and (not (Done ne true))"
    )
    assert ge("A", 1.5).text == "A ge 1.5"
    assert lt("A", "b").text == "A lt 'b'"
    assert and_(eq("A", 1)) == eq("A", 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: eq("bad name", 1),
        lambda: eq("1abc", 1),
        lambda: eq("a" * 256, 1),
        lambda: eq("A eq 1 or B", 1),
        lambda: and_(),
        lambda: and_("A eq 1"),  # type: ignore[arg-type]  # raw text is not a Filter
        lambda: not_("A eq 1"),  # type: ignore[arg-type]
    ],
)
def test_builders_refuse_bad_names_and_raw_text(make: object) -> None:
    with pytest.raises(InvalidInputError):
        make()  # type: ignore[operator]


_VALUES = st.one_of(
    st.text(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(UTC)),
    st.uuids(),
)


@given(_VALUES)
@example("x' or PartitionKey ne '")
@example("') or (1 eq 1")
def test_every_literal_is_one_token(value: object) -> None:
    tokens = tokenize(eq("Name", value).text)  # type: ignore[arg-type]
    assert tokens[:2] == [("word", "Name"), ("word", "eq")]
    assert len(tokens) == 3
    kind, text = tokens[2]
    if isinstance(value, str):
        assert (kind, text) == ("string", value)
    elif isinstance(value, bool):
        assert (kind, text) == ("word", "true" if value else "false")
    elif isinstance(value, int):
        assert (kind, text) == ("number", f"{value}L")
    elif isinstance(value, float):
        assert kind == "number" and float(text) == value
    else:
        assert kind == "typed"


@given(st.text(), st.text())
def test_and_of_two_strings_keeps_its_shape(left: str, right: str) -> None:
    tokens = tokenize(and_(eq("A", left), eq("B", right)).text)
    assert tokens == [
        ("paren", "("), ("word", "A"), ("word", "eq"), ("string", left), ("paren", ")"),
        ("word", "and"),
        ("paren", "("), ("word", "B"), ("word", "eq"), ("string", right), ("paren", ")"),
    ]  # fmt: skip


def test_tokenizer_catches_an_unescaped_quote() -> None:
    # The tokenizer is strict enough to see an injection: pasting the text instead of literal() fails.
    with pytest.raises(ValueError, match="no token"):
        tokenize("Name eq 'x' or 'a")
    assert len(tokenize("Name eq 'x' or Name ne 'y'")) == 7


# -- key encoding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [
        (
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1",
            "~2Fsubscriptions~2Fs1~2FresourceGroups~2Frg~2Fproviders~2FMicrosoft.Compute~2Fdisks~2Fd1",
        ),
        ("a\\b#c?d%e~f", "a~5Cb~23c~3Fd~25e~7Ef"),
        ("tab\there\x7f\x9f", "tab~09here~7F~9F"),
        ("plain-key_1.2 é 'q'", "plain-key_1.2 é 'q'"),
        ("", ""),
    ],
)
def test_encode_key_table(plain: str, encoded: str) -> None:
    assert encode_key(plain) == encoded
    assert decode_key(encoded) == plain


@given(st.text())
def test_encode_key_round_trips_and_leaves_nothing_forbidden(value: str) -> None:
    encoded = encode_key(value)
    assert decode_key(encoded) == value
    assert not re.search(r"[/\\#?%\x00-\x1f\x7f-\x9f]", encoded)


@pytest.mark.parametrize("bad", ["~", "~2", "~zz", "~2f", "a~41b"])  # lower-case hex, or an unneeded escape
def test_decode_key_refuses_malformed_escapes(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="encoded key"):
        decode_key(bad)


# -- live: Azurite returns exactly the row with the value ---------------------------------------------------


@pytest.fixture(scope="module")
def table(azurite: Azurite) -> Iterator[TableClient]:
    signer = SharedKeyAuthorizer(DEV_ACCOUNT, DEV_ACCOUNT_KEY, service=StorageService.TABLE)
    client = TableClient(azurite.table_endpoint(), "odata" + uuid.uuid4().hex[:10], signer)
    client.create_if_missing()
    yield client
    client.delete_table()


# Any text that can be sent as UTF-8 (no lone surrogates); Azurite stores and matches control characters
# and non-characters too.
_STORABLE = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_STORABLE)
@example(value="x' or PartitionKey ne '")
@example(value="') or (true")
@example(value="''")
@example(value="")
def test_filter_matches_exactly_the_row_with_that_value(table: TableClient, value: str) -> None:
    partition = uuid.uuid4().hex
    decoys = {value + "'", "'" + value, value + "x", value + "' or Value ne '", "x' or PartitionKey ne '"} - {
        value
    }
    table.insert(partition, "target", {"Value": value})
    for index, decoy in enumerate(sorted(decoys)):
        table.insert(partition, f"decoy{index}", {"Value": decoy})
    found = list(table.query(and_(eq("PartitionKey", partition), eq("Value", value))))
    assert [(e.row_key, e.properties["Value"]) for e in found] == [("target", value)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(st.characters(exclude_categories=["Cs"]), max_size=60))
@example(key="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s1")
@example(key="it's 100% #1?")
def test_encoded_keys_work_as_real_keys(table: TableClient, key: str) -> None:
    partition = encode_key(key)
    inserted = table.insert(partition, encode_key(key[::-1]), {"Original": "yes"})
    got = table.get(partition, encode_key(key[::-1]))
    assert decode_key(got.partition_key) == key
    assert decode_key(got.row_key) == key[::-1]
    assert [decode_key(e.partition_key) for e in table.query(eq("PartitionKey", partition))] == [key]
    assert inserted.etag is not None
    table.delete(partition, encode_key(key[::-1]), etag=inserted.etag)


@pytest.mark.parametrize(
    "value",
    [
        1e300,
        1e-7,
        0.1 + 0.2,
        2.0,
        -(2**63),
        2**53 + 1,
        0,
        True,
        datetime(2024, 2, 29, 12, 0, 0, 123456, tzinfo=UTC),
        uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    ],
    ids=repr,
)
def test_typed_literals_match_their_rows(table: TableClient, value: object) -> None:
    # One partition per value: Azurite answers 500 when a filter compares a property holding another
    # type in some row (Azure just does not match), so types are not mixed here.
    partition = uuid.uuid4().hex
    table.insert(partition, "target", {"V": value})  # type: ignore[dict-item]
    found = list(table.query(and_(eq("PartitionKey", partition), eq("V", value))))  # type: ignore[arg-type]
    assert [(e.row_key, e.properties["V"]) for e in found] == [("target", value)]


def test_filter_type_is_required(table: TableClient) -> None:
    with pytest.raises(InvalidInputError, match=r"backup\.azure\.odata"):
        list(table.query("PartitionKey eq 'x'"))  # type: ignore[arg-type]
