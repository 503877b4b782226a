"""``python -m backup``: the ``diskbackup`` command line."""

from backup.local.cli import main

raise SystemExit(main())
