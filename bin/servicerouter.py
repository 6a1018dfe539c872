#!/usr/bin/env python3
"""Drop-in replacement for Marathon's bin/servicerouter.py.

Works from a checkout (adds the checkout to sys.path) and after install.
"""

import os
import sys

_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_checkout, "servicerouter")) and _checkout not in sys.path:
    sys.path.insert(0, _checkout)

from servicerouter.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
