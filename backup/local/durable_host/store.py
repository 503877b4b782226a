"""Instance records on disk, so a run survives a host restart.

One JSON file per instance (``<percent-encoded instance id>.json``) holds everything the host knows
about it: status, history, the undelivered inbox and the replay bookkeeping. Files are replaced
atomically (write a temporary file, then rename), so a crash leaves the old record or the new one,
never half of one. A file that is not a record (hand-edited, truncated by a full disk) is named and
skipped, never fatal to the others. What is not stored is the work in flight: a new host re-runs the
activities that had not reported back, as the real host does (activities run at least once).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backup.local.durable_host.instance import EncodedEvents
from backup.redact import get_logger

__all__ = ["RECORD_VERSION", "SOURCE_KEY", "InstanceStore"]

log = get_logger(__name__)

RECORD_VERSION = 1
#: Key :meth:`InstanceStore.load_all` adds to each record: the file it came from (for messages).
SOURCE_KEY = "_source"


class InstanceStore:
    """A folder of instance records."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        #: Files of the folder that :meth:`load_all` skipped, each ``"<path>: <why>; skipped"``.
        self.problems: list[str] = []

    def _path(self, instance_id: str) -> Path:
        return self.directory / f"{quote(instance_id, safe='')}.json"

    def save(self, record: dict[str, Any]) -> None:
        """Write (or replace) the record of ``record["instance_id"]``."""
        self.write(record["instance_id"], self.encode(record))

    @staticmethod
    def encode(record: dict[str, Any]) -> str:
        """The file content of ``record`` (so a caller can encode under its lock and write after).

        A ``history`` of :class:`~backup.local.durable_host.instance.EncodedEvents` is spliced in as it
        is: the same JSON as encoding the events here, without encoding them again.
        """
        history = record.get("history")
        if not isinstance(history, EncodedEvents):
            return json.dumps({"version": RECORD_VERSION, **record}, separators=(",", ":"))
        rest = {key: value for key, value in record.items() if key != "history"}
        head = json.dumps({"version": RECORD_VERSION, **rest}, separators=(",", ":"))
        return head[:-1] + ',"history":[' + ",".join(history) + "]}"

    def write(self, instance_id: str, data: str) -> None:
        """Write (or replace) the record of ``instance_id`` with ``data`` from :meth:`encode`."""
        path = self._path(instance_id)
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
        """Every stored record. A file that is not a record of ours is skipped, not fatal: it is named
        in :attr:`problems` (and logged), and every good record still loads."""
        records = []
        self.problems = []
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith(".tmp-"):
                continue
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self.skip(path, f"not a readable instance record ({type(exc).__name__})")
                continue
            if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
                self.skip(path, f"not an instance record of version {RECORD_VERSION}")
                continue
            record.pop("version")
            record[SOURCE_KEY] = str(path)
            records.append(record)
        log.debug("loaded %d instance records from %s", len(records), self.directory)
        return records

    def skip(self, path: str | os.PathLike[str], problem: str) -> None:
        """Note a file of the folder that is not used, and why."""
        message = f"{path}: {problem}; skipped"
        self.problems.append(message)
        log.warning("%s", message)
