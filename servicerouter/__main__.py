"""``python -m servicerouter`` runs the command-line tool."""

from servicerouter.cli.main import main

raise SystemExit(main())
