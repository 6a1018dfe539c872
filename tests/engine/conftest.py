"""Fixtures of the engine tests: the live servicerouter process and the fake-HAProxy rig.

Defined in helper modules so tests of other packages can import them too.
"""

from tests.engine.live_rig import rig_factory  # noqa: F401 - a fixture, shared
from tests.engine.live_router import start_router, two_vhost_apps  # noqa: F401 - fixtures
