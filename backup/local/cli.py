"""``diskbackup`` (also ``python -m backup``): run backups and read their results from a shell.

    diskbackup run [--disk ID ...| --tag NAME=VALUE | --resource-group RG] [--keep-snapshot] [--full] [--json]
    diskbackup resume [RUN_ID] [--json]
    diskbackup status RUN_ID [--top N] [--continuation-token TOKEN] [--json]
    diskbackup list [--top N] [--json]
    diskbackup restore-points DISK_ID [--include-failed] [--include-expired] [--top N] [--json]
    diskbackup restore DISK_ID (--run RUN_ID | --at TIME) --to-resource-group RG --to-disk NAME [...]
    diskbackup verify DISK_ID --run RUN_ID [--to-resource-group RG] [--json]
    diskbackup prune [--disk ID ...] [--dry-run] [--json]

``run`` runs the Function App's own orchestrators through the local Durable host against the configured
endpoints — Azure, or the proving ground of ``make dev`` — with progress bars on a terminal. Settings
come from the environment, or from ``--env-file`` (``KEY=VALUE`` lines such as ``.dev/env``). Run state is
kept in ``--state-dir`` (default ``.diskbackup``): ``status`` reads a run from it, and ``resume`` drives
a run whose process was interrupted (Ctrl-C, killed, a laptop closed) to its end — without RUN_ID, every
unfinished run of the folder, one after another. ``list`` and ``restore-points`` read the catalog.
``--json`` prints one JSON document for scripts. ``restore``, ``verify`` and ``prune`` are
:mod:`backup.local.restore_commands`.

Failures print one line on stderr naming what failed (never a traceback; the details go to
``<state-dir>/diskbackup.log``), and with ``--json`` a document ``{"error": {"code", "message"}}`` on
stdout. Exit status: 0 success, 1 a run that did not fully succeed or a failure of Azure or the network,
2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from backup.azure.resource_id import parse_disk_id
from backup.clients import clients_for
from backup.errors import ConfigurationError, DiskBackupError, InvalidInputError
from backup.failures import INTERNAL_MESSAGE, Failure, FailureCode, describe, one_line
from backup.local import restore_commands
from backup.local.durable_host import LocalHost
from backup.local.progress import ProgressView, counts_line, summary_lines
from backup.local.reports import default_report_path, write_run_report
from backup.local.runner import (
    RunProgress,
    StateInUseError,
    StateLock,
    follow,
    open_host,
    read_disk_page,
    read_progress,
    unfinished_runs,
)
from backup.redact import get_logger
from backup.settings import Settings
from backup.workflow.models import RUN_ORCHESTRATOR, RunSummary, Selection
from backup.workflow.startup import (
    disk_ids_selection,
    new_run_id,
    resource_group_selection,
    run_input,
    tag_selection,
)

DEFAULT_STATE_DIR = Path(".diskbackup")
LOG_FILE = "diskbackup.log"

log = get_logger(__name__)


class Fail(Exception):
    """A failure to report (``{"code", "message"}``) and the exit status to end with.

    Codes are those of :class:`backup.failures.FailureCode`, and two of the command line's own:
    ``Interrupted`` (Ctrl-C) and ``StateInUse`` (another process drives the state folder).
    """

    def __init__(self, code: str, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = one_line(message)
        self.exit_status = exit_status

    @classmethod
    def of(cls, failure: Failure, exit_status: int) -> Fail:
        """A failure of the product's kinds."""
        return cls(failure.code.value, failure.message, exit_status)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines and shell single quotes allowed).

    A file that is missing, a folder or unreadable is an ``InvalidInputError`` naming ``--env-file``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError("--env-file", f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError("--env-file", f"{path} is a folder, not a file of KEY=VALUE lines") from None
    except UnicodeDecodeError:
        raise InvalidInputError("--env-file", f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInputError("--env-file", f"{path} cannot be read ({exc.strerror})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
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

    resume = commands.add_parser("resume", help="drive an interrupted run (or all unfinished) to its end")
    resume.add_argument("run_id", nargs="?", help="the run to finish (default: every unfinished run)")
    resume.add_argument("--json", action="store_true", help="print the result(s) as JSON")

    status = commands.add_parser("status", help="a run's state (from --state-dir)")
    status.add_argument("run_id")
    status.add_argument("--top", type=int, default=100, help="disks per page (1-1000)")
    status.add_argument("--continuation-token", metavar="TOKEN", help="the next page, from the last one")
    status.add_argument("--json", action="store_true")

    listing = commands.add_parser("list", help="recent runs, from the catalog")
    listing.add_argument("--top", type=int, default=20)
    listing.add_argument("--json", action="store_true")

    report = commands.add_parser("report", help="a run's HTML report (from --state-dir, else the catalog)")
    report.add_argument("run_id")
    report.add_argument(
        "-o", "--output", type=Path, help="the file to write (default <state-dir>/reports/<run id>.html)"
    )
    report.add_argument("--json", action="store_true", help="print where it went as JSON")

    points = commands.add_parser("restore-points", help="a disk's restore points, newest first")
    points.add_argument("disk_id")
    points.add_argument("--include-failed", action="store_true")
    points.add_argument("--include-expired", action="store_true", help="and the points retention expired")
    points.add_argument("--top", type=int, default=100)
    points.add_argument("--json", action="store_true")

    restore_commands.add_commands(commands)
    return parser


@dataclass
class Context:
    """What every command gets: its arguments, settings, where to write, and how to name itself."""

    args: argparse.Namespace
    settings: Settings
    out: TextIO
    err: TextIO
    following: str | None = None  # the run being followed, for the Ctrl-C message

    def command(self, *words: str) -> str:
        """This command line's global options followed by ``words`` (to tell a person what to type)."""
        parts = ["diskbackup"]
        if self.args.env_file is not None:
            parts += ["--env-file", str(self.args.env_file)]
        if self.args.state_dir != DEFAULT_STATE_DIR:
            parts += ["--state-dir", str(self.args.state_dir)]
        return " ".join([*parts, *words])

    def warn(self, text: str) -> None:
        """One line on stderr."""
        print(f"diskbackup: {text}", file=self.err)


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    logging_state = _start_logging(args)
    context: Context | None = None
    try:
        try:
            environment = dict(os.environ if env is None else env)
            if args.env_file is not None:
                environment.update(read_env_file(args.env_file))
            settings = Settings.from_env(environment)
            context = Context(args, settings, out, err)
            return COMMANDS[args.command](context)
        except KeyboardInterrupt:
            print(file=err)
            message = "interrupted"
            if context is not None and context.following is not None:
                finish = context.command("resume", context.following)
                message += f"; the run goes on from where it stopped with: {finish}"
            raise Fail("Interrupted", message, 1) from None
        except StateInUseError as exc:
            raise Fail("StateInUse", exc.message, 1) from None
        except (ConfigurationError, InvalidInputError) as exc:
            raise Fail.of(describe(exc), 2) from None
        except DiskBackupError as exc:
            log.warning("%s", exc, exc_info=True)
            raise Fail.of(describe(exc), 1) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise Fail(FailureCode.INTERNAL.value, f"{exc.strerror or exc}{where}", 1) from None
        except Exception:
            log.exception("diskbackup failed")
            raise Fail(FailureCode.INTERNAL.value, f"{INTERNAL_MESSAGE} ({_log_path(args)})", 1) from None
    except Fail as failed:
        print(f"diskbackup: {failed.message}", file=err)
        if as_json:
            _dump({"error": {"code": failed.code, "message": failed.message}}, out)
        return failed.exit_status
    finally:
        _stop_logging(*logging_state)


def _log_path(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) / LOG_FILE


def _start_logging(args: argparse.Namespace) -> tuple[logging.Handler, int]:
    """Log lines (warnings and details of failures) go to ``<state-dir>/diskbackup.log``, never to the
    terminal; a folder that does not exist is made only by the commands that keep state there.
    Answers what :func:`_stop_logging` needs to put the root logger back as it was."""
    state_dir = Path(args.state_dir)
    if args.command not in ("run", "resume", "status", *STATEFUL) and not state_dir.is_dir():
        handler: logging.Handler = logging.NullHandler()
    else:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(state_dir / LOG_FILE, encoding="utf-8")
        except OSError:
            handler = logging.NullHandler()
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler, level


def _stop_logging(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


def _dump(document: Any, out: TextIO) -> None:
    json.dump(document, out, indent=2, default=str)
    out.write("\n")


def _selection(args: argparse.Namespace) -> Selection | None:
    """The selection the flags ask for (``None``: the configured one)."""
    if args.disk:
        return disk_ids_selection(args.disk, "--disk")
    if args.tag:
        name, sep, value = args.tag.partition("=")
        if not sep:
            raise InvalidInputError("--tag", f"{one_line(repr(args.tag), 100)} is not NAME=VALUE")
        return tag_selection(name, value, "--tag")
    if args.resource_group:
        return resource_group_selection(args.resource_group, "--resource-group")
    return None


# -- run and resume --------------------------------------------------------------------------------


def _open(context: Context) -> LocalHost:
    """The host on the state folder, after naming every file of it that had to be skipped."""
    host = open_host(context.settings, context.args.state_dir)
    for problem in host.store_problems:
        context.warn(f"warning: {problem}")
    return host


@contextmanager
def _ctrl_c() -> Iterator[threading.Event]:
    """While following a run, the first Ctrl-C sets an event that :func:`follow` turns into
    ``KeyboardInterrupt`` at a safe point (the host then stops, letting running activities finish); a
    second Ctrl-C interrupts at once."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted  # signal handlers belong to the main thread
        return

    def first(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _view(context: Context) -> Callable[[RunProgress], None]:
    stream = context.err if context.args.json else context.out
    return ProgressView(stream, tty=stream.isatty())


def _run(context: Context) -> int:
    args = context.args
    keep = True if args.keep_snapshot else None
    run = run_input(context.settings, "cli", _selection(args), keep_snapshot=keep, force_full=args.full)
    run_id = new_run_id(datetime.now(UTC))
    with StateLock(args.state_dir):
        host = _open(context)
        others = unfinished_runs(host)
        if others:
            names = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            context.warn(
                f"{len(others)} unfinished run(s) in {args.state_dir} ({names}) carry on meanwhile; "
                f"`{context.command('resume')}` finishes them"
            )
        with host:
            host.start_new(RUN_ORCHESTRATOR, input=run.to_json(), instance_id=run_id)
            context.following = run_id
            with _ctrl_c() as interrupted:
                progress = follow(host, run_id, on_progress=_view(context), interrupted=interrupted)
    context.following = None
    return _report(context, progress)


def _resume(context: Context) -> int:
    args = context.args
    with StateLock(args.state_dir):
        host = _open(context)
        if args.run_id is not None:
            found = host.get_status(args.run_id)
            if found is None or found.name != RUN_ORCHESTRATOR:
                raise _no_such_run(context)
            run_ids = [args.run_id]
        else:
            run_ids = unfinished_runs(host)
            if not run_ids:
                if args.json:
                    _dump({"runs": []}, context.out)
                else:
                    context.out.write(f"no unfinished runs in {args.state_dir}\n")
                return 0
        reports: list[RunProgress] = []
        with host, _ctrl_c() as interrupted:
            for run_id in run_ids:
                context.following = run_id
                reports.append(follow(host, run_id, on_progress=_view(context), interrupted=interrupted))
    context.following = None
    if args.run_id is not None:
        return _report(context, reports[0])
    statuses = [_report(context, report, print_json=False) for report in reports]
    if args.json:
        _dump({"runs": [_document(report) for report in reports]}, context.out)
    return max(statuses)


def _no_such_run(context: Context) -> InvalidInputError:
    wanted = one_line(repr(context.args.run_id), 100)
    return InvalidInputError("run_id", f"no run {wanted} in {context.args.state_dir}")


def _document(progress: RunProgress) -> dict[str, Any]:
    """The ``--json`` document of a run that ended: its runtime status and its summary, or an error."""
    document: dict[str, Any] = {"runtimeStatus": progress.runtime_status, "result": None}
    summary = progress.summary
    if summary is not None:
        document["result"] = summary.to_json()
    else:
        document["error"] = _orchestration_failure(progress).to_json()
    return document


def _orchestration_failure(progress: RunProgress) -> Failure:
    # The run orchestration itself failed (a bug) or was terminated: its output is platform text with
    # stack traces, for the log only.
    log.warning(
        "run %s ended %s without a summary: %s", progress.run_id, progress.runtime_status, progress.output
    )
    if progress.runtime_status == "Terminated":
        return Failure(FailureCode.TERMINATED, f"run {progress.run_id} was terminated")
    return Failure(FailureCode.INTERNAL, f"run {progress.run_id} failed: {INTERNAL_MESSAGE}")


def _report(context: Context, progress: RunProgress, *, print_json: bool = True) -> int:
    """Show how a run ended (summary lines and where its HTML report went, or its ``--json`` document);
    answer the exit status."""
    summary = progress.summary
    report = _leave_report(context, summary) if summary is not None else None
    if context.args.json:
        if print_json:
            document = _document(progress)
            if report is not None:
                document["report"] = str(report)
            _dump(document, context.out)
    elif summary is not None:
        for line in summary_lines(summary.to_json()):
            context.out.write(line + "\n")
        if report is not None:
            context.out.write(f"  report: {report}\n")
    else:
        context.warn(_orchestration_failure(progress).message)
    succeeded = summary is not None and summary.status == "Succeeded"
    return 0 if progress.runtime_status == "Completed" and succeeded else 1


# -- reading ---------------------------------------------------------------------------------------


def _status(context: Context) -> int:
    args = context.args
    if not 1 <= args.top <= 1000:
        raise InvalidInputError("--top", "must be 1 to 1000")
    host = _open(context)  # not started: reads the stored state, resumes nothing
    progress = read_progress(host, args.run_id)
    if progress is None:
        raise _no_such_run(context)
    page, token = read_disk_page(host, args.run_id, top=args.top, token=args.continuation_token)
    summary = progress.summary
    if args.json:
        result = summary.to_json() if summary is not None else None
        if result is not None:
            del result["disks"]  # each disk's result is on its page
        document: dict[str, Any] = {
            "runId": progress.run_id,
            "runtimeStatus": progress.runtime_status,
            "phase": progress.phase,
            "counts": progress.counts,
            "disks": [disk.to_json() for disk in page],
            "nextContinuationToken": token,
            "result": result,
        }
        if progress.done and summary is None:
            document["error"] = _orchestration_failure(progress).to_json()
        _dump(document, context.out)
        return 0
    ProgressView(context.out, tty=False)(progress)
    if progress.counts:
        context.out.write(counts_line(progress.counts) + "\n")
    if progress.done:
        if summary is not None:
            for line in summary_lines(summary.to_json()):
                context.out.write(line + "\n")
        else:
            context.out.write(_orchestration_failure(progress).message + "\n")
    return 0


def _list(context: Context) -> int:
    args, out = context.args, context.out
    if not 1 <= args.top <= 1000:
        raise InvalidInputError("--top", "must be 1 to 1000")
    listing = clients_for(context.settings).catalog.list_runs(args.top)
    runs = [run.to_json() for run in listing.items]
    if args.json:
        _dump({"runs": runs, "unreadableRows": listing.problems}, out)
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


def _restore_points(context: Context) -> int:
    args, out = context.args, context.out
    if not 1 <= args.top <= 1000:
        raise InvalidInputError("--top", "must be 1 to 1000")
    disk = parse_disk_id(args.disk_id, "disk_id")
    listing = clients_for(context.settings).catalog.list_restore_points(
        str(disk), include_failed=args.include_failed, include_expired=args.include_expired, top=args.top
    )
    points = [point.to_json() for point in listing.items]
    if args.json:
        _dump({"diskId": str(disk), "restorePoints": points, "unreadableRows": listing.problems}, out)
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
            code = f" [{point['code']}]" if point.get("code") else ""
            line += f"\n    reason{code}: {point['reason']}"
        if point.get("expiredAt"):
            line += f"\n    expired {point['expiredAt']}: {point['expiredReason']}"
        if point.get("verdict"):
            tested = f"{point['verdict']} {point['verifiedAt']} ({point['verifyRestoreId']})"
            line += f"\n    restore test {tested}"
        out.write(line + "\n")
    for problem in listing.problems:
        out.write(f"unreadable catalog row: {problem}\n")
    return 0


def _leave_report(context: Context, summary: RunSummary) -> Path | None:
    """Write a finished run's HTML report into the state folder; a failure to costs only a warning."""
    try:
        catalog = clients_for(context.settings).catalog
        path, complete = write_run_report(
            catalog, summary, default_report_path(context.args.state_dir, summary.run_id)
        )
    except OSError as exc:
        context.warn(f"report not written: {exc.strerror or exc}")
        return None
    if not complete:
        context.warn("the catalog did not answer: the report has no restore point history")
    return path


def _report_command(context: Context) -> int:
    args = context.args
    summary: RunSummary | None = None
    if Path(args.state_dir).is_dir():
        status = _open(context).get_status(args.run_id)  # not started: reads the stored state
        if status is not None and status.name == RUN_ORCHESTRATOR:
            summary = RunSummary.read(status.output)
            if summary is None:
                raise InvalidInputError(
                    "run_id", f"run {args.run_id} has not ended: its report comes when it does"
                )
    catalog = clients_for(context.settings).catalog
    if summary is None:
        summary = catalog.run_summary(args.run_id)
    if summary is None:
        wanted = one_line(repr(args.run_id), 100)
        raise InvalidInputError("run_id", f"no run {wanted} in {args.state_dir} or in the catalog")
    path, complete = write_run_report(
        catalog, summary, args.output or default_report_path(args.state_dir, summary.run_id)
    )
    if not complete:
        context.warn("the catalog did not answer: the report has no restore point history")
    if args.json:
        _dump({"runId": summary.run_id, "report": str(path)}, context.out)
    else:
        context.out.write(f"report: {path}\n")
    return 0


COMMANDS: dict[str, Callable[[Context], int]] = {
    "report": _report_command,
    "run": _run,
    "resume": _resume,
    "status": _status,
    "list": _list,
    "restore-points": _restore_points,
    "restore": restore_commands.restore,
    "verify": restore_commands.verify,
    "prune": restore_commands.prune,
}
#: Commands that keep state (and their log) in ``--state-dir``, besides run, resume and status.
STATEFUL = ("restore", "verify", "prune")

__all__ = ["DEFAULT_STATE_DIR", "main", "read_env_file"]
