"""The spec as a test oracle: every response the emulator sends in a test is checked against DiskRP.json.

:class:`SpecOracle` turns the repository's copy of the spec (``testbed/emulator/spec``) into JSON Schema
(2020-12) and validates a response body against the schema the spec gives for that operation and status:
the resource for PUT/GET, ``DiskList``/``SnapshotList`` for lists, ``AccessUri`` for a finished grant,
``CloudError`` for every error, and ARM's ``OperationStatusResult`` (types.json) for the
``Azure-AsyncOperation`` status body. Stricter than the spec in one way, on purpose: an object may not
carry a property its schema does not name (``unevaluatedProperties: false``), so the emulator cannot
drift into shapes Azure never sends. Open ("modelAsString") enums stay open, as the spec means them.

:class:`ArmClient` is a ``requests`` session for the tests that validates every response it receives
and counts them, so a test module can assert that nothing went unchecked.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parent.parent / "testbed" / "emulator" / "spec"
EXAMPLES_DIR = Path(__file__).resolve().parent / "spec"
_URN = "urn:diskrp:"


def _load(name: str) -> dict[str, Any]:
    return json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))


def _allof_targets(documents: dict[str, dict[str, Any]]) -> set[str]:
    """Definitions other definitions extend with ``allOf`` (they must stay open for their extenders)."""
    targets = set()

    def walk(node: Any, current: str) -> None:
        if isinstance(node, dict):
            for part in node.get("allOf", []):
                if "$ref" in part:
                    targets.add(_absolute(part["$ref"], current))
            for value in node.values():
                walk(value, current)
        elif isinstance(node, list):
            for value in node:
                walk(value, current)

    for name, document in documents.items():
        walk(document, name)
    return targets


def _absolute(ref: str, current: str) -> str:
    location, _, pointer = ref.partition("#")
    file_name = Path(location).name if location else current
    return f"{_URN}{file_name}#{pointer}"


def _to_json_schema(node: Any, current: str, pointer: str, open_targets: set[str]) -> Any:
    """One Swagger 2.0 schema -> JSON Schema 2020-12: absolute refs, open enums, closed objects."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = _absolute(value, current)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {
                name: _to_json_schema(sub, current, f"{pointer}/properties/{name}", open_targets)
                for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _to_json_schema(value, current, f"{pointer}/{key}", open_targets)
        elif key == "allOf":
            out[key] = [_to_json_schema(sub, current, f"{pointer}/allOf", open_targets) for sub in value]
        else:
            out[key] = value
    if "enum" in out and out.get("x-ms-enum", {}).get("modelAsString", False):
        del out["enum"]  # an extensible enum: any string is valid
    is_object = out.get("type") == "object" or "properties" in out or "allOf" in out
    if is_object and "additionalProperties" not in out and f"{_URN}{current}#{pointer}" not in open_targets:
        out["unevaluatedProperties"] = False
    return out


def _convert_document(document: dict[str, Any], name: str, open_targets: set[str]) -> dict[str, Any]:
    converted = dict(document)
    converted["definitions"] = {
        key: _to_json_schema(schema, name, f"/definitions/{key}", open_targets)
        for key, schema in document.get("definitions", {}).items()
    }
    return converted


class SpecOracle:
    """Validates emulator responses against the spec; see the module docstring."""

    def __init__(self) -> None:
        raw = {name: _load(name) for name in ("DiskRP.json", "common.json", "types.json")}
        self.spec = raw["DiskRP.json"]
        self.types = raw["types.json"]
        open_targets = _allof_targets(raw)
        resources = []
        for name, document in raw.items():
            converted = _convert_document(document, name, open_targets)
            resources.append(
                (f"{_URN}{name}", Resource.from_contents(converted, default_specification=DRAFT202012))
            )
        self.registry: Registry = Registry().with_resources(resources)
        self._paths = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$", re.I), template)
            for template in self.spec["paths"]
        ]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The spec operationId and operation of a request (the status poll: ``DiskOperations_Get``)."""
        if re.search(r"/providers/Microsoft\.Compute/locations/[^/]+/DiskOperations/[^/]+$", path, re.I):
            return "DiskOperations_Get", {}
        for pattern, template in self._paths:
            if pattern.match(path):
                operation = self.spec["paths"][template].get(method.lower())
                if operation is not None:
                    return operation["operationId"], operation
        raise AssertionError(f"no spec operation for {method} {path}")

    def validator(self, ref: str) -> Draft202012Validator:
        """A validator for a schema given by reference (``DiskRP.json#/definitions/Snapshot``)."""
        return Draft202012Validator({"$ref": _URN + ref}, registry=self.registry)

    def status_body_validator(self, output_ref: str | None) -> Draft202012Validator:
        """ARM's operation-status body, with Compute's ``properties.output`` (the result) when given."""
        output = {"$ref": _URN + output_ref} if output_ref else {}
        # OperationStatusResult's own properties, one by one: extending the (closed) definition with allOf
        # would reject Compute's extra "properties" member.
        base = _URN + "types.json#/definitions/OperationStatusResult/properties/"
        names = self.types["definitions"]["OperationStatusResult"]["properties"]
        members: dict[str, Any] = {name: {"$ref": base + name} for name in names}
        members["status"] = {
            "allOf": [members["status"]],
            "enum": ["InProgress", "Succeeded", "Failed", "Canceled"],
        }
        members["properties"] = {
            "type": "object",
            "properties": {"output": output},
            "unevaluatedProperties": False,
        }
        schema = {
            "type": "object",
            "required": ["status"],
            "properties": members,
            "unevaluatedProperties": False,
        }
        return Draft202012Validator(schema, registry=self.registry)

    def check(self, method: str, url: str, status: int, body: Any, *, result_ref: str | None = None) -> None:
        """Raise AssertionError unless ``body`` is what the spec allows for this request and status.

        ``result_ref`` names the operation's final schema when ``url`` is an operation-status URL.
        """
        path = urlsplit(url).path
        operation_id, operation = self.operation(method, path)
        query = urlsplit(url).query
        if status >= 400:
            self._validate(self.validator("common.json#/definitions/CloudError"), body, operation_id, status)
            assert isinstance(body, dict) and body.get("error", {}).get("code"), f"error without code: {body}"
            return
        if operation_id == "DiskOperations_Get":
            if "monitor=true" in query:
                if status == 202 or body is None:
                    assert body is None, f"Location poll 202 with a body: {body}"
                elif result_ref is not None:
                    self._validate(self.validator(result_ref), body, operation_id, status)
                return
            self._validate(self.status_body_validator(result_ref), body, operation_id, status)
            return
        response = operation["responses"].get(str(status))
        assert response is not None, f"{operation_id} does not answer {status} in the spec"
        schema = response.get("schema")
        if schema is None:
            assert body is None, f"{operation_id} {status} must have no body, got {body}"
            return
        if body is None:
            raise AssertionError(f"{operation_id} {status} must have a body")
        self._validate(self.validator("DiskRP.json" + schema["$ref"]), body, operation_id, status)

    @staticmethod
    def _validate(validator: Draft202012Validator, body: Any, operation_id: str, status: int) -> None:
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:10]]
            raise AssertionError(f"{operation_id} {status} body breaks the spec:\n" + "\n".join(lines))

    def final_schema(self, operation_id: str) -> str | None:
        """The ``final-state-schema`` of a long-running operation (``DiskRP.json#/definitions/...``)."""
        for methods in self.spec["paths"].values():
            for operation in methods.values():
                if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                    options = operation.get("x-ms-long-running-operation-options", {})
                    ref = options.get("final-state-schema")
                    return "DiskRP.json" + ref if ref else None
        return None


class ArmClient:
    """A ``requests`` session for ARM calls in tests: bearer token, trusted certificate, every answer checked.

    ``verify`` is passed on each request because ``REQUESTS_CA_BUNDLE`` in the environment would override
    a session-level setting. Operation URLs are remembered with the operationId that started them, so a
    status poll is checked against that operation's final schema.
    """

    def __init__(self, endpoint: str, token: str | None, ca_cert: Path | None, oracle: SpecOracle) -> None:
        """A client for ``endpoint``; ``token=None`` sends no Authorization header."""
        self.endpoint = endpoint
        self.token = token
        self.ca_cert = ca_cert
        self.oracle = oracle
        self.session = requests.Session()
        self.checked = 0
        self._operation_of: dict[str, str] = {}

    def request(self, method: str, url: str, *, json_body: Any = None, headers: dict[str, str] | None = None,
                check: bool = True) -> requests.Response:  # fmt: skip
        """Send a request (``url`` absolute or a path) and validate the answer against the spec."""
        if url.startswith("/"):
            url = self.endpoint + url
        send = dict(headers or {})
        if self.token is not None and "Authorization" not in send:
            send["Authorization"] = f"Bearer {self.token}"
        response = self.session.request(
            method,
            url,
            json=json_body,
            headers=send,
            verify=str(self.ca_cert) if self.ca_cert else True,
            timeout=60,
        )
        body = response.json() if response.content else None
        path = urlsplit(url).path
        operation_id, _ = self.oracle.operation(method, path)
        if response.status_code == 202:
            for header in ("Location", "Azure-AsyncOperation"):
                if header in response.headers:
                    self._operation_of[urlsplit(response.headers[header]).path] = operation_id
        result_ref = None
        if operation_id == "DiskOperations_Get":
            started_by = self._operation_of.get(path)
            result_ref = self.oracle.final_schema(started_by) if started_by else None
        if check:
            self.oracle.check(method, url, response.status_code, body, result_ref=result_ref)
            self.checked += 1
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET and check."""
        return self.request("GET", url, **kwargs)

    def put(self, url: str, body: Any, **kwargs: Any) -> requests.Response:
        """PUT a JSON body and check."""
        return self.request("PUT", url, json_body=body, **kwargs)

    def post(self, url: str, body: Any = None, **kwargs: Any) -> requests.Response:
        """POST (a JSON body if given) and check."""
        return self.request("POST", url, json_body=body, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        """DELETE and check."""
        return self.request("DELETE", url, **kwargs)

    def wait(
        self, accepted: requests.Response, *, via: str = "Location", max_polls: int = 50
    ) -> requests.Response:
        """Poll a 202's ``Location`` (or ``Azure-AsyncOperation``) until it is done; the last answer."""
        assert accepted.status_code == 202, accepted.text
        url = accepted.headers[via]
        for _ in range(max_polls):
            response = self.get(url)
            if via == "Location" and response.status_code != 202:
                return response
            if via == "Azure-AsyncOperation" and response.json()["status"] != "InProgress":
                return response
        raise AssertionError(f"operation at {url} still running after {max_polls} polls")

    def pages(self, url: str) -> Iterator[dict[str, Any]]:
        """Every page of a list, following ``nextLink``."""
        next_url: str | None = url
        while next_url:
            page = self.get(next_url).json()
            yield page
            next_url = page.get("nextLink")

    def close(self) -> None:
        """Close the session."""
        self.session.close()


def example_files() -> list[Path]:
    """Every saved spec example, both folders."""
    return sorted(EXAMPLES_DIR.glob("examples-*/*/*.json"))


def load_example(path: Path) -> dict[str, Any]:
    """One example file, parsed (a deep copy each time, so a test may edit it)."""
    return copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
