"""Run reports on the local machine: ``diskbackup report``, the report ``run`` leaves, and ``make demo``'s."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup.catalog import Catalog
from backup.errors import AzureHttpError, TransportError, UnexpectedResponseError
from backup.redact import get_logger
from backup.report import HISTORY_POINTS, HistoryPoint, gather_history, render_run_report
from backup.workflow.models import RunSummary

log = get_logger(__name__)

#: Where ``run`` leaves a run's report, below the state folder.
REPORTS_DIR = "reports"


def default_report_path(state_dir: Path, run_id: str) -> Path:
    """``<state-dir>/reports/<run id>.html``."""
    return Path(state_dir) / REPORTS_DIR / f"{run_id}.html"


def write_run_report(catalog: Catalog, summary: RunSummary, path: Path) -> tuple[Path, bool]:
    """Write the run's HTML report to ``path`` (folders made as needed).

    Answers the path and whether the disks' history could be read from the catalog: a catalog out of
    reach costs the charts, never the report.
    """

    def points(disk_id: str) -> list[dict[str, Any]]:
        listing = catalog.list_restore_points(disk_id, include_failed=True, top=HISTORY_POINTS)
        return [point.to_json() for point in listing.items]

    history: dict[str, list[HistoryPoint]] = {}
    complete = True
    try:
        history = gather_history(summary, points)
    except (TransportError, AzureHttpError, UnexpectedResponseError) as exc:
        log.warning("report of %s without history: %s", summary.run_id, exc)
        complete = False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run_report(summary, history, generated_at=datetime.now(UTC)), encoding="utf-8")
    return path, complete
