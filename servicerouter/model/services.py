"""Marathon apps -> immutable services: the pure heart of servicerouter.

``build_model`` takes the decoded ``/v2/apps?embed=apps.tasks`` list and
returns one :class:`Service` per routed service port, each with its servers,
health check and settings, in the order the config is written: sorted by
(app id, bind port), as servicerouter.py did.  It does no I/O: host name
resolution is a function handed in by the caller.

Nothing in an app can stop a sync.  Every app is read on its own; anything
unusable (wrong JSON types, a bad label, an unsafe host) becomes a
:class:`~servicerouter.model.labels.Problem` naming the app, port and reason, and
only that app, port or task is left out.

The work is split in four modules, re-exported here for callers that want
the whole model: :mod:`servicerouter.model.values` (the value types),
:mod:`servicerouter.model.app_fields` (reading one app's JSON),
:mod:`servicerouter.model.derive` (one app -> its ports, claims and servers,
cacheable per app) and :mod:`servicerouter.model.decide` (the decisions
across apps, and ``build_model`` itself).
"""

from __future__ import annotations

from servicerouter.model.app_fields import ip_per_task_ports, read_health_check, service_ports
from servicerouter.model.decide import (
    DEFAULT_IP_PER_TASK_PORTS,
    build_model,
    decide,
    ip_per_task_key,
)
from servicerouter.model.derive import (
    AppDerivation,
    DerivedPort,
    DeriveSettings,
    app_fingerprint,
    derive_app,
)
from servicerouter.model.labels import AppSettings, Problem
from servicerouter.model.values import (
    HealthCheck,
    Model,
    PortCheck,
    Resolver,
    Server,
    Service,
    backend_name,
    clean_name,
    has_group,
    route_order_key,
    server_name,
)

__all__ = [
    "DEFAULT_IP_PER_TASK_PORTS",
    "AppDerivation",
    "AppSettings",
    "DeriveSettings",
    "DerivedPort",
    "HealthCheck",
    "Model",
    "PortCheck",
    "Problem",
    "Resolver",
    "Server",
    "Service",
    "app_fingerprint",
    "backend_name",
    "build_model",
    "clean_name",
    "decide",
    "derive_app",
    "has_group",
    "ip_per_task_key",
    "ip_per_task_ports",
    "read_health_check",
    "route_order_key",
    "server_name",
    "service_ports",
]
