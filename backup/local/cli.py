"""``diskbackup`` (also ``python -m backup``): run backups and read their results from a shell.

    diskbackup run [--disk ID ...| --tag NAME=VALUE | --resource-group RG] [--keep-snapshot] [--full] [--json]
    diskbackup status RUN_ID [--json]
    diskbackup list [--top N] [--json]
    diskbackup restore-points DISK_ID [--include-failed] [--top N] [--json]

``run`` runs the Function App's own orchestrators through the local Durable host against the configured
endpoints — Azure, or the proving ground of ``make dev`` — with progress bars on a terminal. Settings
come from the environment, or from ``--env-file`` (``KEY=VALUE`` lines such as ``.dev/env``). Run state is
kept in ``--state-dir`` (default ``.diskbackup``), where ``status`` finds it. ``list`` and
``restore-points`` read the catalog. ``--json`` prints one JSON document for scripts.

Exit status: 0 success, 1 a run that did not fully succeed, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from backup.azure.resource_id import parse_disk_id
from backup.clients import clients_for
from backup.errors import ConfigurationError, DiskBackupError, InvalidInputError
from backup.local.progress import ProgressView, summary_lines
from backup.local.runner import open_host, read_progress, run_backup
from backup.redact import redact
from backup.settings import Settings
from backup.workflow.models import RunSummary, Selection
from backup.workflow.startup import (
    disk_ids_selection,
    resource_group_selection,
    run_input,
    tag_selection,
)

DEFAULT_STATE_DIR = Path(".diskbackup")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines and shell single quotes allowed)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigurationError(str(path), f"line {number} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("'\\''", "'")
        values[key.strip()] = value
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diskbackup", description="Backups of Azure managed disks.")
    parser.add_argument("--env-file", type=Path, help="read settings from KEY=VALUE lines (e.g. .dev/env)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="local run state")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="back up disks now, through the real orchestrators")
    chosen = run.add_mutually_exclusive_group()
    chosen.add_argument("--disk", action="append", metavar="ID", help="a disk resource ID (repeatable)")
    chosen.add_argument("--tag", metavar="NAME=VALUE", help="disks carrying this tag")
    chosen.add_argument("--resource-group", metavar="RG", help="every disk of this resource group")
    run.add_argument("--keep-snapshot", action="store_true", help="keep the snapshots after the copy")
    run.add_argument("--full", action="store_true", help="copy every disk whole tonight (not incrementally)")
    run.add_argument("--json", action="store_true", help="print the run's result as JSON")

    status = commands.add_parser("status", help="a run's state (from --state-dir)")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true")

    listing = commands.add_parser("list", help="recent runs, from the catalog")
    listing.add_argument("--top", type=int, default=20)
    listing.add_argument("--json", action="store_true")

    points = commands.add_parser("restore-points", help="a disk's restore points, newest first")
    points.add_argument("disk_id")
    points.add_argument("--include-failed", action="store_true")
    points.add_argument("--top", type=int, default=100)
    points.add_argument("--json", action="store_true")
    return parser


def main(
    argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, out: TextIO | None = None
) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        environment = dict(os.environ if env is None else env)
        if args.env_file is not None:
            environment.update(read_env_file(args.env_file))
        settings = Settings.from_env(environment)
        if args.command == "run":
            return _run(args, settings, out)
        if args.command == "status":
            return _status(args, settings, out)
        if args.command == "list":
            return _list(args, settings, out)
        return _restore_points(args, settings, out)
    except (ConfigurationError, InvalidInputError) as exc:
        print(f"diskbackup: {exc}", file=sys.stderr)
        return 2
    except DiskBackupError as exc:
        print(f"diskbackup: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ndiskbackup: interrupted; the run resumes from {args.state_dir} next time", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"diskbackup: {redact(str(exc))}", file=sys.stderr)
        return 1


def _selection(args: argparse.Namespace) -> Selection | None:
    """The selection the flags ask for (``None``: the configured one)."""
    if args.disk:
        return disk_ids_selection(args.disk, "--disk")
    if args.tag:
        name, sep, value = args.tag.partition("=")
        if not sep:
            raise InvalidInputError("--tag", f"{args.tag!r} is not NAME=VALUE")
        return tag_selection(name, value, "--tag")
    if args.resource_group:
        return resource_group_selection(args.resource_group, "--resource-group")
    return None


def _run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    run = run_input(
        settings,
        "cli",
        _selection(args),
        keep_snapshot=True if args.keep_snapshot else None,
        force_full=args.full,
    )
    view = ProgressView(sys.stderr if args.json else out, tty=(sys.stderr if args.json else out).isatty())
    progress = run_backup(settings, run, state_dir=args.state_dir, on_progress=view)
    return _report(progress.output, progress.runtime_status, args.json, out)


def _report(output: Any, runtime_status: str, as_json: bool, out: TextIO) -> int:
    if as_json:
        json.dump({"runtimeStatus": runtime_status, "result": output}, out, indent=2, default=str)
        out.write("\n")
    else:
        for line in summary_lines(output):
            out.write(line + "\n")
    summary = RunSummary.read(output)
    succeeded = summary is not None and summary.status == "Succeeded"
    return 0 if runtime_status == "Completed" and succeeded else 1


def _status(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    host = open_host(settings, args.state_dir)  # not started: reads the stored state, resumes nothing
    progress = read_progress(host, args.run_id)
    if progress is None:
        raise InvalidInputError("run_id", f"no run {args.run_id!r} in {args.state_dir}")
    if args.json:
        json.dump(
            {
                "runId": progress.run_id,
                "runtimeStatus": progress.runtime_status,
                "phase": progress.phase,
                "disks": [vars(d) for d in progress.disks],
                "result": progress.output,
            },
            out,
            indent=2,
            default=str,
        )
        out.write("\n")
        return 0
    ProgressView(out, tty=False)(progress)
    if progress.done:
        for line in summary_lines(progress.output):
            out.write(line + "\n")
    return 0


def _list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    if not 1 <= args.top <= 1000:
        raise InvalidInputError("--top", "must be 1 to 1000")
    listing = clients_for(settings).catalog.list_runs(args.top)
    runs = [run.to_json() for run in listing.items]
    if args.json:
        json.dump({"runs": runs, "unreadableRows": listing.problems}, out, indent=2)
        out.write("\n")
        return 0
    if not runs:
        out.write("no runs recorded yet\n")
    for run in runs:
        out.write(
            f"{run['startedAt']}  {run['runId']:<40} {run['status']:<18} "
            f"{run['succeeded']}/{run['diskCount']} disks  ({run['trigger']})\n"
        )
    for problem in listing.problems:
        out.write(f"unreadable catalog row: {problem}\n")
    return 0


def _restore_points(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    if not 1 <= args.top <= 1000:
        raise InvalidInputError("--top", "must be 1 to 1000")
    disk = parse_disk_id(args.disk_id, "disk_id")
    listing = clients_for(settings).catalog.list_restore_points(
        str(disk), include_failed=args.include_failed, top=args.top
    )
    points = [point.to_json() for point in listing.items]
    if args.json:
        json.dump(
            {"diskId": str(disk), "restorePoints": points, "unreadableRows": listing.problems}, out, indent=2
        )
        out.write("\n")
        return 0
    if not points:
        out.write(f"no restore points for {disk}\n")
    for point in points:
        where = point["blobUrl"] + (f"?snapshot={point['blobSnapshot']}" if point["blobSnapshot"] else "")
        moved = f"{(point['bytesMoved'] or 0) / (1 << 20):.1f} MiB moved"
        line = (
            f"{point['finishedAt']}  {point['status']:<9} {point['kind']:<11} {moved:>16}  "
            f"{point['runId']:<40} {where}"
        )
        if point["fullCopyReason"]:
            line += f"\n    full copy: {point['fullCopyReason']}"
        if point["reason"]:
            line += f"\n    reason: {point['reason']}"
        out.write(line + "\n")
    for problem in listing.problems:
        out.write(f"unreadable catalog row: {problem}\n")
    return 0
