"""Starting a run: what the HTTP route, the nightly timer and the command line share.

Each of the three turns its own kind of request (a JSON body, a timer firing, command-line flags) into
one :class:`~backup.workflow.models.RunInput` through the functions here, so a selection, the run's
options and its instance id mean the same thing whichever door a run came in by. Pure functions of
settings and values: no I/O, nothing Durable.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from backup.azure.names import validate_tag_name, validate_tag_value
from backup.azure.resource_id import parse_disk_id
from backup.errors import InvalidInputError
from backup.settings import Settings, parse_resource_group_name
from backup.workflow.models import ChainOptions, RunInput, RunOptions, Selection, Trigger

#: At most this many disk IDs in one explicit selection.
MAX_DISK_IDS = 1000


def configured_selection(settings: Settings) -> Selection:
    """The selection the settings configure (exactly one kind; the tag default when none is set)."""
    if settings.select_disk_ids:
        return Selection(kind="diskIds", disk_ids=settings.select_disk_ids)
    if settings.select_resource_group:
        return Selection(kind="resourceGroup", resource_group=settings.select_resource_group)
    assert settings.select_tag is not None  # Settings.from_env guarantees one selector
    return Selection(kind="tag", tag_name=settings.select_tag[0], tag_value=settings.select_tag[1])


def disk_ids_selection(values: Sequence[object], field: str = "diskIds") -> Selection:
    """An explicit list of disk resource IDs: each valid, none repeated, at most :data:`MAX_DISK_IDS`.

    IDs are kept in their canonical form (:func:`backup.azure.resource_id.parse_disk_id`); errors name
    the item (``diskIds[2]``).
    """
    if not values:
        raise InvalidInputError(field, "must be a non-empty list of disk resource IDs")
    if len(values) > MAX_DISK_IDS:
        raise InvalidInputError(field, f"lists {len(values)} disks; at most {MAX_DISK_IDS} per run")
    ids: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(values):
        where = f"{field}[{index}]"
        if not isinstance(item, str):
            raise InvalidInputError(where, "must be a string")
        disk = parse_disk_id(item, where)
        if disk.key in seen:
            raise InvalidInputError(where, "repeats a disk listed earlier")
        seen.add(disk.key)
        ids.append(str(disk))
    return Selection(kind="diskIds", disk_ids=tuple(ids))


def tag_selection(name: object, value: object, field: str = "tag") -> Selection:
    """Every disk carrying tag ``name`` with ``value`` (Azure's tag rules, :mod:`backup.azure.names`).

    Name and value are checked as given, never joined and split again. A name holding ``=`` is refused:
    Azure allows one, but the selection could not be written as ``BACKUP_SELECT_TAG`` or ``--tag``
    (``name=value``), so the three doors would disagree.
    """
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidInputError(field, "name and value must be strings")
    try:
        tag_name = validate_tag_name(name)
        tag_value = validate_tag_value(value)
    except InvalidInputError as exc:
        raise InvalidInputError(field, f"{exc.field}: {exc.problem}") from None
    if "=" in tag_name:
        raise InvalidInputError(field, f"tag name {tag_name[:80]!r} may not contain '='")
    return Selection(kind="tag", tag_name=tag_name, tag_value=tag_value)


def resource_group_selection(name: object, field: str = "resourceGroup") -> Selection:
    """Every disk of a resource group of the configured subscription."""
    if not isinstance(name, str):
        raise InvalidInputError(field, "must be a string")
    try:
        group = parse_resource_group_name(name)
    except InvalidInputError as exc:
        raise InvalidInputError(field, exc.problem) from None
    return Selection(kind="resourceGroup", resource_group=group)


def run_options(
    settings: Settings, *, keep_snapshot: bool | None = None, force_full: bool = False
) -> RunOptions:
    """The run's options from settings, with a request's overrides (``force_full``: kind ``full``)."""
    return RunOptions(
        container=settings.container,
        keep_snapshot=settings.keep_snapshots if keep_snapshot is None else keep_snapshot,
        max_parallel=settings.max_parallel,
        poll_initial_seconds=settings.poll_initial_seconds,
        poll_max_seconds=settings.poll_max_seconds,
        snapshot_timeout_minutes=settings.snapshot_timeout_minutes,
        copy_timeout_minutes=settings.copy_timeout_minutes,
        sas_minutes=settings.sas_minutes,
        snapshot_copy_timeout_minutes=settings.snapshot_copy_timeout_minutes,
        force_full=force_full,
        chain=ChainOptions(
            full_copy_percent=settings.full_copy_percent,
            verify_sample_mib=settings.verify_sample_mib,
            writes_per_blob=settings.writes_per_blob,
        ),
    )


def run_input(
    settings: Settings,
    trigger: Trigger,
    selection: Selection | None = None,
    *,
    keep_snapshot: bool | None = None,
    force_full: bool = False,
) -> RunInput:
    """A run's input: the given selection (or the configured one) and the options from settings."""
    return RunInput(
        trigger=trigger,
        selection=selection if selection is not None else configured_selection(settings),
        options=run_options(settings, keep_snapshot=keep_snapshot, force_full=force_full),
    )


def new_run_id(now: datetime) -> str:
    """An on-demand run's instance id: sortable by time, unique by a random suffix."""
    return f"manual-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
