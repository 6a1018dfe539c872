"""``python -m servicerouter`` runs the command-line tool."""

import gc

# Paused before the imports below: see servicerouter.cli.main.main, which restores it.
_collector_was_on = gc.isenabled()
gc.disable()

from servicerouter.cli.main import main  # noqa: E402 - after the pause, on purpose

raise SystemExit(main(collector_was_on=_collector_was_on))
