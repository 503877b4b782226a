"""Names of the activities the orchestrators call, and the shape of what they answer.

Activities are called by name (``call_activity`` sends a string), so the names live here once, used by
the orchestrators and by the registration in :mod:`backup.app.blueprint`.

An *operation answer* (begin_* and poll_operation) is ``{"state": "InProgress" | "Succeeded" |
"Throttled", "retryAfter": seconds or None, "operation": <secret-free polling state> or None}``; a
``Throttled`` answer (ARM answered 429, or the resource is still being changed by an earlier call, say
one whose answer was lost) adds ``"retry": {"activity": name, "input": {...}}``, the call to repeat after
the wait. An operation that ended Failed or Canceled makes the activity raise instead.

A *readiness answer* (snapshot_readiness, one GET of the snapshot) is ``{"ready": bool,
"completionPercent": number or None, "accessState": snapshotAccessState or None, "retryAfter": seconds
or None}``; ``ready`` means the snapshot can be read through a grant. A snapshot whose creation or
background copy failed makes the activity raise.

A *copy answer* (start_copy, copy_status) is ``{"copyId", "status": "pending" | "success", "copied",
"total"}``; a failed or aborted copy makes the activity raise.

The incremental chain's activities (:mod:`backup.workflow.chain_activities`, whose docstring lists what
each answers) follow: the writer's lease, the choice of kind, the diff into a stored plan, applying it,
verifying, the restore point, and the diff base's rotation (begin_tag_base and begin_retire_base give
operation answers).

Then a restore's (:mod:`backup.workflow.restore_activities`: the point, the disk made for upload and its
grants, the plan and its batches, the footer, the verifications, the verdict) and retention's
(:mod:`backup.workflow.prune_activities`: whether the run to follow has ended, one disk's prune). Their
begin_* activities give operation answers too.
"""

RESOLVE_SELECTION = "resolve_selection"
RECORD_RUN = "record_run"
BEGIN_SNAPSHOT = "begin_snapshot"
POLL_OPERATION = "poll_operation"
SNAPSHOT_READINESS = "snapshot_readiness"
BEGIN_GRANT_ACCESS = "begin_grant_access"
START_COPY = "start_copy"
COPY_STATUS = "copy_status"
BEGIN_REVOKE_ACCESS = "begin_revoke_access"
RECORD_RESTORE_POINT = "record_restore_point"
BEGIN_DELETE_SNAPSHOT = "begin_delete_snapshot"
SEND_RUN_ALERT = "send_run_alert"
ACQUIRE_WRITER_LEASE = "acquire_writer_lease"
INSPECT_CHAIN = "inspect_chain"
LIST_CHANGES = "list_changes"
APPLY_BATCH = "apply_batch"
SYNC_FOOTER = "sync_footer"
VERIFY_PAGES = "verify_pages"
VERIFY_CONTENT = "verify_content"
SNAPSHOT_BACKUP_BLOB = "snapshot_backup_blob"
FINISH_WRITING = "finish_writing"
BEGIN_TAG_BASE = "begin_tag_base"
BEGIN_RETIRE_BASE = "begin_retire_base"
RUN_FINISHED = "run_finished"
PRUNE_DISK = "prune_disk"
FIND_RESTORE_POINT = "find_restore_point"
RECORD_RESTORE = "record_restore"
BEGIN_CREATE_RESTORE_DISK = "begin_create_restore_disk"
BEGIN_GRANT_DISK_ACCESS = "begin_grant_disk_access"
BEGIN_REVOKE_DISK_ACCESS = "begin_revoke_disk_access"
BEGIN_DELETE_RESTORE_DISK = "begin_delete_restore_disk"
PLAN_RESTORE = "plan_restore"
APPLY_RESTORE_BATCH = "apply_restore_batch"
WRITE_RESTORE_FOOTER = "write_restore_footer"
CHECK_RESTORED_DISK = "check_restored_disk"
VERIFY_RESTORE_SPAN = "verify_restore_span"
VERIFY_RESTORE_SAMPLE = "verify_restore_sample"
RECORD_POINT_VERDICT = "record_point_verdict"
DELETE_RESTORE_PLAN = "delete_restore_plan"
