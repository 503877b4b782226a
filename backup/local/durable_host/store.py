"""Instance records on disk, so a run survives a host restart.

One JSON file per instance (``<percent-encoded instance id>.json``) holds everything the host knows
about it: status, history, the undelivered inbox and the replay bookkeeping. Files are replaced
atomically (write a temporary file, then rename), so a crash leaves the old record or the new one,
never half of one. What is not stored is the work in flight: a new host re-runs the activities that had
not reported back, as the real host does (activities run at least once).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backup.errors import InvalidInputError
from backup.redact import get_logger

__all__ = ["RECORD_VERSION", "InstanceStore"]

log = get_logger(__name__)

RECORD_VERSION = 1


class InstanceStore:
    """A folder of instance records."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, instance_id: str) -> Path:
        return self.directory / f"{quote(instance_id, safe='')}.json"

    def save(self, record: dict[str, Any]) -> None:
        """Write (or replace) the record of ``record["instance_id"]``."""
        path = self._path(record["instance_id"])
        data = json.dumps({"version": RECORD_VERSION, **record}, separators=(",", ":"))
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def delete(self, instance_id: str) -> None:
        """Forget an instance (no error if it was never stored)."""
        self._path(instance_id).unlink(missing_ok=True)

    def load_all(self) -> list[dict[str, Any]]:
        """Every stored record; a file that is not a record of ours is an error naming the file."""
        records = []
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith(".tmp-"):
                continue
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise InvalidInputError(str(path), f"not a readable instance record: {exc}") from exc
            if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
                raise InvalidInputError(str(path), f"not an instance record of version {RECORD_VERSION}")
            record.pop("version")
            records.append(record)
        log.debug("loaded %d instance records from %s", len(records), self.directory)
        return records
