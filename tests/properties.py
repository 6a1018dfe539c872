"""How many examples the property tests draw (one knob for a deep run).

``SR_PROPERTY_EXAMPLES=5000 ./scripts/test tests/model`` explores further than
the default 200; ``QUICK`` is the settings most property tests use with it
(no deadline: two shared cores say more about the neighbours than the code;
no example database: every run starts from the same place).
"""

from __future__ import annotations

import os

from hypothesis import settings

EXAMPLES = int(os.environ.get("SR_PROPERTY_EXAMPLES", "200"))
QUICK = settings(max_examples=EXAMPLES, deadline=None, database=None)
