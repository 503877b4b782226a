"""Shared fixtures: real servers for the tests that talk HTTP.

One Azurite per test session (started on kernel-chosen ports with a temporary data folder, stopped by
its node PID at the end). Tests isolate themselves by unique container/table names, never by restarts.
One proving ground (Azurite with the backup and managed-disk accounts, the data plane's front, and the
compute emulator) per session too; tests isolate themselves there by unique disk and snapshot names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from testbed.azurite import Azurite

if TYPE_CHECKING:
    from testbed.proving_ground import ProvingGround


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite with the well-known dev account."""
    with Azurite() as server:
        yield server


@pytest.fixture
def unique_name() -> str:
    """A short lowercase name, unique per test, valid for containers and tables alike."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def proving_ground() -> Iterator[ProvingGround]:
    """A running proving ground: Azurite (both accounts) + data plane front + compute emulator over HTTPS."""
    # Imported here so that test modules which never ask for it do not import the emulator at all.
    from testbed.proving_ground import ProvingGround

    with ProvingGround() as ground:
        yield ground
