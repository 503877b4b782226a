"""The Azure Functions entry point: wiring only.

Settings are read and validated here, once, when the worker loads the app: a missing or malformed setting
stops the app with a message naming it. Every function lives in :mod:`backup.app.blueprint`.
"""

from backup.app.blueprint import build_app
from backup.settings import Settings

app = build_app(Settings.from_env())
