#!/usr/bin/env python3
"""Drop-in replacement for Marathon's bin/servicerouter.py.

A thin shim over ``servicerouter.cli.main``: works from a checkout (the checkout is
put on sys.path) and after ``pip install``.  This file's own directory is
taken off sys.path first, or ``import servicerouter`` would find this script
instead of the package.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
_checkout = os.path.dirname(_here)
if os.path.isfile(os.path.join(_checkout, "servicerouter", "cli", "main.py")):
    sys.path.insert(0, _checkout)

from servicerouter.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
