"""``python -m backup``: the ``diskbackup`` command line."""

from backup.cli import main

raise SystemExit(main())
