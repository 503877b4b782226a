"""``function_app.py`` as the Functions host sees it: indexed the way the Python worker indexes it.

The worker (azure-functions-python-worker, v2 programming model) imports ``function_app``, finds the one
``FunctionRegister`` in it, calls ``app.get_functions()`` once, and for each function sends the host its
name and ``get_raw_bindings()`` (the binding JSON the host reads: trigger type, route, methods, auth
level, schedule). Before that it refuses to load a function whose Python parameters do not match its
binding names one to one, or whose annotations the binding's converter does not accept. This module
does the same, then checks every trigger, route, auth level and schedule, and that every activity and
orchestrator name the workflow calls exists as a function with the right trigger.

``app.get_functions()`` may be called only once per app object (a second call finds every name taken),
so each test imports ``function_app`` afresh with the environment it needs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import socket
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.functions import FunctionRegister, meta
from azure.functions.decorators.core import BindingDirection
from azure.functions.decorators.function_app import Function

from backup.app import http_routes, restore_routes, restore_starter, starter
from backup.errors import ConfigurationError
from backup.settings import SETTINGS
from backup.workflow import (
    access,
    activities,
    activity_names,
    chain_activities,
    incremental,
    models,
    orchestrators,
    prune,
    restore,
    restore_activities,
    restore_models,
    retries,
    watch,
)

ROOT = Path(__file__).resolve().parent.parent
SUB = "00000000-0000-0000-0000-0000000000aa"
VALID_ENV = {"BACKUP_SUBSCRIPTION_ID": SUB, "BACKUP_STORAGE_ACCOUNT": "backupacct"}

HTTP_ROUTES = {
    # function: (method, route)
    "start_backup": ("POST", "backups"),
    "get_backup": ("GET", "backups/{instanceId}"),
    "get_backup_report": ("GET", "backups/{instanceId}/report"),
    "list_backups": ("GET", "backups"),
    "list_restore_points": ("GET", "restore-points"),
    "start_restore": ("POST", "restores"),
    "get_restore": ("GET", "restores/{restoreId}"),
    "retention_preview": ("GET", "retention/preview"),
}
NEEDS_DURABLE_CLIENT = {
    "nightly_backup",
    "start_backup",
    "get_backup",
    "get_backup_report",
    "start_restore",
    "get_restore",
}
ORCHESTRATORS = {
    models.RUN_ORCHESTRATOR,
    models.LANE_ORCHESTRATOR,
    models.DISK_ORCHESTRATOR,
    watch.OPERATION_WATCH_ORCHESTRATOR,
    watch.COPY_WATCH_ORCHESTRATOR,
    watch.READINESS_WATCH_ORCHESTRATOR,
    restore_models.RESTORE_ORCHESTRATOR,
    restore_models.RESTORE_TESTS_ORCHESTRATOR,
    restore_models.PRUNE_ORCHESTRATOR,
}
# The modules whose orchestrators call activities and sub-orchestrations.
WORKFLOW = (orchestrators, incremental, watch, access, retries, restore, prune)
ACTIVITIES = {
    value for name, value in vars(activity_names).items() if name.isupper() and isinstance(value, str)
}


# -- importing and indexing, as the worker does --------------------------------------------------------


@dataclass(frozen=True)
class Indexed:
    """One function as the worker reports it to the host."""

    name: str
    bindings: list[dict[str, Any]]  # get_raw_bindings(), parsed: what the host reads

    @property
    def trigger(self) -> dict[str, Any]:
        triggers = [b for b in self.bindings if b["type"].endswith("Trigger")]
        assert len(triggers) == 1, f"{self.name}: {len(triggers)} triggers"
        return triggers[0]

    def of_type(self, binding_type: str) -> list[dict[str, Any]]:
        return [b for b in self.bindings if b["type"] == binding_type]


@pytest.fixture
def import_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import ``function_app`` afresh with exactly the given BACKUP_* settings in the environment."""

    def load(env: dict[str, str]) -> ModuleType:
        for spec in SETTINGS:
            monkeypatch.delenv(spec.name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("function_app", None)
        return importlib.import_module("function_app")

    monkeypatch.syspath_prepend(str(ROOT))
    try:
        yield load
    finally:
        sys.modules.pop("function_app", None)


def index_like_the_worker(module: ModuleType) -> dict[str, Indexed]:
    """The worker's indexing: the one app in the module, ``get_functions()`` once, each function loaded."""
    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    assert len(apps) == 1, f"the worker wants exactly one Function App in function_app.py, found {len(apps)}"
    indexed: dict[str, Indexed] = {}
    for function in apps[0].get_functions():
        name = function.get_function_name()
        assert name is not None and name not in indexed
        assert function.function_script_file == "function_app.py"
        _check_loadable(name, function)
        indexed[name] = Indexed(name, [json.loads(raw) for raw in function.get_raw_bindings()])
    return indexed


def _check_loadable(name: str, function: Function) -> None:
    """What the worker checks before it accepts a function (its ``Registry.add_indexed_function``)."""
    user_function = function.get_user_function()
    params = set(inspect.signature(user_function).parameters)
    hints = typing.get_type_hints(user_function)  # the worker resolves annotations the same way
    bound = {b.name: b for b in function.get_bindings() if b.name != "$return"}
    assert params == set(bound), f"{name}: parameters {sorted(params)} but bindings {sorted(bound)}"
    registry = meta.get_binding_registry()
    for param, binding in bound.items():
        assert binding.direction == BindingDirection.IN.value, f"{name}.{param}: only input bindings here"
        if param not in hints:
            continue
        converter = registry.get(binding.type)
        assert converter is not None, f"{name}.{param}: no converter for {binding.type}"
        pytype = hints[param]
        if pytype in (str, bytes) and not converter.has_implicit_output():
            continue  # the worker treats it as a generic binding, which takes str and bytes
        assert converter.check_input_type_annotation(pytype), (
            f"{name}.{param}: {binding.type} does not accept an argument annotated {pytype!r}"
        )
    returns = [b for b in function.get_bindings() if b.name == "$return"]
    if returns and "return" in hints:
        converter = registry.get(returns[0].type)
        assert converter is not None and converter.check_output_type_annotation(hints["return"]), (
            f"{name}: a {returns[0].type} output does not accept {hints['return']!r}"
        )


# -- what the workflow calls, read from its source -------------------------------------------------------


def _first_arguments(module: ModuleType, method: str, index: int = 0) -> list[ast.expr]:
    """The name argument of every call of ``method`` in ``module``: argument ``index``, but the second
    of the retry helper ``call_activity(context, name, ...)``, which takes the context first."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) > index:
            if isinstance(node.func, ast.Attribute) and node.func.attr == method:
                found.append(node.args[index])
            elif isinstance(node.func, ast.Name) and node.func.id == method:
                takes_context = method == "call_activity" and index == 0 and len(node.args) > 1
                found.append(node.args[1] if takes_context else node.args[index])
    return found


def _resolve(module: ModuleType, node: ast.expr) -> str | None:
    """The name a call's first argument stands for: ``act.X`` or a module-level constant; None if computed."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "act":
        return str(getattr(activity_names, node.attr))
    if isinstance(node, ast.Name):
        value = getattr(module, node.id, None)  # a module-level constant; else a parameter: computed
        return None if value is None else str(value)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def called_names() -> tuple[set[str], set[str]]:
    """Every activity and orchestrator name the workflow and the HTTP API call or hand out to call."""
    called_activities: set[str] = set()
    computed = 0
    for module in WORKFLOW:
        for node in _first_arguments(module, "call_activity"):
            name = _resolve(module, node)
            if name is None:
                computed += 1
            else:
                called_activities.add(name)
        # call_activity_with_retry(name, retry_options, input)
        called_activities.update(
            name
            for node in _first_arguments(module, "call_activity_with_retry")
            if (name := _resolve(module, node))
        )
        # Operations and the copy are started in their watches: run_operation(context, act.X, ...), the
        # access's operate(context, act.X, ...), and Begin(act.X, ...) for the copy.
        for method, index in (("run_operation", 1), ("_operate", 1), ("Begin", 0)):
            for node in _first_arguments(module, method, index):
                name = _resolve(module, node)
                if name is None:
                    computed += 1
                else:
                    called_activities.add(name)
    # Six computed calls: a throttled begin repeated (the activity named in its answer's "retry": one
    # in the backup's waits, one in the restore's), the retry helper calling whichever activity it was
    # given, the watches calling the begin or start they were given, run_operation handing its begin on
    # (Begin(begin, ...)), and the disk's ReadAccess handing its begin to run_operation.
    assert computed == 6
    for module in (activities, chain_activities, restore_activities):
        throttled = [_resolve(module, node) for node in _first_arguments(module, "_throttled")]
        assert throttled and None not in throttled
        called_activities.update(name for name in throttled if name is not None)

    called_orchestrators = {
        name
        for module, method, index in (
            *((module, "call_sub_orchestrator", 0) for module in WORKFLOW),
            (http_routes, "start_new", 0),
            (starter, "start_new", 0),
            (restore_routes, "start_new", 0),
            (restore_starter, "_start_once", 1),  # (client, orchestrator, instance id, input)
        )
        for node in _first_arguments(module, method, index)
        if (name := _resolve(module, node)) is not None
    }
    return called_activities, called_orchestrators


# -- tests ---------------------------------------------------------------------------------------------


def test_every_function_loads_and_is_registered_under_its_name(import_app: Any) -> None:
    functions = index_like_the_worker(import_app(VALID_ENV))
    assert set(functions) == {"nightly_backup", *HTTP_ROUTES, *ORCHESTRATORS, *ACTIVITIES}


def test_timer_uses_the_default_schedule(import_app: Any) -> None:
    timer = index_like_the_worker(import_app(VALID_ENV))["nightly_backup"]
    assert timer.trigger == {
        "type": "timerTrigger",
        "direction": "IN",
        "name": "timer",
        "schedule": "0 0 1 * * *",
        "runOnStartup": False,  # a restart must not start an extra run
        "useMonitor": True,  # the host records the schedule, so a missed occurrence runs late
    }


def test_restore_tests_run_on_their_own_timer_only_when_scheduled(import_app: Any) -> None:
    assert "scheduled_restore_tests" not in index_like_the_worker(import_app(VALID_ENV))
    env = {**VALID_ENV, "BACKUP_VERIFY_SCHEDULE": "0 0 4 * * Sun"}
    functions = index_like_the_worker(import_app(env))
    timer = functions["scheduled_restore_tests"]
    assert timer.trigger == {
        "type": "timerTrigger",
        "direction": "IN",
        "name": "timer",
        "schedule": "0 0 4 * * Sun",
        "runOnStartup": False,
        "useMonitor": True,
    }
    assert timer.of_type("durableClient") == [{"type": "durableClient", "direction": "IN", "name": "client"}]
    assert functions["nightly_backup"].trigger["schedule"] == "0 0 1 * * *"


@pytest.mark.parametrize("schedule", ["0 30 2 * * Mon-Fri", "0 */15 * * * *"])
def test_timer_uses_the_configured_schedule(import_app: Any, schedule: str) -> None:
    timer = index_like_the_worker(import_app({**VALID_ENV, "BACKUP_SCHEDULE": schedule}))["nightly_backup"]
    assert timer.trigger["schedule"] == schedule
    assert timer.trigger["runOnStartup"] is False and timer.trigger["useMonitor"] is True


def test_http_routes_methods_and_auth_level(import_app: Any) -> None:
    functions = index_like_the_worker(import_app(VALID_ENV))
    http = {name: f for name, f in functions.items() if f.trigger["type"] == "httpTrigger"}
    assert set(http) == set(HTTP_ROUTES)
    for name, (method, route) in HTTP_ROUTES.items():
        trigger = http[name].trigger
        assert trigger["route"] == route, name
        assert [m.upper() for m in trigger["methods"]] == [method], name
        assert trigger["authLevel"] == "FUNCTION", name
        assert http[name].of_type("http") == [{"type": "http", "direction": "OUT", "name": "$return"}]
    # The host refuses two functions on the same method and route.
    pairs = [(m.upper(), f.trigger["route"]) for f in http.values() for m in f.trigger["methods"]]
    assert len(pairs) == len(set(pairs))


def test_durable_client_bindings_where_needed_and_only_there(import_app: Any) -> None:
    functions = index_like_the_worker(import_app(VALID_ENV))
    with_client = {name for name, f in functions.items() if f.of_type("durableClient")}
    assert with_client == NEEDS_DURABLE_CLIENT
    for name in NEEDS_DURABLE_CLIENT:
        # No taskHub or connection of its own: the client uses host.json's hub, as the orchestrators do.
        assert functions[name].of_type("durableClient") == [
            {"type": "durableClient", "direction": "IN", "name": "client"}
        ]


def test_every_called_activity_and_orchestrator_exists_with_its_trigger(import_app: Any) -> None:
    functions = index_like_the_worker(import_app(VALID_ENV))
    by_trigger: dict[str, set[str]] = {}
    for name, function in functions.items():
        by_trigger.setdefault(function.trigger["type"], set()).add(name)

    called_activities, called_orchestrators = called_names()
    assert called_activities == ACTIVITIES  # every activity is called, and only those exist
    assert called_orchestrators == ORCHESTRATORS
    assert by_trigger["activityTrigger"] == ACTIVITIES
    assert by_trigger["orchestrationTrigger"] == ORCHESTRATORS
    for name in ACTIVITIES:
        assert functions[name].bindings == [{"type": "activityTrigger", "direction": "IN", "name": "data"}]
    for name in ORCHESTRATORS:
        assert functions[name].bindings == [
            {"type": "orchestrationTrigger", "direction": "IN", "name": "context"}
        ]


def test_import_does_no_network_io(import_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"function_app connected to {address} at import")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert index_like_the_worker(import_app(VALID_ENV))


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"BACKUP_SUBSCRIPTION_ID": ""}, "BACKUP_SUBSCRIPTION_ID"),
        ({"BACKUP_STORAGE_ACCOUNT": "Not_An_Account"}, "BACKUP_STORAGE_ACCOUNT"),
        ({"BACKUP_SCHEDULE": "0 0 1 * *"}, "BACKUP_SCHEDULE"),
        ({"BACKUP_SCHEDULE": "00:05:00"}, "BACKUP_SCHEDULE"),
        ({"BACKUP_MAX_PARALLEL": "0"}, "BACKUP_MAX_PARALLEL"),
        ({"BACKUP_POLL_MAX_SECONDS": "2", "BACKUP_POLL_INITIAL_SECONDS": "5"}, "BACKUP_POLL_MAX_SECONDS"),
        ({"BACKUP_SNAPSHOT_TIMEOUT_MINUTES": "soon"}, "BACKUP_SNAPSHOT_TIMEOUT_MINUTES"),
        ({"BACKUP_TASK_HUB": "no-dashes"}, "BACKUP_TASK_HUB"),
        ({"BACKUP_KEEP_SNAPSHOTS": "perhaps"}, "BACKUP_KEEP_SNAPSHOTS"),
    ],
)
def test_a_bad_setting_stops_the_import_naming_it(
    import_app: Any, override: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        import_app({**VALID_ENV, **override})
    assert caught.value.setting == setting
    assert setting in str(caught.value)
    assert "function_app" not in sys.modules


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host["extensions"]["durableTask"]["hubName"] == "%BACKUP_TASK_HUB%"
    # %BACKUP_TASK_HUB% must resolve even when nobody sets it: the setting has a default.
    task_hub = next(spec for spec in SETTINGS if spec.name == "BACKUP_TASK_HUB")
    assert task_hub.default
