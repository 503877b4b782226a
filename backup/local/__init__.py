"""The local runner: what the ``diskbackup`` command line uses and Azure Functions never loads.

- :mod:`~backup.local.cli`: the command line;
- :mod:`~backup.local.runner`: runs the Function App's own orchestrators and activities through
- :mod:`~backup.local.durable_host`: a local stand-in for the Functions host's Durable extension;
- :mod:`~backup.local.progress`: the terminal's progress view.

The Function App (``function_app.py``) never imports this package (a test holds that), and
``.funcignore`` keeps it out of the deployed package.
"""
