"""Azure Resource Manager over HTTP: JSON calls, paging, and one step of a long-running operation.

:class:`ArmClient` is the thin I/O shell around :mod:`backup.azure.lro`. Every request goes through
:class:`~backup.azure.transport.Transport` (pooled session, retries, error mapping) with a bearer token
from a :class:`~backup.azure.credentials.TokenProvider`, fetched afresh for every attempt so a refreshed
token is used.
ARM error answers (``CloudError``: ``{"error": {"code", "message"}}``) become the most specific
:class:`~backup.errors.AzureHttpError`, carrying status, code, message and ``x-ms-request-id``.

The bearer token goes only to the endpoint's own origin: a ``nextLink``, ``Location`` or
``Azure-AsyncOperation`` URL on another host is refused, and plain ``http://`` is allowed only to a
loopback address (the emulator).

Long-running operations take one call each: :meth:`ArmClient.begin` sends the request and returns an
:class:`~backup.azure.lro.LroStatus`; :meth:`ArmClient.poll` makes one GET; :meth:`ArmClient.fetch_result`
fetches a succeeded operation's result. Waiting between polls is the orchestrator's job.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Container, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from backup.azure.credentials import TokenProvider
from backup.azure.lro import (
    DEFAULT_RETRY_AFTER,
    LroStatus,
    PollKind,
    ResultSource,
    classify_initial,
    classify_poll,
    extract_result,
)
from backup.azure.transport import Transport, is_loopback_url, reading, unexpected_response
from backup.errors import InvalidInputError
from backup.redact import get_logger, strip_query

__all__ = ["ArmClient", "parse_arm_error"]

log = get_logger(__name__)

#: Answers from a Location URL that are the operation's verdict rather than a failed request: success,
#: and client errors except those about the poll request itself (auth, timeout, throttling).
_LOCATION_VERDICTS = frozenset(range(200, 300)) | (frozenset(range(400, 500)) - {401, 403, 408, 429})


def parse_arm_error(response: requests.Response) -> tuple[str | None, str | None]:
    """Code and message of an ARM error answer: ``CloudError`` JSON, else ``x-ms-error-code``/reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) or isinstance(message, str):
            return (
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else None,
            )
    return response.headers.get("x-ms-error-code"), response.reason or None


class ArmClient:
    """JSON calls to ARM at ``endpoint`` (e.g. ``https://management.azure.com``); see the module docstring.

    ``default_retry_after`` is the poll interval an :class:`LroStatus` gets when ARM sends no
    ``Retry-After``.
    """

    def __init__(
        self,
        endpoint: str,
        token_provider: TokenProvider,
        transport: Transport | None = None,
        *,
        default_retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.endpoint = _validate_endpoint(endpoint)
        self._origin = _origin(self.endpoint)
        self._tokens = token_provider
        self.transport = transport if transport is not None else Transport()
        if default_retry_after < 0:
            raise InvalidInputError("default_retry_after", "must not be negative")
        self.default_retry_after = default_retry_after

    def __repr__(self) -> str:
        return f"ArmClient({self.endpoint!r})"

    # -- URLs ----------------------------------------------------------------------------------------

    def url(self, path: str, api_version: str, query: Mapping[str, str] | None = None) -> str:
        """The absolute URL of ARM ``path`` with ``api-version`` and any further ``query``."""
        if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
            raise InvalidInputError("path", f"must be an absolute ARM path without a query, got {path!r}")
        if not api_version:
            raise InvalidInputError("api_version", "must not be empty")
        params = {"api-version": api_version, **(query or {})}
        return f"{self.endpoint}{quote(path, safe='/()')}?{urlencode(params)}"

    # -- plain JSON calls ----------------------------------------------------------------------------

    def get(self, path: str, *, api_version: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``path``; the JSON object it answers."""
        response = self._send("GET", self.url(path, api_version, query))
        body = self._json(response)
        if not isinstance(body, dict):
            raise unexpected_response(response, "response body", "expected a JSON object")
        return body

    def put(
        self, path: str, body: Mapping[str, Any], *, api_version: str, idempotent: bool = True
    ) -> dict[str, Any] | None:
        """PUT ``body`` at ``path`` (safe to retry by default: a PUT names its resource)."""
        return self._json(self._send("PUT", self.url(path, api_version), body, idempotent=idempotent))

    def patch(
        self, path: str, body: Mapping[str, Any], *, api_version: str, idempotent: bool = True
    ) -> dict[str, Any] | None:
        """PATCH ``path`` with ``body`` (safe to retry by default: the same patch gives the same result)."""
        return self._json(self._send("PATCH", self.url(path, api_version), body, idempotent=idempotent))

    def post(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        api_version: str,
        idempotent: bool = False,
    ) -> dict[str, Any] | None:
        """POST to ``path``. Not retried after a server error unless the caller says it is safe."""
        return self._json(self._send("POST", self.url(path, api_version), body, idempotent=idempotent))

    def delete(self, path: str, *, api_version: str, idempotent: bool = True) -> dict[str, Any] | None:
        """DELETE ``path`` (safe to retry by default: deleting twice leaves the same state)."""
        return self._json(self._send("DELETE", self.url(path, api_version), idempotent=idempotent))

    def list_pages(
        self, path: str, *, api_version: str, query: Mapping[str, str] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Each page's ``value`` list, following ``nextLink`` until there is none.

        A ``nextLink`` must stay on the endpoint's origin (the bearer token goes with it) and must not
        repeat (a server bug would otherwise loop forever); either is an
        :class:`~backup.errors.UnexpectedResponseError`.
        """
        url: str | None = self.url(path, api_version, query)
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            response = self._send("GET", url)
            body = self._json(response)
            if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
                raise unexpected_response(response, "response body", "expected {'value': [...]}")
            page = [item for item in body.get("value", []) if isinstance(item, dict)]
            next_link = body.get("nextLink")
            if next_link is None or next_link == "":
                url = None
            else:
                url = self._same_origin(next_link, "nextLink", response)
                if url in seen:
                    raise unexpected_response(
                        response, "nextLink", f"repeats an earlier page: {strip_query(url)}"
                    )
            yield page

    # -- long-running operations -----------------------------------------------------------------------

    def begin(
        self,
        method: str,
        path: str,
        *,
        api_version: str,
        body: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> LroStatus:
        """Start a long-running operation with one request; its :class:`LroStatus`.

        ``idempotent`` defaults to True for PUT, PATCH and DELETE (they name their resource) and False
        for POST. ``headers`` are sent too (ARM passes headers it does not reserve on to the resource
        provider, e.g. ``If-None-Match``). The answer's body is read only to classify it and is then
        dropped: it may be a secret, and the status never carries it.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method != "POST"
        url = self.url(path, api_version)
        response = self._send(method, url, body, idempotent=idempotent, headers=headers)
        with reading(response):
            status = classify_initial(
                method,
                url,
                response.status_code,
                response.headers,
                self._json(response),
                default_retry_after=self.default_retry_after,
            )
        self._check_status_urls(status, response)
        self._log_step(status)
        return status

    def poll(self, status: LroStatus) -> LroStatus:
        """One GET of the operation's poll URL; the next :class:`LroStatus`."""
        if status.done:
            raise InvalidInputError("lro status", f"the operation already ended {status.state.value}")
        if status.poll_url is None:
            raise InvalidInputError("lro status", "has nothing to poll")
        url = self._same_origin(status.poll_url, "poll_url")
        ok: Container[int] | None = _LOCATION_VERDICTS if status.poll_kind is PollKind.LOCATION else None
        response = self._send("GET", url, ok=ok)
        with reading(response):
            following = classify_poll(
                status,
                response.status_code,
                response.headers,
                self._json(response, lenient=True),
                default_retry_after=self.default_retry_after,
            )
        self._check_status_urls(following, response)
        self._log_step(following)
        return following

    def fetch_result(self, status: LroStatus) -> dict[str, Any] | None:
        """The result of a succeeded operation, fetched with one GET (``None`` if it has none).

        The result may be a secret (a grant's SAS): return it only to the code that uses it.
        """
        status.raise_for_failure()
        if not status.succeeded:
            raise InvalidInputError("lro status", "the operation has not finished")
        if status.result_source is ResultSource.NONE:
            return None
        if status.result_source is ResultSource.INITIAL or status.result_url is None:
            raise InvalidInputError(
                "lro status",
                "the operation finished in its first answer, and its result is not kept (it may be a "
                "secret); it cannot be fetched again",
            )
        response = self._send("GET", self._same_origin(status.result_url, "result_url"))
        with reading(response):
            return extract_result(status, self._json(response))

    # -- internals -----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
        ok: Container[int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        sent = {"Accept": "application/json", "x-ms-client-request-id": str(uuid.uuid4()), **(headers or {})}
        data = None
        if body is not None:
            sent["Content-Type"] = "application/json"
            data = json.dumps(body).encode("utf-8")
        return self.transport.request(
            method,
            url,
            headers=sent,
            body=data,
            authorize=self._authorize,
            idempotent=idempotent,
            ok=ok,
            parse_error=parse_arm_error,
        )

    def _authorize(self, method: str, url: str, headers: MutableMapping[str, str]) -> None:
        # Checked again here, for every attempt: the token must never leave the endpoint's origin.
        self._same_origin(url, "request url")
        headers["Authorization"] = f"Bearer {self._tokens.get_token()}"

    @staticmethod
    def _json(response: requests.Response, lenient: bool = False) -> Any:
        """The parsed body, ``None`` when empty; ``lenient`` also maps a non-JSON body to ``None``."""
        content = response.content
        if not content or not content.strip():
            return None
        try:
            return json.loads(content)
        except ValueError:
            if lenient:
                return None
            raise unexpected_response(response, "response body", "is not JSON") from None

    def _same_origin(self, url: str, field: str, response: requests.Response | None = None) -> str:
        """``url`` if it is on the endpoint's origin; else the caller's error, or Azure's when a
        ``response`` handed it over."""
        if not isinstance(url, str) or _origin(url) != self._origin:
            shown = strip_query(url) if isinstance(url, str) else repr(url)
            problem = f"{shown} is not on the ARM endpoint {self.endpoint}"
            if response is not None:
                raise unexpected_response(response, field, problem)
            raise InvalidInputError(field, problem)
        return url

    def _check_status_urls(self, status: LroStatus, response: requests.Response) -> None:
        for field, url in (
            ("poll_url", status.poll_url),
            ("location_url", status.location_url),
            ("result_url", status.result_url),
        ):
            if url is not None:
                self._same_origin(url, field, response)

    @staticmethod
    def _log_step(status: LroStatus) -> None:
        if status.done:
            log.info(
                "%s %s: %s%s",
                status.method,
                strip_query(status.resource_url),
                status.state.value,
                f" ({status.error_code})" if status.error_code else "",
            )
        else:
            log.debug(
                "%s %s: in progress (%s), next poll in %.1f s",
                status.method,
                strip_query(status.resource_url),
                status.poll_kind.value if status.poll_kind else "?",
                status.retry_after,
            )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _validate_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str):
        raise InvalidInputError("ARM endpoint", "must be a URL string")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInputError("ARM endpoint", f"must be an absolute https URL, got {endpoint!r}")
    if parts.query or parts.fragment:
        raise InvalidInputError("ARM endpoint", "must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback_url(endpoint):
        # A bearer token over plain HTTP could be read on the way; only the local emulator may use it.
        raise InvalidInputError(
            "ARM endpoint", f"http:// is allowed only for loopback hosts, got {endpoint!r}"
        )
    return endpoint.rstrip("/")
