"""DiskRP.json as data: its definitions, reference resolution, and the emulator's request-body check.

The emulator validates every request body against the spec's own definitions (``Disk``, ``Snapshot``,
``GrantAccessData``) with the small checker below, because the product's runtime dependencies are fixed
and ``jsonschema`` is not one of them. It checks what ARM's deserialiser and the Compute RP check before
any work starts: JSON types, ``int32``/``int64`` ranges, enum values, ``minimum``, and required
properties. Read-only properties in a request are ignored, as ARM ignores them; properties the spec does
not know are ignored too. The first problem found becomes a 400 ``InvalidParameter`` whose ``target``
names the property (``properties.creationData.createOption``).

The tests validate the emulator's *responses* against the same files with ``jsonschema``
(:func:`spec_documents` gives them the raw documents).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parent / "spec"
#: The one api-version the emulator serves (the spec's ``info.version``).
API_VERSION = "2026-03-02"

_FILES = {"DiskRP.json": "DiskRP.json", "common.json": "common.json", "types.json": "types.json"}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class SchemaProblem(ValueError):
    """A request body breaks the spec; ``target`` is the dotted path of the offending property."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        self.message = message


@functools.cache
def spec_documents() -> dict[str, dict[str, Any]]:
    """The three spec files, parsed, by file name (``DiskRP.json``, ``common.json``, ``types.json``)."""
    return {name: json.loads((SPEC_DIR / name).read_text(encoding="utf-8")) for name in _FILES}


def _resolve(ref: str, current_file: str) -> tuple[dict[str, Any], str]:
    """The schema a ``$ref`` points at and the file it lives in (references are mapped by file name)."""
    location, _, pointer = ref.partition("#")
    file_name = Path(location).name if location else current_file
    if file_name not in _FILES:
        raise KeyError(f"unknown spec file in reference {ref!r}")
    node: Any = spec_documents()[file_name]
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, file_name


def definition(name: str) -> dict[str, Any]:
    """A definition of DiskRP.json (e.g. ``Snapshot``), as written in the spec."""
    return copy.deepcopy(spec_documents()["DiskRP.json"]["definitions"][name])


def validate_body(definition_name: str, body: Any) -> None:
    """Check a request ``body`` against a DiskRP.json definition; raise :class:`SchemaProblem` if it fails."""
    schema = spec_documents()["DiskRP.json"]["definitions"][definition_name]
    _check(schema, "DiskRP.json", body, "")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _collect(schema: Mapping[str, Any], file_name: str) -> tuple[dict[str, Any], list[str]]:
    """Flatten ``allOf``: the merged properties (each with its file) and the required names."""
    properties: dict[str, Any] = {}
    required: list[str] = list(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        properties[name] = (sub, file_name)
    for part in schema.get("allOf", []):
        sub, sub_file = _resolve(part["$ref"], file_name) if "$ref" in part else (part, file_name)
        more_props, more_required = _collect(sub, sub_file)
        for name, value in more_props.items():
            properties.setdefault(name, value)
        required.extend(more_required)
    return properties, required


def _check(schema: Mapping[str, Any], file_name: str, value: Any, path: str) -> None:
    if schema.get("readOnly"):
        return  # ARM ignores read-only properties in requests
    if "$ref" in schema:
        referenced, referenced_file = _resolve(schema["$ref"], file_name)
        _check(referenced, referenced_file, value, path)
        return
    kind = schema.get("type")
    if kind is None and ("properties" in schema or "allOf" in schema):
        kind = "object"
    where = path or "body"
    if kind == "object":
        if not isinstance(value, dict):
            raise SchemaProblem(where, f"The value of parameter {where} is invalid: expected a JSON object.")
        properties, required = _collect(schema, file_name)
        for name in required:
            sub, _ = properties.get(name, ({}, file_name))
            if value.get(name) is None and not sub.get("readOnly"):
                missing = _join(path, name)
                raise SchemaProblem(missing, f"Required parameter '{missing}' is missing (null).")
        for name, item in value.items():
            if name in properties and item is not None:
                sub, sub_file = properties[name]
                _check(sub, sub_file, item, _join(path, name))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in properties:
                    _check(extra, file_name, item, _join(path, name))
        return
    if kind == "array":
        if not isinstance(value, list):
            raise SchemaProblem(where, f"The value of parameter {where} is invalid: expected a JSON array.")
        items = schema.get("items", {})
        for index, item in enumerate(value):
            _check(items, file_name, item, f"{where}[{index}]")
        return
    if kind == "string":
        if not isinstance(value, str):
            raise SchemaProblem(where, f"The value of parameter {where} is invalid: expected a string.")
        allowed = schema.get("enum")
        # ARM matches enum values case-insensitively.
        if allowed is not None and value.lower() not in {a.lower() for a in allowed}:
            raise SchemaProblem(
                where,
                f"The value '{value}' of parameter {where} is invalid; allowed values: {', '.join(allowed)}.",
            )
        return
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaProblem(where, f"The value of parameter {where} is invalid: expected an integer.")
        low, high = _INT_RANGES.get(schema.get("format", "int64"), _INT_RANGES["int64"])
        if not low <= value <= high:
            raise SchemaProblem(where, f"The value {value} of parameter {where} is out of range.")
        _check_minimum(schema, value, where)
        return
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaProblem(where, f"The value of parameter {where} is invalid: expected a number.")
        _check_minimum(schema, value, where)
        return
    if kind == "boolean" and not isinstance(value, bool):
        raise SchemaProblem(where, f"The value of parameter {where} is invalid: expected true or false.")


def _check_minimum(schema: Mapping[str, Any], value: float, where: str) -> None:
    minimum = schema.get("minimum")
    if minimum is not None and value < minimum:
        raise SchemaProblem(where, f"The value {value} of parameter {where} must be at least {minimum}.")
