"""backup/redact.py: secrets removed from text and from log records."""

from __future__ import annotations

import logging
import uuid

import pytest

from backup.redact import REDACTED, RedactingFilter, get_logger, redact, strip_query

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIn0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # SAS signatures, wherever they sit in a query, raw or percent-encoded once.
        ("https://a/c/b?sv=1&sig=abc%2Bdef%3D&se=x", "https://a/c/b?sv=1&sig=REDACTED&se=x"),
        ("https://a/c/b?sig=abc/def+==", "https://a/c/b?sig=REDACTED"),
        ("https://a/c/b?SIG=abc", "https://a/c/b?SIG=REDACTED"),
        # ... also inside a URL that was itself percent-encoded (a SAS URL as a query value):
        (
            "u=https%3A%2F%2Fa%2Fc%2Fb%3Fsv%3D1%26sig%3Dabc%252B",
            "u=https%3A%2F%2Fa%2Fc%2Fb%3Fsv%3D1%26sig%3DREDACTED",
        ),
        ("u=https%3A%2F%2Fa%2Fc%2Fb%3fsig%3dabc", "u=https%3A%2F%2Fa%2Fc%2Fb%3fsig%3dREDACTED"),
        ('{"accessSAS": "https://md/c/b?sv=1&sig=abc"}', '{"accessSAS": "https://md/c/b?sv=1&sig=REDACTED"}'),
        ("<Url>https://a/b?sig=abc</Url>", "<Url>https://a/b?sig=REDACTED</Url>"),
        ("two: ?sig=a and &sig=b", "two: ?sig=REDACTED and &sig=REDACTED"),
        # Account keys in connection strings.
        (
            "AccountName=a;AccountKey=abc+/==;EndpointSuffix=x",
            "AccountName=a;AccountKey=REDACTED;EndpointSuffix=x",
        ),
        ("accountkey=abc", "accountkey=REDACTED"),
        # Authorization header values.
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer REDACTED"),
        ("Authorization: SharedKey acct1:c2lnbmF0dXJl+/=", "Authorization: SharedKey acct1:REDACTED"),
        ("SharedKeyLite acct1:c2ln", "SharedKeyLite acct1:REDACTED"),
        # A JWT anywhere.
        (f"token={JWT} end", f"token={REDACTED} end"),
        # Text without secrets is left alone.
        ("signature=kept; design=kept; sign=kept", "signature=kept; design=kept; sign=kept"),
        ("https://a/c/b?sv=2021-08-06&sr=b&sp=r", "https://a/c/b?sv=2021-08-06&sr=b&sp=r"),
        ("", ""),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_is_idempotent() -> None:
    text = f"https://a/b?sig=x AccountKey=y Bearer {JWT}"
    assert redact(redact(text)) == redact(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a/c/b?sv=1&sig=x", "https://a/c/b"),
        ("https://a/c/b", "https://a/c/b"),
        ("https://a/c/b?", "https://a/c/b"),
        ("http://127.0.0.1:1/acct/c/b?snapshot=2024&sig=x?y", "http://127.0.0.1:1/acct/c/b"),
    ],
)
def test_strip_query(url: str, expected: str) -> None:
    assert strip_query(url) == expected


def test_filter_redacts_the_formatted_message(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_redact." + uuid.uuid4().hex)
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.info("copy from %s took %d s", "https://a/c/b?sv=1&sig=SECRET", 3)
        logger.info("nothing secret in %s", "https://a/c/b")
    secret, plain = caplog.records
    assert secret.getMessage() == "copy from https://a/c/b?sv=1&sig=REDACTED took 3 s"
    assert secret.args is None  # the secret-bearing argument is gone from the record too
    assert plain.getMessage() == "nothing secret in https://a/c/b"
    assert plain.args == ("https://a/c/b",)  # untouched records keep their arguments


def test_get_logger_attaches_one_filter_once() -> None:
    name = "test_redact." + uuid.uuid4().hex
    first = get_logger(name)
    again = get_logger(name)
    assert first is again
    assert sum(isinstance(f, RedactingFilter) for f in first.filters) == 1


def test_filter_is_per_logger_not_inherited() -> None:
    # Why every module must take its logger from get_logger: a child's records skip the parent's filters.
    parent = get_logger("test_redact." + uuid.uuid4().hex)
    child = logging.getLogger(parent.name + ".child")
    assert not any(isinstance(f, RedactingFilter) for f in child.filters)
