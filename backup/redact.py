"""Removing secrets from text before it is logged, raised, stored or shown.

A SAS token's power is its ``sig=`` parameter; an account key's is the key; a bearer token's is the whole
token. :func:`redact` replaces each of them wherever it appears in a string: URLs, headers, JSON, error
bodies. It is applied where text leaves the code that holds the secret (error construction, log
formatting), so a secret never reaches logs, exceptions, orchestration state or the catalog.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

REDACTED = "REDACTED"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # SAS signature in a query string, raw or percent-encoded once (sig%3D in an encoded URL, where the
    # separator before it is %26 or %3F: no word boundary there, hence the two look-behinds).
    (re.compile(r"(?i)((?:\b|(?<=%26)|(?<=%3F))sig(?:=|%3D))[^&\s\"'<>]*"), r"\1" + REDACTED),
    # Account keys in connection strings.
    (re.compile(r"(?i)(AccountKey=)[^;\s\"'<>]*"), r"\1" + REDACTED),
    # Authorization header values: Bearer, SharedKey, SharedKeyLite.
    (re.compile(r"(?i)(\bBearer\s+)[A-Za-z0-9\-._~+/=]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\bSharedKey(?:Lite)?\s+[A-Za-z0-9]+:)[A-Za-z0-9+/=]+"), r"\1" + REDACTED),
    # A JSON Web Token anywhere (three base64url parts, the first an encoded JSON object).
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
)


#: Literal secrets that have no recognisable shape (a webhook URL's path), registered by the code that
#: holds them (:func:`add_secret`). Replaced longest first, so one secret containing another goes whole.
_LITERALS: tuple[str, ...] = ()


def add_secret(secret: str) -> None:
    """Treat ``secret`` (at least 8 characters) as a secret wherever it appears from now on."""
    global _LITERALS
    if len(secret) >= 8 and secret not in _LITERALS:
        _LITERALS = tuple(sorted((*_LITERALS, secret), key=len, reverse=True))


def add_url_secret(url: str) -> None:
    """Treat a URL's path and query as secrets (a webhook's URL is its password; only its host is not)."""
    parts = urlsplit(url)
    for secret in (parts.path, parts.query):
        add_secret(secret)


def redact(text: str) -> str:
    """Return ``text`` with SAS signatures, account keys, tokens and registered secrets replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in _LITERALS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def strip_query(url: str) -> str:
    """The URL without its query string: what the catalog and status documents store of a blob."""
    return url.split("?", 1)[0]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's fully formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """A module's logger, with :class:`RedactingFilter` attached.

    Logger filters apply only to records logged on that very logger (not to children), so every module
    of the package takes its logger from here: even a careless ``%s`` of a URL cannot put a signature
    into a log line.
    """
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
