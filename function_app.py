"""The Azure Functions entry point: wiring only.

Settings are read and validated here, once, when the worker loads the app: a missing or malformed setting
stops the app with a message naming it. Every function lives in :mod:`backup.workflow.functions`.
"""

from backup.settings import Settings
from backup.workflow.functions import build_app

app = build_app(Settings.from_env())
