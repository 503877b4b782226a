"""Transport's logging never shows a SAS signature, urllib3's request lines included."""

from __future__ import annotations

import logging

import pytest

import backup.azure.transport  # noqa: F401  (importing it is what attaches the filter)
from backup.redact import RedactingFilter


def test_urllib3_request_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    assert any(isinstance(f, RedactingFilter) for f in logger.filters)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        # The very format urllib3 uses for each request it sends.
        logger.debug(
            '%s://%s:%s "%s %s %s" %s %s',
            "https",
            "md-x.blob.storage.azure.net",
            443,
            "GET",
            "/c/abcd?sv=2022-11-02&sr=b&sp=r&sig=S3cr3tS1gnature%3D",
            "HTTP/1.1",
            200,
            0,
        )
    [record] = caplog.records
    assert "S3cr3tS1gnature" not in record.getMessage()
    assert "sig=REDACTED" in record.getMessage()
