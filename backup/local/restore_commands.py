"""The command line's restore, restore test and prune (``diskbackup restore | verify | prune``).

    diskbackup restore DISK_ID (--run RUN_ID | --at TIME) --to-resource-group RG --to-disk NAME
                       [--location L] [--sku S] [--zone Z] [--to-subscription SUB] [--tag NAME=VALUE ...]
                       [--verify full|sample|none] [--keep-on-failure] [--json]
    diskbackup verify DISK_ID --run RUN_ID [--to-resource-group RG] [--json]
    diskbackup prune [--disk ID ...] [--dry-run] [--json]

Each runs the Function App's own orchestration (:mod:`backup.workflow.restore`,
:mod:`backup.workflow.prune`) through the local Durable host, as ``run`` does, with its state in
``--state-dir``. ``restore`` shows a progress bar and ends 0 only when the disk exists and verified (or
was not to be verified: ``--verify none``); an existing target disk is refused before anything starts.
``verify`` is a restore test: a temporary disk (in the disk's own resource group unless told otherwise),
verified in full, deleted, the verdict recorded on the restore point; 0 when it passed. ``prune`` applies
each disk's retention policy (``--dry-run``: only says what would go, and why); 0 unless a disk's prune
failed.

Failures are reported as the other commands report them (:mod:`backup.local.cli`).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from backup.app.restore_routes import restore_refusal
from backup.azure.resource_id import parse_disk_id
from backup.clients import clients_for
from backup.errors import InvalidInputError
from backup.failures import INTERNAL_MESSAGE, Failure, FailureCode, one_line
from backup.local.durable_host import LocalHost
from backup.local.runner import StateLock
from backup.workflow.models import parse_iso
from backup.workflow.restore_models import (
    PRUNE_ORCHESTRATOR,
    RESTORE_ORCHESTRATOR,
    RestoreInput,
    RestoreResult,
    RestoreStatus,
    validate_location,
    validate_point_run_id,
    validate_sku,
    validate_zone,
)
from backup.workflow.restore_startup import (
    new_prune_id,
    new_restore_id,
    prune_input,
    restore_input,
    restore_test_input,
)
from backup.workflow.startup import disk_ids_selection

if TYPE_CHECKING:
    from backup.local.cli import Context

__all__ = ["add_commands", "prune", "restore", "verify"]

_BAR = 24
_TERMINAL = ("Completed", "Failed", "Terminated")


def add_commands(commands: Any) -> None:
    """Add ``restore``, ``verify`` and ``prune`` to the command line's subcommands."""
    restore_cmd = commands.add_parser("restore", help="restore a restore point into a new managed disk")
    restore_cmd.add_argument("disk_id", help="the backed-up disk's resource ID")
    point = restore_cmd.add_mutually_exclusive_group(required=True)
    point.add_argument("--run", metavar="RUN_ID", help="the restore point this run took")
    point.add_argument("--at", metavar="TIME", help="the newest good point taken at or before this ISO time")
    restore_cmd.add_argument("--to-resource-group", required=True, metavar="RG", help="the new disk's group")
    restore_cmd.add_argument("--to-disk", required=True, metavar="NAME", help="the new disk's name")
    restore_cmd.add_argument("--location", metavar="L", help="its region (default: the source disk's)")
    restore_cmd.add_argument(
        "--sku", metavar="S", help="its SKU, e.g. Premium_LRS (default: the source disk's)"
    )
    restore_cmd.add_argument("--zone", metavar="Z", help="its availability zone")
    restore_cmd.add_argument("--to-subscription", metavar="SUB", help="its subscription (default: the app's)")
    restore_cmd.add_argument("--tag", action="append", metavar="NAME=VALUE", help="a tag for it (repeatable)")
    restore_cmd.add_argument("--verify", choices=("full", "sample", "none"), default="full")
    restore_cmd.add_argument(
        "--keep-on-failure", action="store_true", help="keep a half-made disk to inspect"
    )
    restore_cmd.add_argument("--json", action="store_true", help="print the restore's result as JSON")

    verify_cmd = commands.add_parser(
        "verify", help="a restore test: restore to a temporary disk, verify, delete"
    )
    verify_cmd.add_argument("disk_id")
    verify_cmd.add_argument("--run", required=True, metavar="RUN_ID", help="the restore point to test")
    verify_cmd.add_argument("--to-resource-group", metavar="RG", help="where the temporary disk goes")
    verify_cmd.add_argument("--json", action="store_true")

    prune_cmd = commands.add_parser("prune", help="apply the retention policy to restore points")
    prune_cmd.add_argument("--disk", action="append", metavar="ID", help="only this disk (repeatable)")
    prune_cmd.add_argument("--dry-run", action="store_true", help="only say what would go, and why")
    prune_cmd.add_argument("--json", action="store_true")


# -- restore and verify --------------------------------------------------------------------------------------


def restore(context: Context) -> int:
    """``diskbackup restore``."""
    args = context.args
    target: dict[str, Any] = {
        "resourceGroup": args.to_resource_group,
        "diskName": args.to_disk,
        "subscriptionId": args.to_subscription,
    }
    if args.location is not None:
        target["location"] = validate_location(args.location, "--location")
    if args.sku is not None:
        target["sku"] = validate_sku(args.sku, "--sku")
    if args.zone is not None:
        target["zone"] = validate_zone(args.zone, "--zone")
    if args.tag:
        tags: dict[str, str] = {}
        for item in args.tag:
            name, sep, value = item.partition("=")
            if not sep:
                raise InvalidInputError("--tag", f"{one_line(repr(item), 100)} is not NAME=VALUE")
            tags[name] = value
        target["tags"] = tags
    if args.run is not None:
        validate_point_run_id(args.run, "--run")
    if args.at is not None:
        parse_iso(args.at, "--at")
    request = restore_input(
        context.settings,
        "cli",
        disk_id=str(parse_disk_id(args.disk_id, "disk_id")),
        target=target,
        run_id=args.run,
        at=args.at,
        verify=args.verify,
        keep_on_failure=args.keep_on_failure,
    )
    return _run_restore(context, request, new_restore_id(datetime.now(UTC)))


def verify(context: Context) -> int:
    """``diskbackup verify``: a restore test of one restore point."""
    args = context.args
    disk = parse_disk_id(args.disk_id, "disk_id")
    restore_id = new_restore_id(datetime.now(UTC))
    request = restore_test_input(
        context.settings,
        "cli",
        disk_id=str(disk),
        run_id=validate_point_run_id(args.run, "--run"),
        restore_id=restore_id,
        resource_group=args.to_resource_group or disk.resource_group,
    )
    return _run_restore(context, request, restore_id)


def _run_restore(context: Context, request: RestoreInput, restore_id: str) -> int:
    from backup.local.cli import Fail, _ctrl_c, _open

    refused = restore_refusal(clients_for(context.settings), request)
    if refused is not None:
        _, code, message, _ = refused
        raise Fail(code, message, 1)
    args = context.args
    with StateLock(args.state_dir):
        host = _open(context)
        with host:
            host.start_new(RESTORE_ORCHESTRATOR, input=request.to_json(), instance_id=restore_id)
            context.following = restore_id
            stream = context.err if args.json else context.out
            view = RestoreView(stream, tty=stream.isatty())
            with _ctrl_c() as interrupted:
                status = _follow(host, restore_id, view, interrupted)
    context.following = None
    result = RestoreResult.read(status.output)
    if args.json:
        document: dict[str, Any] = {
            "runtimeStatus": str(status.runtime_status),
            "result": result.to_json() if result else None,
        }
        if result is None:
            document["error"] = _orchestration_failure(status).to_json()
        _dump(document, context.out)
    elif result is None:
        context.warn(_orchestration_failure(status).message)
    else:
        for line in restore_lines(result):
            context.out.write(line + "\n")
    return 0 if result is not None and result.status == "Succeeded" else 1


def restore_lines(result: RestoreResult) -> list[str]:
    """How a restore ended, for a person: the disk, the verification, what became of the disk."""
    what = "restore test" if result.purpose == "test" else "restore"
    point = f"run {result.run_id}'s restore point" if result.run_id else "the restore point"
    if result.status == "Succeeded":
        lines = [f"{what} {result.restore_id}: Succeeded: {point} -> {result.target_disk_id}"]
        lines.append(
            f"  disk: {result.location}, {result.sku}, {_mib(result.size_bytes)} "
            f"({_mib(result.bytes_written)} written)"
        )
        if result.verify == "full" and result.source_digest:
            lines.append(
                f"  verified in full: {result.windows} windows, {_mib(result.bytes_compared)} compared by "
                f"SHA-256; window chain {result.source_digest} (disk and restore point alike)"
            )
        elif result.verdict == "Passed":
            lines.append(
                f"  verified by sample: {result.windows} windows, {_mib(result.bytes_compared)} compared"
            )
        else:
            lines.append("  not verified (--verify none)")
        if result.disk_deleted:
            lines.append(
                "  the temporary disk was deleted; the verdict Passed is recorded on the restore point"
            )
    else:
        code = f" [{result.code}]" if result.code else ""
        lines = [f"{what} {result.restore_id}: Failed{code}: {result.reason}"]
        if result.disk_kept:
            lines.append(f"  the half-made disk {result.target_disk_id} is kept for inspection")
        elif result.disk_deleted:
            lines.append(f"  the half-made disk {result.target_disk_id} was deleted")
    lines.extend(f"  warning: {w}" for w in result.warnings)
    return lines


class RestoreView:
    """A restore's progress: one bar redrawn in place on a terminal, a line per phase elsewhere."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._last = ""

    def __call__(self, restore_id: str, progress: RestoreStatus | None, runtime: str) -> None:
        """Show one look at the restore."""
        phase = progress.phase if progress else "starting"
        if self.tty:
            line = f"restore {restore_id}: {phase:<8} {self._bar(progress)}"
            self.out.write("\r\x1b[2K" + line)
            if runtime in _TERMINAL:
                self.out.write("\n")
        elif phase != self._last:
            self._last = phase
            self.out.write(f"restore {restore_id}: {phase}\n")
        self.out.flush()

    @staticmethod
    def _bar(progress: RestoreStatus | None) -> str:
        if progress is None or progress.bytes_total <= 0:
            return ""
        written = progress.bytes_written
        total = progress.bytes_total
        fraction = (
            1.0 if progress.phase in ("finish", "verify", "cleanup", "record", "done") else written / total
        )
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * _BAR)
        return (
            f"[{'#' * filled}{'-' * (_BAR - filled)}] {fraction * 100:5.1f}%  {_mib(written)} / {_mib(total)}"
        )


def _follow(host: LocalHost, instance_id: str, view: RestoreView, interrupted: threading.Event) -> Any:
    while True:
        if interrupted.is_set():
            raise KeyboardInterrupt
        status = host.get_status(instance_id)
        if status is not None:
            runtime = str(status.runtime_status)
            view(instance_id, RestoreStatus.read(status.custom_status), runtime)
            if runtime in _TERMINAL:
                return status
        interrupted.wait(0.3)


# -- prune ---------------------------------------------------------------------------------------------------


def prune(context: Context) -> int:
    """``diskbackup prune``."""
    from backup.local.cli import _ctrl_c, _open

    args = context.args
    selection = disk_ids_selection(args.disk, "--disk") if args.disk else None
    request = prune_input(context.settings, "cli", selection, dry_run=args.dry_run)
    prune_id = new_prune_id(datetime.now(UTC))
    with StateLock(args.state_dir):
        host = _open(context)
        with host, _ctrl_c() as interrupted:
            host.start_new(PRUNE_ORCHESTRATOR, input=request.to_json(), instance_id=prune_id)
            context.following = prune_id
            while True:
                if interrupted.is_set():
                    raise KeyboardInterrupt
                status = host.get_status(prune_id)
                if status is not None and str(status.runtime_status) in _TERMINAL:
                    break
                time.sleep(0.2)
    context.following = None
    summary = status.output if str(status.runtime_status) == "Completed" else None
    if not isinstance(summary, dict):
        failure = _orchestration_failure(status)
        if args.json:
            _dump(
                {"runtimeStatus": str(status.runtime_status), "result": None, "error": failure.to_json()},
                context.out,
            )
        else:
            context.warn(failure.message)
        return 1
    if args.json:
        _dump({"runtimeStatus": "Completed", "result": summary}, context.out)
    else:
        for line in prune_lines(summary):
            context.out.write(line + "\n")
    return 1 if summary.get("code") or summary.get("failedDisks") else 0


def prune_lines(summary: dict[str, Any]) -> list[str]:
    """A prune's summary, a line per disk (and per point that went, or would go, with its reasons)."""
    dry = summary.get("dryRun")
    head = "prune (dry run)" if dry else "prune"
    if summary.get("code"):
        return [f"{head} {summary['pruneId']}: failed [{summary['code']}]: {summary.get('reason')}"]
    counts = (
        f"{summary['disks']} disks: {summary['expiring']} points would go, {summary['kept']} kept"
        if dry
        else f"{summary['disks']} disks: {summary['expired']} points expired ({summary['deleted']} deleted), "
        f"{summary['kept']} kept, {summary['heldCount']} held, {summary['deferred']} deferred"
    )
    lines = [f"{head} {summary['pruneId']} as of {summary['asOf']} ({summary['policy']}): {counts}"]
    for disk in summary.get("results", []):
        name = str(disk.get("diskId", "?")).rsplit("/", 1)[-1]
        if disk.get("code"):
            lines.append(f"  FAILED  {name}: [{disk['code']}] {disk.get('reason')}")
            continue
        source = (
            f"{disk.get('policy')} from the disk's tag" if disk.get("policySource") == "tag" else "policy"
        )
        if disk.get("problem"):
            lines.append(f"  kept    {name}: everything ({disk['problem']})")
            continue
        going = f"would expire {disk.get('expiring', 0)}" if dry else f"expired {disk.get('expired', 0)}"
        lines.append(f"  {'plan' if dry else 'ok':<7} {name}: kept {disk.get('kept', 0)}, {going} ({source})")
        for item in disk.get("items", []):
            lines.append(
                f"          {item['action']}: run {item['runId']} of {item['time']}: {item['reason']}"
            )
        for held in disk.get("held", []):
            lines.append(f"          held: run {held['runId']}: {held['problem']}")
        if disk.get("deferredProblem"):
            lines.append(f"          deferred to the next prune: {disk['deferredProblem']}")
    lines.extend(f"  warning: {w}" for w in summary.get("warnings", []))
    return lines


# -- small parts ---------------------------------------------------------------------------------------------


def _orchestration_failure(status: Any) -> Failure:
    if str(status.runtime_status) == "Terminated":
        return Failure(FailureCode.TERMINATED, f"{status.instance_id} was terminated")
    return Failure(FailureCode.INTERNAL, f"{status.instance_id} failed: {INTERNAL_MESSAGE}")


def _dump(document: Any, out: TextIO) -> None:
    from backup.local.cli import _dump as dump

    dump(document, out)


def _mib(value: int) -> str:
    return f"{value / (1 << 20):.1f} MiB"
