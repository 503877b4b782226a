"""JSON bodies parsed with limits: whatever a caller sends, an answer naming the field, never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from backup.app.bounded_json import MAX_DEPTH, nesting, parse_json
from backup.errors import InvalidInputError


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"diskIds": ["a", "b"], "options": {"keepSnapshot": true}}', None),
        (b'{"a": "[[[[{{{{ not brackets"}', {"a": "[[[[{{{{ not brackets"}),
        (b'{"a": "quote \\" and [ inside"}', {"a": 'quote " and [ inside'}),
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, None),
        (b'{"n": 12345678901234567890, "f": -1.5e10}', {"n": 12345678901234567890, "f": -1.5e10}),
        ('{"name": "ünïcödé"}'.encode(), {"name": "ünïcödé"}),
    ],
)
def test_good_bodies_parse(body: bytes, value: Any) -> None:
    parsed = parse_json(body)
    if value is not None:
        assert parsed == value


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[" * 1000 + b"]" * 1000, "nests arrays and objects more than 32 levels deep"),  # was a 500
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "more than 32 levels"),
        (b"[" * 200_000, "more than 32 levels"),  # unbalanced, far past the recursion limit
        (b"1" * 4301, "holds a number of 4301 characters; at most 40"),  # was a 500 (int digits)
        (b'{"n": -' + b"9" * 5000 + b"}", "holds a number"),
        (b'{"f": 1e999}', "too large"),
        (b'{"f": 0.' + b"1" * 100 + b"}", "too large or too long"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b"[Infinity]", "Infinity is not a JSON value"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"{", "is not valid JSON"),
        (b'{"a": "unterminated', "is not valid JSON"),
    ],
)
def test_bad_bodies_name_the_field(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_json(body, "body")
    assert caught.value.field == "body"
    assert problem in caught.value.problem
    assert len(caught.value.message) < 200  # says what is wrong, never echoes the body


def test_nesting_ignores_strings_and_stays_linear() -> None:
    assert nesting('{"a": [1, {"b": "]]]}}}[[["}]}') == 3
    assert nesting("[[") == 2 and nesting("") == 0
    # Quotes and backslashes that never close a string: one pass, not one per quote (a hang here would
    # be stopped by the test timeout).
    assert nesting('"' + '\\"' * 200_000) == 0
    assert nesting('["\\\\", ["\\\\"]]') == 2  # an escaped backslash, then the quote closes the string
    with pytest.raises(InvalidInputError):
        parse_json(b'"' + b'\\"' * 100_000)
