"""The Function App's functions: triggers, orchestrators and activities, registered on a Blueprint.

Each function here only connects a trigger to the code that does the work (:mod:`backup.app.http_routes`,
:mod:`backup.app.restore_routes`, :mod:`backup.workflow.orchestrators`, :mod:`backup.workflow.restore`,
:mod:`backup.workflow.prune`, and the activities of :mod:`backup.workflow.activities`,
:mod:`backup.workflow.chain_activities`, :mod:`backup.workflow.restore_activities` and
:mod:`backup.workflow.prune_activities`), with the settings it was built from. ``function_app.py``
builds the app once from the validated settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from backup.app import http_routes, restore_routes
from backup.app.restore_starter import start_prune_after_run, start_scheduled_restore_tests
from backup.app.starter import start_scheduled_run
from backup.clients import clients_for
from backup.failures import ActivityFailure, describe
from backup.redact import get_logger
from backup.settings import Settings
from backup.workflow import (
    activities,
    chain_activities,
    orchestrators,
    prune,
    prune_activities,
    restore,
    restore_activities,
    watch,
)

log = get_logger(__name__)


def build_blueprint(settings: Settings) -> df.Blueprint:
    """Every function of the app, bound to ``settings``."""
    bp = df.Blueprint()

    def clients() -> Any:
        return clients_for(settings)

    def reported(activity: Callable[[Any, Any], Any], data: Any) -> Any:
        # Failures cross to the orchestrator as "[Code] message"; the details stay in this log.
        try:
            return activity(clients(), data)
        except Exception as exc:
            failure = describe(exc)
            log.warning("activity %s failed (%s): %s", activity.__name__, failure.code, exc, exc_info=True)
            raise ActivityFailure(failure) from None

    # -- triggers --------------------------------------------------------------------------------------

    @bp.timer_trigger(
        schedule=settings.schedule.expression, arg_name="timer", run_on_startup=False, use_monitor=True
    )
    @bp.durable_client_input(client_name="client")
    async def nightly_backup(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
        instance_id, started = await start_scheduled_run(client, settings, datetime.now(UTC))
        log.info(
            "timer (past due: %s): run %s %s", timer.past_due, instance_id, "started" if started else "exists"
        )
        # Retention follows the run as an instance of its own (it waits for the run to end).
        try:
            prune_id, prune_started = await start_prune_after_run(client, settings, instance_id)
            log.info("prune %s %s", prune_id, "started" if prune_started else "exists")
        except Exception as exc:  # the run stands; the next night's prune covers these disks too
            log.warning("the prune after run %s did not start: %s", instance_id, exc)

    if settings.verify_schedule is not None:

        @bp.timer_trigger(
            schedule=settings.verify_schedule.expression,
            arg_name="timer",
            run_on_startup=False,
            use_monitor=True,
        )
        @bp.durable_client_input(client_name="client")
        async def scheduled_restore_tests(
            timer: func.TimerRequest, client: df.DurableOrchestrationClient
        ) -> None:
            instance_id, started = await start_scheduled_restore_tests(client, settings, datetime.now(UTC))
            log.info(
                "restore-test timer (past due: %s): %s %s",
                timer.past_due,
                instance_id,
                "started" if started else "exists",
            )

    @bp.route(route="backups", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    @bp.durable_client_input(client_name="client")
    async def start_backup(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
        return await http_routes.guarded(lambda: http_routes.start_backup(req, client, settings))

    @bp.route(route="backups/{instanceId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    @bp.durable_client_input(client_name="client")
    async def get_backup(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
        return await http_routes.guarded(lambda: http_routes.get_backup(req, client, settings))

    @bp.route(route="backups/{instanceId}/report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    @bp.durable_client_input(client_name="client")
    async def get_backup_report(
        req: func.HttpRequest, client: df.DurableOrchestrationClient
    ) -> func.HttpResponse:
        return await http_routes.guarded(
            lambda: http_routes.get_backup_report(req, client, clients().catalog)
        )

    @bp.route(route="backups", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    async def list_backups(req: func.HttpRequest) -> func.HttpResponse:
        return await http_routes.guarded(lambda: http_routes.list_backups(req, clients().catalog))

    @bp.route(route="restore-points", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    async def list_restore_points(req: func.HttpRequest) -> func.HttpResponse:
        return await http_routes.guarded(lambda: http_routes.list_restore_points(req, clients().catalog))

    # -- restore and retention ---------------------------------------------------------------------

    @bp.route(route="restores", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    @bp.durable_client_input(client_name="client")
    async def start_restore(
        req: func.HttpRequest, client: df.DurableOrchestrationClient
    ) -> func.HttpResponse:
        return await http_routes.guarded(
            lambda: restore_routes.start_restore(req, client, settings, clients())
        )

    @bp.route(route="restores/{restoreId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    @bp.durable_client_input(client_name="client")
    async def get_restore(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
        return await http_routes.guarded(lambda: restore_routes.get_restore(req, client))

    @bp.route(route="retention/preview", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    async def retention_preview(req: func.HttpRequest) -> func.HttpResponse:
        return await http_routes.guarded(lambda: restore_routes.retention_preview(req, clients(), settings))

    register_orchestrators(bp)

    # -- activities ------------------------------------------------------------------------------------

    @bp.activity_trigger(input_name="data")
    def resolve_selection(data: Any) -> Any:
        return reported(activities.resolve_selection, data)

    @bp.activity_trigger(input_name="data")
    def record_run(data: Any) -> Any:
        return reported(activities.record_run, data)

    @bp.activity_trigger(input_name="data")
    def send_run_alert(data: Any) -> Any:
        return reported(activities.send_run_alert, data)

    @bp.activity_trigger(input_name="data")
    def begin_snapshot(data: Any) -> Any:
        return reported(activities.begin_snapshot, data)

    @bp.activity_trigger(input_name="data")
    def poll_operation(data: Any) -> Any:
        return reported(activities.poll_operation, data)

    @bp.activity_trigger(input_name="data")
    def snapshot_readiness(data: Any) -> Any:
        return reported(activities.snapshot_readiness, data)

    @bp.activity_trigger(input_name="data")
    def begin_grant_access(data: Any) -> Any:
        return reported(activities.begin_grant_access, data)

    @bp.activity_trigger(input_name="data")
    def start_copy(data: Any) -> Any:
        return reported(activities.start_copy, data)

    @bp.activity_trigger(input_name="data")
    def copy_status(data: Any) -> Any:
        return reported(activities.copy_status, data)

    @bp.activity_trigger(input_name="data")
    def begin_revoke_access(data: Any) -> Any:
        return reported(activities.begin_revoke_access, data)

    @bp.activity_trigger(input_name="data")
    def record_restore_point(data: Any) -> Any:
        return reported(activities.record_restore_point, data)

    @bp.activity_trigger(input_name="data")
    def begin_delete_snapshot(data: Any) -> Any:
        return reported(activities.begin_delete_snapshot, data)

    # -- the incremental chain's activities -----------------------------------------------------------

    @bp.activity_trigger(input_name="data")
    def acquire_writer_lease(data: Any) -> Any:
        return reported(chain_activities.acquire_writer_lease, data)

    @bp.activity_trigger(input_name="data")
    def inspect_chain(data: Any) -> Any:
        return reported(chain_activities.inspect_chain, data)

    @bp.activity_trigger(input_name="data")
    def list_changes(data: Any) -> Any:
        return reported(chain_activities.list_changes, data)

    @bp.activity_trigger(input_name="data")
    def apply_batch(data: Any) -> Any:
        return reported(chain_activities.apply_batch, data)

    @bp.activity_trigger(input_name="data")
    def sync_footer(data: Any) -> Any:
        return reported(chain_activities.sync_footer, data)

    @bp.activity_trigger(input_name="data")
    def verify_pages(data: Any) -> Any:
        return reported(chain_activities.verify_pages, data)

    @bp.activity_trigger(input_name="data")
    def verify_content(data: Any) -> Any:
        return reported(chain_activities.verify_content, data)

    @bp.activity_trigger(input_name="data")
    def snapshot_backup_blob(data: Any) -> Any:
        return reported(chain_activities.snapshot_backup_blob, data)

    @bp.activity_trigger(input_name="data")
    def finish_writing(data: Any) -> Any:
        return reported(chain_activities.finish_writing, data)

    @bp.activity_trigger(input_name="data")
    def begin_tag_base(data: Any) -> Any:
        return reported(chain_activities.begin_tag_base, data)

    @bp.activity_trigger(input_name="data")
    def begin_retire_base(data: Any) -> Any:
        return reported(chain_activities.begin_retire_base, data)

    # -- restore's activities ------------------------------------------------------------------------

    @bp.activity_trigger(input_name="data")
    def find_restore_point(data: Any) -> Any:
        return reported(restore_activities.find_restore_point, data)

    @bp.activity_trigger(input_name="data")
    def record_restore(data: Any) -> Any:
        return reported(restore_activities.record_restore, data)

    @bp.activity_trigger(input_name="data")
    def begin_create_restore_disk(data: Any) -> Any:
        return reported(restore_activities.begin_create_restore_disk, data)

    @bp.activity_trigger(input_name="data")
    def begin_grant_disk_access(data: Any) -> Any:
        return reported(restore_activities.begin_grant_disk_access, data)

    @bp.activity_trigger(input_name="data")
    def begin_revoke_disk_access(data: Any) -> Any:
        return reported(restore_activities.begin_revoke_disk_access, data)

    @bp.activity_trigger(input_name="data")
    def begin_delete_restore_disk(data: Any) -> Any:
        return reported(restore_activities.begin_delete_restore_disk, data)

    @bp.activity_trigger(input_name="data")
    def plan_restore(data: Any) -> Any:
        return reported(restore_activities.plan_restore, data)

    @bp.activity_trigger(input_name="data")
    def apply_restore_batch(data: Any) -> Any:
        return reported(restore_activities.apply_restore_batch, data)

    @bp.activity_trigger(input_name="data")
    def write_restore_footer(data: Any) -> Any:
        return reported(restore_activities.write_restore_footer, data)

    @bp.activity_trigger(input_name="data")
    def check_restored_disk(data: Any) -> Any:
        return reported(restore_activities.check_restored_disk, data)

    @bp.activity_trigger(input_name="data")
    def verify_restore_span(data: Any) -> Any:
        return reported(restore_activities.verify_restore_span, data)

    @bp.activity_trigger(input_name="data")
    def verify_restore_sample(data: Any) -> Any:
        return reported(restore_activities.verify_restore_sample, data)

    @bp.activity_trigger(input_name="data")
    def record_point_verdict(data: Any) -> Any:
        return reported(restore_activities.record_point_verdict, data)

    @bp.activity_trigger(input_name="data")
    def delete_restore_plan(data: Any) -> Any:
        return reported(restore_activities.delete_restore_plan, data)

    # -- retention's activities ----------------------------------------------------------------------

    @bp.activity_trigger(input_name="data")
    def run_finished(data: Any) -> Any:
        return reported(prune_activities.run_finished, data)

    @bp.activity_trigger(input_name="data")
    def prune_disk(data: Any) -> Any:
        return reported(prune_activities.prune_disk, data)

    return bp


def register_orchestrators(target: df.Blueprint) -> None:
    """Register the orchestrators (run, lane, disk and the disk's three watches; restore, restore tests,
    prune) on an app or blueprint, under their own names."""

    @target.orchestration_trigger(context_name="context")
    def backup_run(context: df.DurableOrchestrationContext) -> orchestrators.Orchestration:
        return (yield from orchestrators.backup_run(context))

    @target.orchestration_trigger(context_name="context")
    def backup_lane(context: df.DurableOrchestrationContext) -> orchestrators.Orchestration:
        return (yield from orchestrators.backup_lane(context))

    @target.orchestration_trigger(context_name="context")
    def backup_disk(context: df.DurableOrchestrationContext) -> orchestrators.Orchestration:
        return (yield from orchestrators.backup_disk(context))

    @target.orchestration_trigger(context_name="context")
    def watch_operation(context: df.DurableOrchestrationContext) -> orchestrators.Orchestration:
        return (yield from watch.watch_operation(context))

    @target.orchestration_trigger(context_name="context")
    def watch_copy(context: df.DurableOrchestrationContext) -> orchestrators.Orchestration:
        return (yield from watch.watch_copy(context))

    @target.orchestration_trigger(context_name="context")
    def watch_readiness(context: df.DurableOrchestrationContext) -> orchestrators.Orchestration:
        return (yield from watch.watch_readiness(context))

    @target.orchestration_trigger(context_name="context")
    def restore_disk(context: df.DurableOrchestrationContext) -> restore.Orchestration:
        return (yield from restore.restore_disk(context))

    @target.orchestration_trigger(context_name="context")
    def restore_tests(context: df.DurableOrchestrationContext) -> restore.Orchestration:
        return (yield from restore.restore_tests(context))

    @target.orchestration_trigger(context_name="context")
    def prune_run(context: df.DurableOrchestrationContext) -> prune.Orchestration:
        return (yield from prune.prune_run(context))


def build_app(settings: Settings) -> df.DFApp:
    """The Function App: a ``DFApp`` (auth level FUNCTION) with every function of :func:`build_blueprint`."""
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(build_blueprint(settings))
    return app
