"""The Functions surface: the blueprint of triggers, orchestrators and activities, and the HTTP routes.

``function_app.py`` builds the app from :func:`backup.app.blueprint.build_app`; nothing here does the
work itself: it validates what arrives and hands it to :mod:`backup.workflow`.
"""
