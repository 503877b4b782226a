"""Sending one HTTP request to Azure: a pooled session, retries, and errors mapped to our tree.

Both the ARM client and the storage clients send through :class:`Transport`. It signs each attempt
afresh (a Shared Key signature covers ``x-ms-date``; a token may have been refreshed), retries what is
worth retrying (:mod:`backup.azure.retry`), and turns an error answer into the most specific
:class:`~backup.errors.AzureHttpError`, or a failed connection into :class:`~backup.errors.TransportError`.
Nothing that leaves this module carries a secret: URLs are logged without their query, and error text
is redacted.
"""

from __future__ import annotations

import ipaddress
import os
import random
import time
from collections.abc import Callable, Container, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from backup.azure.retry import RetryPolicy, parse_retry_after, should_retry_status
from backup.errors import AzureHttpError, TransportError, UnexpectedResponseError, http_error_class
from backup.redact import get_logger, redact, strip_query

log = get_logger(__name__)
# urllib3 logs each request line at DEBUG, query string included: a SAS's signature with it. Its logger
# gets the redacting filter too.
get_logger("urllib3.connectionpool")

USER_AGENT = "diskbackup/0.1 (+https://github.com/diskbackup)"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Authorizer(Protocol):
    """Adds authorization to a request about to be sent (called again for every attempt)."""

    def __call__(self, method: str, url: str, headers: MutableMapping[str, str]) -> None: ...


#: Reads an error answer's Azure error code and message (each service words them differently).
ErrorParser = Callable[[requests.Response], tuple[str | None, str | None]]


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (the emulators): the only place plain http is allowed,
    since a key or token sent over http elsewhere could be read on the way."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_error_generic(response: requests.Response) -> tuple[str | None, str | None]:
    """Error code from ``x-ms-error-code``, message from the reason phrase."""
    return response.headers.get("x-ms-error-code"), response.reason or None


def error_from_response(
    response: requests.Response, parse: ErrorParser = parse_error_generic
) -> AzureHttpError:
    """The :class:`AzureHttpError` subclass that an error response stands for."""
    try:
        code, message = parse(response)
    except Exception:  # a malformed error body must not hide the error itself
        code, message = response.headers.get("x-ms-error-code"), response.reason
    request = response.request
    return http_error_class(response.status_code)(
        status=response.status_code,
        code=code,
        error_message=message,
        request_id=response.headers.get("x-ms-request-id"),
        method=request.method if request is not None else None,
        url=request.url if request is not None else None,
        body_excerpt=_text_excerpt(response),
        retry_after=parse_retry_after(response.headers),
    )


def unexpected_response(response: requests.Response, field: str, problem: str) -> UnexpectedResponseError:
    """An :class:`UnexpectedResponseError` about ``response``, naming its request and request id."""
    return UnexpectedResponseError(field, problem).for_request(**_request_of(response))


@contextmanager
def reading(response: requests.Response) -> Iterator[None]:
    """While reading ``response``, an :class:`UnexpectedResponseError` raised gets its request named."""
    try:
        yield
    except UnexpectedResponseError as exc:
        raise exc.for_request(**_request_of(response)) from None


def _request_of(response: requests.Response) -> dict[str, str | None]:
    request = response.request
    return {
        "method": request.method if request is not None else None,
        "url": request.url if request is not None else None,
        "request_id": response.headers.get("x-ms-request-id"),
    }


def connection_failure(exc: BaseException) -> str:
    """What went wrong with a connection, in a few words for a person (not the HTTP library's text)."""
    text = str(exc).lower()
    if isinstance(exc, requests.exceptions.SSLError):
        return "its TLS certificate did not verify"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connecting timed out"
    if isinstance(exc, requests.Timeout):
        return "it did not answer in time"
    if "refused" in text:
        return "connection refused"
    if "reset" in text or "aborted" in text or "remotedisconnected" in text or "without response" in text:
        return "the connection was closed before an answer arrived"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "its host name did not resolve"
    return "the connection failed"


def _text_excerpt(response: requests.Response) -> str | None:
    if response.raw is not None and not getattr(response, "_content_consumed", True):
        return None  # streamed and unread: leave it
    try:
        text = response.text
    except Exception:
        return None
    return text[:500] if text else None


#: Endpoints whose environment settings a Transport remembers (then it forgets them all and starts over).
_MAX_ENDPOINTS = 256


@dataclass
class Transport:
    """A pooled :class:`requests.Session` with retries; see the module docstring.

    ``sleep`` and ``rand`` are seams for tests of the retry schedule; production uses the real ones.

    What requests takes from the environment (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, and
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when ``verify`` is True) is read once per endpoint
    rather than by requests on every request: it scans every environment variable twice per request,
    which was half the CPU of a request (0.4 ms) with a worker's environment. ``~/.netrc`` is never
    used (its credentials would replace our ``Authorization`` header).
    """

    session: requests.Session = field(default_factory=requests.Session)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (10.0, 120.0)
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    verify: bool | str = True
    _endpoints: dict[str, tuple[dict[str, str], bool | str]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.session.trust_env = False  # _environment_for reads it instead, once per endpoint

    def _environment_for(self, url: str) -> tuple[dict[str, str], bool | str]:
        """The proxies and the ``verify`` to use for ``url``'s endpoint, as requests would find them."""
        parts = urlsplit(url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
        found = self._endpoints.get(endpoint)
        if found is None:
            if len(self._endpoints) >= _MAX_ENDPOINTS:
                # A grant's SAS can name a host of its own: a long-lived worker meets many.
                self._endpoints.clear()
            verify = self.verify
            if verify is True:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            found = self._endpoints[endpoint] = (requests.utils.get_environ_proxies(endpoint), verify)
        return found

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, stream: bool
    ) -> requests.Response:
        """One attempt, as ``Session.request`` would send it, for 30 % less CPU.

        ``Session.request`` builds a cookie jar from scratch, merges every setting of the session into
        the request's and copies them on every call (80 of the 260 microseconds of CPU a request to a
        loopback server costs). The request here is prepared once with what that merge gives for our
        calls: the session's headers under ours, its cookies, its proxies under the endpoint's, and sent
        by the session itself (its adapters, hooks and cookie persistence; no redirects).
        """
        proxies, verify = self._environment_for(url)
        session = self.session
        merged = CaseInsensitiveDict(session.headers)
        merged.update(headers)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method,
            url=url,
            headers={name: value for name, value in merged.items() if value is not None},
            data=body,
            cookies=session.cookies,
            hooks=session.hooks,
        )
        return session.send(
            prepared,
            timeout=self.timeout,
            stream=stream,
            allow_redirects=False,
            proxies={**session.proxies, **proxies} if session.proxies else proxies,
            verify=verify,
            cert=session.cert,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: MutableMapping[str, str] | None = None,
        body: bytes | None = None,
        authorize: Authorizer | None = None,
        idempotent: bool | None = None,
        ok: Container[int] | None = None,
        parse_error: ErrorParser = parse_error_generic,
        stream: bool = False,
    ) -> requests.Response:
        """Send ``method url`` until it succeeds, fails for good, or the retry budget is spent.

        ``idempotent`` defaults to True for GET/HEAD/OPTIONS; callers pass True for a PUT/DELETE/POST
        that is safe to repeat. ``ok`` lists statuses that count as success (default: below 400).
        Raises :class:`AzureHttpError` (a subclass by status) or :class:`TransportError`.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in _SAFE_METHODS
        attempt = 0
        while True:
            attempt += 1
            send_headers: dict[str, str] = {"User-Agent": USER_AGENT}
            send_headers.update(headers or {})
            if body:
                send_headers["Content-Length"] = str(len(body))
            elif method in ("PUT", "POST", "MERGE", "PATCH"):
                send_headers["Content-Length"] = "0"
            if authorize is not None:
                authorize(method, url, send_headers)
            try:
                response = self._send(method, url, send_headers, body, stream)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = TransportError(
                    f"{method} {strip_query(url)}: {type(exc).__name__}: {redact(str(exc))}",
                    url=url,
                    cause=connection_failure(exc),
                )
                # A certificate that does not verify will not verify on the next try either.
                retryable = idempotent and not isinstance(exc, requests.exceptions.SSLError)
                delay = self.policy.delay(attempt, None, self.rand) if retryable else None
                if delay is None:
                    raise failure from None
                log.warning("%s; retry %d in %.1f s", failure.message, attempt, delay)
                self.sleep(delay)
                continue
            success = (response.status_code in ok) if ok is not None else response.status_code < 400
            log.debug(
                "%s %s -> %d (x-ms-request-id %s)",
                method,
                strip_query(url),
                response.status_code,
                response.headers.get("x-ms-request-id"),
            )
            if success:
                return response
            error = error_from_response(response, parse_error)
            response.close()
            delay = None
            if should_retry_status(response.status_code, idempotent=idempotent):
                delay = self.policy.delay(attempt, error.retry_after, self.rand)
            if delay is None:
                raise error
            log.warning("%s; retry %d in %.1f s", error.message, attempt, delay)
            self.sleep(delay)
