"""Per-app derivation and the cross-app step, as the live engine would cache them.

``derive_app`` reads one app alone; ``decide`` settles bind ports, vhosts and
IP-per-task ports across the derivations without changing them.  Together they
are ``build_model``; a derivation kept from an earlier sync (same fingerprint)
must give the same model as deriving again.
"""

from __future__ import annotations

import copy
import pickle

from benchmarks.generate import generate_state
from servicerouter.model.services import (
    DeriveSettings,
    Server,
    app_fingerprint,
    build_model,
    decide,
    derive_app,
)


def _resolve(host: str) -> str:
    return host


def test_build_model_is_derive_then_decide() -> None:
    apps = generate_state(80, 3, addresses="distinct")["apps"]
    apps.append({"id": "/broken", "tasks": "nope"})
    settings = DeriveSettings(frozenset({"*"}))
    derivations = [derive_app(app, settings, _resolve, n) for n, app in enumerate(apps)]
    kept = copy.deepcopy(derivations)
    model = build_model(apps, ["*"], _resolve)
    assert decide(derivations) == model
    assert decide(derivations) == model, "decide reads the derivations, never changes them"
    assert derivations == kept
    assert [p for p in model.problems if p.app_id == "/broken"]


def test_ip_per_task_ports_are_assigned_without_touching_derivations() -> None:
    app = {"id": "/ipt", "networks": [{"mode": "container"}],
           "container": {"portMappings": [{"containerPort": 8080}]},
           "tasks": [{"id": "t1", "host": "agent", "ipAddresses": [{"ipAddress": "10.1.0.5"}]}]}
    derivation = derive_app(app, DeriveSettings(frozenset({"*"})), _resolve)
    assert derivation.ports[0].service_port is None and derivation.ports[0].auto_port
    first = decide([derivation], ip_per_task_ports=(10050, 10100))
    assert derivation.ports[0].service_port is None
    again = decide([derivation], ip_per_task_ports=(10050, 10100),
                   port_assignments=first.port_assignments)
    assert first.services[0].bind_port == again.services[0].bind_port
    assert 10050 <= first.services[0].bind_port <= 10100
    assert first.services[0].servers == (Server("10.1.0.5", "10.1.0.5", 8080),)


def test_an_older_app_keeps_its_vhost_whichever_is_derived_first() -> None:
    old = {"id": "/old", "ports": [10001], "versionInfo": {"lastConfigChangeAt":
                                                           "2020-01-01T00:00:00.000Z"},
           "labels": {"HAPROXY_0_VHOST": "a.example.com"},
           "tasks": [{"id": "o", "host": "10.0.0.1", "ports": [31000]}]}
    new = dict(old, id="/new", ports=[10002],
               versionInfo={"lastConfigChangeAt": "2024-01-01T00:00:00.000Z"})
    settings = DeriveSettings(frozenset({"*"}))
    for order in ((old, new), (new, old)):
        model = decide([derive_app(a, settings, _resolve) for a in order])
        owner = {s.app_id: s.vhosts for s in model.services}
        assert owner["/old"] == ("a.example.com",) and owner["/new"] == ()


def test_fingerprint_follows_the_app_and_the_settings() -> None:
    app = generate_state(3, 2)["apps"][0]
    settings = DeriveSettings(frozenset({"*"}))
    key = app_fingerprint(app, settings)
    assert app_fingerprint(copy.deepcopy(app), settings) == key
    assert app_fingerprint(dict(reversed(list(app.items()))), settings) == key
    assert app_fingerprint(app, DeriveSettings(frozenset({"*"}), strict_mode=True)) != key
    assert app_fingerprint(app, DeriveSettings(frozenset({"external"}))) != key
    changed = copy.deepcopy(app)
    changed["tasks"][0]["host"] = "10.99.0.1"
    assert app_fingerprint(changed, settings) != key


def test_server_is_an_immutable_value_ignoring_the_task_id() -> None:
    server = Server("10.0.0.1", "10.0.0.1", 31000, "task-a")
    same_place = Server("10.0.0.1", "10.0.0.1", 31000, "task-b")
    assert server == same_place and hash(server) == hash(same_place)
    assert server != Server("10.0.0.1", "10.0.0.1", 31000, "task-a", draining=True)
    assert server != ("10.0.0.1", "10.0.0.1", 31000, "task-a", False)
    assert (server.host, server.ipv4, server.port, server.task_id, server.draining) == (
        "10.0.0.1", "10.0.0.1", 31000, "task-a", False)
    assert server.name == "10_0_0_1_31000"
    assert pickle.loads(pickle.dumps(server)).task_id == "task-a"
    try:
        server.port = 1  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("a server must not change")
