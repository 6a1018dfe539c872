"""How long to wait before trying again: Marathon, the event stream, a failed apply.

Its own module: the event stream and the engine's core both back off, and a
one-shot run (the core alone) should not load the event stream to do so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff with "equal jitter": half fixed, half random.

    ``delay(n)`` for the n-th consecutive failure (0-based) lies in
    ``[d/2, d]`` with ``d = min(cap, base * 2**n)``, so retries spread out
    but never collapse to zero.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(failures, 30)))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


__all__ = ["Backoff"]
