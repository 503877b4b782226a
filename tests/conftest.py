"""Shared fixtures: real servers for the tests that talk HTTP.

One Azurite per test session (started on kernel-chosen ports with a temporary data folder, stopped by
its node PID at the end). Tests isolate themselves by unique container/table names, never by restarts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from backup.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite with the well-known dev account."""
    with Azurite() as server:
        yield server


@pytest.fixture
def unique_name() -> str:
    """A short lowercase name, unique per test, valid for containers and tables alike."""
    return "t" + uuid.uuid4().hex[:12]
