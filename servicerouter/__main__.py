"""``python -m servicerouter`` runs the command-line tool."""

from servicerouter.cli import main

raise SystemExit(main())
