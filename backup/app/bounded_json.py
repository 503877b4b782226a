"""Parsing a JSON body from outside with limits, so that no body can make the parser itself fail.

Python's ``json`` recurses once per nesting level (2 KB of ``[`` reach the interpreter's recursion
limit: a ``RecursionError``, not a ``JSONDecodeError``), turns a 5,000-digit integer into a
``ValueError`` from ``int()`` (the interpreter's limit on digits), and accepts ``NaN`` and
``Infinity``, which are not JSON. :func:`parse_json` checks the nesting before parsing, bounds the
digits of every number and refuses the non-standard constants, each as an ``InvalidInputError`` naming
the field. Nothing a caller sent is echoed back.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from backup.errors import InvalidInputError

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "parse_json"]

#: The deepest nesting of arrays and objects accepted (our bodies need 3).
MAX_DEPTH = 32
#: The longest number accepted, in characters (a 64-bit integer has at most 20).
MAX_NUMBER_CHARS = 40

# A string (its closing quote optional, so that a match never fails and the scan stays linear however
# many quotes and backslashes a body holds), or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"?|[\[\]{}]', re.DOTALL)


def parse_json(body: bytes, field: str = "body", *, max_depth: int = MAX_DEPTH) -> Any:
    """``body`` (UTF-8 JSON) as Python values; any problem is an ``InvalidInputError`` naming ``field``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(field, "is not UTF-8 text") from None
    depth = nesting(text, stop_above=max_depth)
    if depth > max_depth:
        raise InvalidInputError(field, f"nests arrays and objects more than {max_depth} levels deep")
    try:
        return json.loads(
            text, parse_int=_integer(field), parse_float=_decimal(field), parse_constant=_constant(field)
        )
    except json.JSONDecodeError as exc:
        # The decoder's message says where (line, column), never what: safe to show.
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidInputError(field, f"is not valid JSON ({exc.msg} at {where})") from None
    except RecursionError:  # cannot happen below max_depth; kept so that it is never a 500
        raise InvalidInputError(field, f"nests more than {max_depth} levels deep") from None


def nesting(text: str, stop_above: int | None = None) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (brackets inside strings do not count).

    Stops counting once past ``stop_above``. Text that is not JSON gets a number too; the parser then
    says what is wrong with it.
    """
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        found = match.group()
        if found[0] == '"':
            continue
        if found in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    break
        else:
            depth -= 1
    return deepest


def _integer(field: str) -> Any:
    def parse(text: str) -> int:
        if len(text) > MAX_NUMBER_CHARS:
            problem = f"holds a number of {len(text)} characters; at most {MAX_NUMBER_CHARS}"
            raise InvalidInputError(field, problem)
        return int(text)

    return parse


def _decimal(field: str) -> Any:
    def parse(text: str) -> float:
        value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
        if not math.isfinite(value):
            raise InvalidInputError(field, "holds a number too large or too long")
        return value

    return parse


def _constant(field: str) -> Any:
    def parse(text: str) -> float:
        raise InvalidInputError(field, f"is not valid JSON ({text} is not a JSON value)")

    return parse
