"""Finding a Function App's orchestrators, activities and client functions, and calling activities.

The Python worker indexes an app with ``app.get_functions()``, which may be called only once per app
(a second call fails on "duplicate" names) and which a test of ours already uses on ``function_app``.
So the host reads the function builders the decorators left on the app instead
(``app._function_builders``; Blueprints registered on the app add theirs there too).

Names are the host's: an orchestrator or activity is registered under its trigger's ``orchestration`` /
``activity`` name if given, else its function name (``@app.function_name`` or the ``def`` name). Note
that ``context.call_activity(fn)`` sends the ``def`` name, which the host finds only if the two agree.

An activity is called the way the worker calls it: its input JSON text decoded by the SDK's
``ActivityTriggerConverter`` and passed under the trigger's argument name, its return value encoded by
the same converter.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.durable_functions.decorators.metadata import ActivityTrigger, DurableClient, OrchestrationTrigger
from azure.functions.durable_functions import ActivityTriggerConverter
from azure.functions.meta import Datum

__all__ = ["Activity", "FunctionIndex", "TriggerFunction"]


@dataclass(frozen=True)
class Activity:
    """An activity function and the argument name its trigger binds the input to."""

    name: str
    function: Callable[..., Any]
    argument: str

    def call(self, input_json: str | None) -> str:
        """Run the activity on ``input_json`` and return its result as JSON text (the worker's codecs).

        Exceptions from the activity propagate; a coroutine function is run to completion.
        """
        datum = Datum(value=input_json if input_json is not None else "null", type="json")
        value = ActivityTriggerConverter.decode(datum, trigger_metadata=None)
        result = self.function(**{self.argument: value})
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        encoded = ActivityTriggerConverter.encode(result, expected_type=None)
        return str(encoded.value)


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass(frozen=True)
class TriggerFunction:
    """Any function of the app (HTTP, timer, ...) and, if it has one, its durable client argument."""

    name: str
    function: Callable[..., Any]
    client_argument: str | None


@dataclass(frozen=True)
class FunctionIndex:
    """The orchestrators, activities and all functions of one app, by name."""

    orchestrators: dict[str, Callable[[str], Any]]
    activities: dict[str, Activity]
    functions: dict[str, TriggerFunction]

    @classmethod
    def from_app(cls, app: Any) -> FunctionIndex:
        """Index a ``df.DFApp`` (or Blueprint) without calling ``app.get_functions()``."""
        builders = getattr(app, "_function_builders", None)
        if builders is None:
            raise TypeError(
                f"expected a df.DFApp or Blueprint with decorated functions, got {type(app).__name__}"
            )
        orchestrators: dict[str, Callable[[str], Any]] = {}
        activities: dict[str, Activity] = {}
        functions: dict[str, TriggerFunction] = {}
        for builder in builders:
            function = builder._function
            function_name = function.get_function_name()
            trigger = function.get_trigger()
            user_function = function.get_user_function()
            if isinstance(trigger, OrchestrationTrigger):
                name = trigger.orchestration or function_name
                _add_unique(orchestrators, name, user_function, "orchestrator")
            elif isinstance(trigger, ActivityTrigger):
                name = trigger.activity or function_name
                _add_unique(activities, name, Activity(name, user_function, trigger.name), "activity")
            client = next((b.name for b in function.get_bindings() if isinstance(b, DurableClient)), None)
            _add_unique(
                functions, function_name, TriggerFunction(function_name, user_function, client), "function"
            )
        return cls(orchestrators, activities, functions)


def _add_unique(registry: dict[str, Any], name: str, value: Any, kind: str) -> None:
    if name in registry:
        raise ValueError(f"two {kind} functions are named {name!r}; names must be unique in an app")
    registry[name] = value
