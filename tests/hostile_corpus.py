"""A corpus of hostile Marathon input: what a tenant, a broken Marathon or the network may send.

Every case is one Marathon state: a well-behaved ``/bystander`` app that must always be
routed, plus the hostile app(s) of the case. A case says exactly which hostile services
must still be routed (by app id and bind port), which must be skipped with a log line
naming the app (and port index) and matching a reason, and which text must never reach
the config. ``tests/test_hostile_corpus.py`` runs each case through a real sync and checks
the written config with ``haproxy -c``.

Cases are generated (every hostile value in every setting, as label and as env var) and
hand-written (wrong JSON types, missing fields, odd ids, ports, conflicts, task hosts,
task counts). ``python -m tests.hostile_corpus`` prints the corpus size per category.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from tests.hostile_blocks import (
    BYSTANDER_PORT,
    CERTS,
    HOSTILE_ID,
    HOSTILE_PORTS,
    MARKER,
    MIDDLE,
    NEW,
    OLD,
    UNRESOLVABLE,
    Case,
    DocumentCase,
    Skip,
    _Builder,
    app,
    both_ports,
    second_port,
    with_tasks,
)
from tests.hostile_labels import _label_cases

# --------------------------------------------------------------------------- files, addresses

def _host_cases(b: _Builder) -> None:
    """Labels naming things on the router's host: certificate files, bind addresses."""
    for name, path in (("good", f"{CERTS}/good.pem"),
                       ("key-beside", f"{CERTS}/split.pem"), ("directory", f"{CERTS}/dir")):
        b.add(f"ssl-cert-{name}", "host:certificate",
              [app(labels={"HAPROXY_0_SSL_CERT": path})], both_ports())
    for name, path, reason in (
        ("missing", f"{CERTS}/missing.pem", r"missing\.pem: No such file"),
        ("garbage", f"{CERTS}/garbage.pem", r"garbage\.pem: no certificate found"),
        ("key-mismatch", f"{CERTS}/mismatch.pem", r"mismatch\.pem: private key does not match"),
        ("expired", f"{CERTS}/expired.pem", r"expired\.pem: certificate expired on"),
        ("passwd", "/etc/passwd", r"passwd: no certificate found"),
        ("dev-null", "/dev/null", r"null: no certificate found"),
        ("missing-dir", f"{CERTS}/nodir/", r"nodir/: No such file"),
    ):
        b.add(f"ssl-cert-{name}", "host:certificate",
              [app(labels={"HAPROXY_0_SSL_CERT": path})], second_port(),
              Skip(HOSTILE_ID, rf"certificate .*{reason}", 0))
    for name, addr in (("any", "0.0.0.0"), ("name", "localhost")):
        b.add(f"bind-addr-{name}", "host:bind-address",
              [app(labels={"HAPROXY_0_BIND_ADDR": addr})], both_ports())
    for name, addr, reason in (
        ("foreign", "192.0.2.77", r"bind address 192\.0\.2\.77 is not an address of this host"),
        ("unresolvable", "nowhere.invalid", r"bind address nowhere\.invalid does not resolve"),
    ):
        b.add(f"bind-addr-{name}", "host:bind-address",
              [app(labels={"HAPROXY_0_BIND_ADDR": addr})], second_port(),
              Skip(HOSTILE_ID, reason, 0))
    # A port skipped for its certificate does not keep its bind port from others.
    b.add("bad-cert-does-not-hold-port", "host:certificate",
          [app(changed=OLD, labels={"HAPROXY_0_SSL_CERT": f"{CERTS}/missing.pem"}),
           app("/aaa-newcomer", ports=[HOSTILE_PORTS[0]], task_ports=1, changed=NEW)],
          frozenset({("/aaa-newcomer", HOSTILE_PORTS[0]), (HOSTILE_ID, HOSTILE_PORTS[1])}),
          Skip(HOSTILE_ID, r"missing\.pem", 0))


# --------------------------------------------------------------------------- ports

def _port_cases(b: _Builder) -> None:
    for name, value in (("zero", 0), ("negative", -1), ("too-big", 65536), ("huge", 10**30),
                        ("string", "11000"), ("float", 11000.5), ("bool", True), ("null", None),
                        ("list", [11000]), ("object", {"port": 11000})):
        b.add(f"service-port-{name}", "port:service", [app(ports=[value, HOSTILE_PORTS[1]])],
              second_port(), Skip(HOSTILE_ID, r"service port .* is not a port number", 0))
    for name, value in (("zero", 0), ("negative", -80), ("too-big", 70000), ("huge", "9" * 400),
                        ("float", "12000.0"), ("hex", "0x2ee0"), ("plus-minus", "+-1")):
        b.add(f"bind-port-label-{name}", "port:label",
              [app(labels={"HAPROXY_0_PORT": str(value)})], second_port(),
              Skip(HOSTILE_ID, r"HAPROXY_0_PORT.*(port out of range|not an integer port)", 0))
    b.add("service-ports-duplicate", "port:duplicate", [app(ports=[11000, 11000])],
          frozenset({(HOSTILE_ID, 11000)}), Skip(HOSTILE_ID, r"listed twice", 1))
    b.add("service-ports-not-a-list", "port:type", [app(ports="11000,11001")], frozenset(),
          Skip(HOSTILE_ID, r"'ports' is not a list"))
    b.add("service-ports-object", "port:type", [app(ports={"0": 11000})], frozenset(),
          Skip(HOSTILE_ID, r"'ports' is not a list"))
    for shared in (80, 443, 81, 9090):
        b.add(f"bind-port-shared-{shared}", "conflict:bind-port",
              [app(labels={"HAPROXY_0_PORT": str(shared)})], second_port(),
              Skip(HOSTILE_ID, rf"bind port {shared} is used by a shared frontend", 0))
        b.add(f"service-port-shared-{shared}", "conflict:bind-port",
              [app(ports=[shared, HOSTILE_PORTS[1]])], second_port(),
              Skip(HOSTILE_ID, rf"bind port {shared} is used by a shared frontend", 0))
    # Two ports of one app landing on the same bind port: the first keeps it.
    b.add("bind-port-label-twice-in-app", "conflict:bind-port",
          [app(labels={"HAPROXY_0_PORT": "12000", "HAPROXY_1_PORT": "12000"})],
          frozenset({(HOSTILE_ID, 12000)}),
          Skip(HOSTILE_ID, r"bind port 12000 is already routed", 1))
    # Shapes: portDefinitions, docker portMappings, 1.5 container portMappings.
    b.add("port-definitions-bad-entry", "port:service",
          [app(ports=None, portDefinitions=[{"port": "x"}, {"port": 11001}])], second_port(),
          Skip(HOSTILE_ID, r"service port 'x' is not a port number", 0))
    b.add("port-definitions-not-objects", "port:service",
          [app(ports=None, portDefinitions=[11000, {"port": 11001}])], second_port(),
          Skip(HOSTILE_ID, r"service port None is not a port number", 0))
    b.add("port-definitions-object", "app:type",
          [app(ports=None, portDefinitions={"port": 11000})], frozenset(),
          Skip(HOSTILE_ID, r"'portDefinitions' is not a list"))
    b.add("docker-port-mappings-bad-entry", "port:service",
          [app(ports=None, container={"docker": {"portMappings": [
              {"servicePort": -3}, {"servicePort": 11001}]}})], second_port(),
          Skip(HOSTILE_ID, r"service port -3 is not a port number", 0))
    b.add("container-port-mappings-string", "port:service",
          [app(ports=None, container={"portMappings": [
              {"servicePort": "11000"}, {"servicePort": 11001}]})], second_port(),
          Skip(HOSTILE_ID, r"service port '11000' is not a port number", 0))
    b.add("container-port-mappings-object", "app:type",
          [app(ports=None, container={"portMappings": {"servicePort": 11000}})], frozenset(),
          Skip(HOSTILE_ID, r"'portMappings' is not a list"))
    b.add("container-docker-string", "app:type",
          [app(ports=None, container={"docker": "nginx"})], frozenset(),
          Skip(HOSTILE_ID, r"'container.docker' is not a JSON object"))
    b.add("container-list", "app:type", [app(container=[1])], frozenset(),
          Skip(HOSTILE_ID, r"'container' is not a JSON object"))
    b.add("no-ports-at-all", "missing", [app(ports=None, n_tasks=1)], frozenset())
    b.add("empty-ports", "missing", [app(ports=[])], frozenset())


# --------------------------------------------------------------------------- conflicts

def _conflict_cases(b: _Builder) -> None:
    newcomer = "/aaa-newcomer"  # sorts before /hostile: ids alone would hand it the route
    # Same service port: the oldest configuration keeps it, whatever the ids.
    b.add("bind-port-newcomer-sorts-first", "conflict:bind-port",
          [app(changed=OLD), app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=NEW)],
          both_ports(), Skip(newcomer, rf"bind port {HOSTILE_PORTS[0]} is already routed", 0))
    b.add("bind-port-oldest-sorts-first", "conflict:bind-port",
          [app(changed=NEW), app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=OLD)],
          frozenset({(newcomer, HOSTILE_PORTS[0]), (HOSTILE_ID, HOSTILE_PORTS[1])}),
          Skip(HOSTILE_ID, rf"bind port {HOSTILE_PORTS[0]} is already routed", 0))
    b.add("bind-port-by-version", "conflict:bind-port",
          [app(changed=None, version=OLD),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None, version=NEW)],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    b.add("bind-port-by-id", "conflict:bind-port",
          [app(changed=None), app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None)],
          frozenset({(newcomer, HOSTILE_PORTS[0]), (HOSTILE_ID, HOSTILE_PORTS[1])}),
          Skip(HOSTILE_ID, r"is already routed", 0))
    b.add("bind-port-label-steals-bystander", "conflict:bind-port",
          [app(labels={"HAPROXY_0_PORT": str(BYSTANDER_PORT)})], second_port(),
          Skip(HOSTILE_ID, rf"bind port {BYSTANDER_PORT} is already routed", 0))
    b.add("bind-port-garbage-timestamp", "conflict:bind-port",
          [app(changed=MIDDLE),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None,
               versionInfo={"lastConfigChangeAt": "!"}, version="!")],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    b.add("bind-port-timestamp-wrong-type", "conflict:bind-port",
          [app(changed=MIDDLE),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None,
               versionInfo={"lastConfigChangeAt": 0}, version=["0"])],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    b.add("version-info-string", "conflict:bind-port",
          [app(changed=MIDDLE),
           app(newcomer, ports=[HOSTILE_PORTS[0]], task_ports=1, changed=None, versionInfo="0000")],
          both_ports(), Skip(newcomer, r"is already routed", 0))
    # Same vhost: the oldest configuration keeps it; the newcomer keeps its own port
    # (frontend) but never gets the host's traffic, and is reported.
    vhost = {"HAPROXY_0_VHOST": "shared.example.com"}
    conflict = r"vhost conflict: .*older app"
    for name, newcomer_age, hostile_age in (("newcomer-sorts-first", NEW, OLD),
                                            ("oldest-sorts-first", OLD, NEW)):
        loser = newcomer if newcomer_age == NEW else HOSTILE_ID
        b.add(f"vhost-{name}", "conflict:vhost",
              [app(changed=hostile_age, labels=vhost),
               app(newcomer, ports=[12000], task_ports=1, changed=newcomer_age, labels=vhost)],
              both_ports() | {(newcomer, 12000)},
              Skip(loser, rf"shared\.example\.com.*{conflict}", 0),
              no_vhost=((loser, "shared.example.com"),))
    for name, hosts, owner_host, newcomer_id in (
        ("steals-bystander", "bystander.example.com", "bystander.example.com", HOSTILE_ID),
        ("steals-bystander-other-case", "BYSTANDER.example.com", "bystander.example.com",
         HOSTILE_ID),
        ("steals-bystander-acl-name", "bystander_example.com", "bystander.example.com",
         HOSTILE_ID),
        ("steals-bystander-acl-name-sorts-first", "bystander_example.com",
         "bystander.example.com", "/aaa-newcomer"),
        ("steals-bystander-wildcard-acl-name", "_.example.com", "*.example.com", HOSTILE_ID),
        ("steals-one-of-several", "mine.example.com,bystander.example.com",
         "bystander.example.com", HOSTILE_ID),
    ):
        apps = [app(newcomer_id, changed=NEW, labels={"HAPROXY_0_VHOST": hosts})]
        if owner_host.startswith("*"):
            apps.append(app("/wild", ports=[13000], task_ports=1, changed=OLD,
                            labels={"HAPROXY_0_VHOST": owner_host}))
        stolen = hosts.split(",")[-1]
        b.add(f"vhost-{name}", "conflict:vhost", apps,
              both_ports(newcomer_id) | ({("/wild", 13000)} if owner_host.startswith("*")
                                         else set()),
              Skip(newcomer_id, rf"{re.escape(stolen)}.*{conflict}", 0),
              no_vhost=((newcomer_id, owner_host), (newcomer_id, stolen)))
    # PATH=/ is the same route as no path: a conflict decided by age, never a takeover.
    # So is a list of prefixes holding '/'.
    for name, newcomer_id, path in (
            ("root-path", HOSTILE_ID, "/"), ("root-path-sorts-first", newcomer, "/"),
            ("root-among-paths", HOSTILE_ID, "-i /api /"),
            ("root-among-paths-sorts-first", newcomer, "/api / /x")):
        b.add(f"vhost-steals-bystander-{name}", "conflict:vhost",
              [app(newcomer_id, changed=NEW, labels={"HAPROXY_0_VHOST": "bystander.example.com",
                                                     "HAPROXY_0_PATH": path})],
              both_ports(newcomer_id),
              Skip(newcomer_id, rf"bystander\.example\.com.*{conflict}", 0),
              no_vhost=((newcomer_id, "bystander.example.com"),))
    # A heavy wildcard is no conflict, and still ranks after the exact host it covers.
    b.add("vhost-wildcard-heavier-than-exact", "conflict:vhost",
          [app(changed=NEW, labels={"HAPROXY_0_VHOST": "*.example.com",
                                    "HAPROXY_0_BACKEND_WEIGHT": "1000000"})],
          both_ports(), no_vhost=((HOSTILE_ID, "bystander.example.com"),))
    b.add("vhost-same-app-two-ports", "conflict:vhost",
          [app(labels={"HAPROXY_0_VHOST": "twice.example.com",
                       "HAPROXY_1_VHOST": "twice.example.com"})],
          both_ports(), Skip(HOSTILE_ID, r"twice\.example\.com.*vhost conflict", 1))
    b.add("vhost-colliding-hosts-one-app", "label:valid",
          [app(labels={"HAPROXY_0_VHOST": "c.example.com,c_example.com"})], both_ports())
    b.add("app-id-acl-collision", "conflict:app-id",
          [app("/a/b", ports=[11000], changed=OLD, labels={"HAPROXY_0_MODE": "http"}),
           app("/a.b", ports=[11001], changed=NEW, labels={"HAPROXY_0_MODE": "http"})],
          frozenset({("/a/b", 11000), ("/a.b", 11001)}))


# --------------------------------------------------------------------------- app fields

def _app_cases(b: _Builder) -> None:
    for name, value in (("number", 42), ("string", "app"), ("null", None), ("list", [1]),
                        ("true", True)):
        b.add(f"app-is-{name}", "app:type", [value], frozenset(),
              Skip("apps[1]", r"app is not a JSON object"))
    for name, value in (("number", 7), ("null", None), ("list", ["/x"]), ("object", {"a": 1}),
                        ("empty", ""), ("no-slash", "hostile"), ("root", "/"),
                        ("trailing-slash", "/hostile/"), ("space", "/evil app"),
                        ("newline", "/evil\nbind :1"), ("nul", "/evil\x00"), ("hash", "/evil#x"),
                        ("brace", "/{evil}"), ("quote", '/evil"'), ("non-ascii", "/évil"),
                        ("colon", "/evil:x"), ("backslash", "/evil\\x"),
                        ("percent", "/evil%[src]"), ("double-slash", "/evil//x"),
                        ("huge", "/" + "e" * 100_000), ("too-long", "/" + "e" * 1025)):
        bad = app(value if isinstance(value, str) else HOSTILE_ID)
        if not isinstance(value, str):
            bad["id"] = value
        named = value[:40] if isinstance(value, str) and value else "apps[1]"
        needle = "apps[1]" if not isinstance(value, str) or not value else repr(named)[1:-1]
        b.add(f"app-id-{name}", "app:id", [bad], frozenset(),
              Skip(needle, r"app id"), markers=(MARKER,))
    b.add("app-id-missing", "app:id", [{k: v for k, v in app().items() if k != "id"}],
          frozenset(), Skip("apps[1]", r"app id"))
    for name, value in (("dots", "/a..b"), ("dash", "/-"), ("dot", "/."), ("dotdot", "/.."),
                        ("underscore", "/_x"), ("upper", "/UPPER"), ("digits", "/1/2/3"),
                        ("deep", "/a" * 50), ("long", "/" + "x" * 1000)):
        b.add(f"app-id-odd-{name}", "app:id-valid", [app(value)], both_ports(value))
    for field_name, value, reason in (
        ("labels", ["HAPROXY_0_VHOST=x"], r"labels'? is not a JSON object"),
        ("labels", "HAPROXY_0_VHOST=x", r"labels'? is not a JSON object"),
        ("env", ["A=b"], r"env'? is not a JSON object"),
        ("env", 5, r"env'? is not a JSON object"),
        ("tasks", {"id": "t"}, r"'tasks' is not a list"),
        ("tasks", "t", r"'tasks' is not a list"),
        ("healthChecks", {"protocol": "HTTP"}, r"healthChecks is not a list"),
        ("healthChecks", "HTTP", r"healthChecks is not a list"),
    ):
        skips = (Skip(HOSTILE_ID, reason),) if field_name != "healthChecks" else tuple(
            Skip(HOSTILE_ID, reason, i) for i in range(2))
        b.add(f"{field_name}-is-{type(value).__name__}", "app:type",
              [app(**{field_name: value})], frozenset(), *skips)
    for name, fields in (("labels-null", {"labels": None}), ("env-null", {"env": None}),
                         ("tasks-null", {"tasks": None}), ("health-null", {"healthChecks": None}),
                         ("version-number", {"version": 5}), ("unknown-fields", {"x": [{}]})):
        routed = frozenset() if name == "tasks-null" else both_ports()
        b.add(f"{name}", "app:type-tolerated", [app(**fields)], routed)
    # Health checks: the port whose check is malformed is skipped, the other stays.
    for name, check, reason in (
        ("protocol-number", {"portIndex": 0, "protocol": 5}, r"protocol"),
        ("protocol-space", {"portIndex": 0, "protocol": "HTTP evil"}, r"protocol"),
        ("path-newline", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\nbind :1"}, r"path"),
        ("path-space", {"portIndex": 0, "protocol": "HTTP", "path": "/evil x"}, r"path"),
        ("path-hash", {"portIndex": 0, "protocol": "HTTP", "path": "/evil#x"}, r"path"),
        ("path-relative", {"portIndex": 0, "protocol": "HTTP", "path": "evil"}, r"path"),
        ("path-number", {"portIndex": 0, "protocol": "HTTP", "path": 5}, r"path"),
        # Quotes: HAProxy sees an unmatched quote and refuses the whole config.
        ("path-single-quote", {"portIndex": 0, "protocol": "HTTP", "path": "/evil'x"},
         r"health check path .*not a safe URL path"),
        ("path-double-quote", {"portIndex": 0, "protocol": "HTTP", "path": '/evil"x'},
         r"health check path .*not a safe URL path"),
        ("path-quoted-directive", {"portIndex": 0, "protocol": "HTTP",
                                   "path": "/evil' 'x\n  bind :1"}, r"health check path"),
        # A backslash is an escape: '\x23' would reach the check as '#'.
        ("path-backslash", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\\x23"},
         r"health check path .*not a safe URL path"),
        ("path-brace", {"portIndex": 0, "protocol": "HTTP", "path": "/evil{x}"},
         r"health check path .*not a safe URL path"),
        ("path-cr", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\r"},
         r"health check path .*not a safe URL path"),
        ("path-nul", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\x00"},
         r"health check path .*not a safe URL path"),
        ("path-tab", {"portIndex": 0, "protocol": "HTTP", "path": "/evil\tx"},
         r"health check path .*not a safe URL path"),
        ("path-non-ascii", {"portIndex": 0, "protocol": "HTTP", "path": "/évil"},
         r"health check path .*not a safe URL path"),
        ("path-120kB", {"portIndex": 0, "protocol": "HTTP", "path": "/" + MARKER * 30_000},
         r"health check path is 120001 characters long"),
        ("path-too-long", {"portIndex": 0, "protocol": "HTTP", "path": "/" + "e" * 1024},
         r"health check path is 1025 characters long"),
        ("timeout-string", {"portIndex": 0, "timeoutSeconds": "20"}, r"timeoutSeconds"),
        ("timeout-negative", {"portIndex": 0, "timeoutSeconds": -1}, r"timeoutSeconds"),
        ("interval-float", {"portIndex": 0, "intervalSeconds": 1.5}, r"intervalSeconds"),
        ("failures-huge", {"portIndex": 0, "maxConsecutiveFailures": 10**20},
         r"maxConsecutiveFailures"),
        ("grace-list", {"portIndex": 0, "gracePeriodSeconds": [1]}, r"gracePeriodSeconds"),
    ):
        b.add(f"health-check-{name}", "app:health-check",
              [app(healthChecks=[check])], second_port(),
              Skip(HOSTILE_ID, reason, 0), markers=(MARKER,))
    # Unusual but safe paths: written as they are ('$' and ';' are literal in HAProxy 2.6).
    for name, path in (("dollar", "/health$x"), ("env-like", "/h/$HOME"), ("semicolon", "/h;v=1"),
                       ("query", "/h?a=1&b=(2)*!"), ("longest", "/" + "e" * 1023)):
        b.add(f"health-check-path-valid-{name}", "app:health-check-valid",
              [app(healthChecks=[{"portIndex": 0, "protocol": "HTTP", "path": path}])],
              both_ports())
    for name, checks in (("entry-not-object", ["HTTP"]),
                         ("port-index-string", [{"portIndex": "0", "protocol": "HTTP"}]),
                         ("port-index-out-of-range", [{"portIndex": 7, "protocol": "HTTP"}]),
                         ("ignore-1xx-string", [{"portIndex": 0, "ignoreHttp1xx": "yes"}]),
                         ("command", [{"portIndex": 0, "protocol": "COMMAND",
                                       "command": {"value": "evil\nx"}}])):
        b.add(f"health-check-{name}", "app:health-check-tolerated",
              [app(healthChecks=checks)], both_ports(), markers=(MARKER,))


# --------------------------------------------------------------------------- tasks

def _task_cases(b: _Builder) -> None:
    good = {"id": "hostile.good", "host": "10.0.1.9", "ports": [31000, 31001]}

    def with_task(task: Any) -> dict[str, Any]:
        return with_tasks(app(), [copy.deepcopy(good), task])

    for name, host, reason in (
        ("empty", "", r"has no host"),
        ("null", None, r"has no host"),
        ("number", 10, r"is not a host name"),
        ("list", ["10.0.0.1"], r"is not a host name"),
        ("space", "evil host", r"is not a host name"),
        ("newline", "evil\nbind :1", r"is not a host name"),
        ("nul", "evil\x00", r"is not a host name"),
        ("hash", "evil#x", r"is not a host name"),
        ("brace", "{evil}", r"is not a host name"),
        ("non-ascii", "évil.test", r"is not a host name"),
        ("huge", "e" * 100_000, r"is not a host name"),
        ("unresolvable", UNRESOLVABLE, r"could not resolve"),
    ):
        task = {"id": f"task-{name}", "host": host, "ports": [31002, 31003]}
        b.add(f"task-host-{name}", "task:host", [with_task(task)], both_ports(),
              Skip(HOSTILE_ID, reason), markers=(MARKER,))
    b.add("task-host-missing", "task:host",
          [with_task({"id": "task-missing", "ports": [31002, 31003]})], both_ports(),
          Skip(HOSTILE_ID, r"has no host"))
    b.add("task-host-resolvable-name", "task:host-valid",
          [with_task({"id": "task-name", "host": "node-1.test", "ports": [31002, 31003]})],
          both_ports())
    b.add("only-task-unresolvable", "task:host",
          [with_tasks(app(), [{"id": "t", "host": UNRESOLVABLE, "ports": [31000, 31001]}])],
          both_ports(), Skip(HOSTILE_ID, r"could not resolve"))
    for name, ports, reason, index in (
        ("string", "31000", r"ports is not a list", None),
        ("object", {"0": 31000}, r"ports is not a list", None),
        ("entry-string", ["31000", 31001], r"port '31000' is not a port number", 0),
        ("entry-negative", [-1, 31001], r"port -1 is not a port number", 0),
        ("entry-zero", [0, 31001], r"port 0 is not a port number", 0),
        ("entry-too-big", [31000, 65536], r"port 65536 is not a port number", 1),
        ("entry-null", [None, 31001], r"port None is not a port number", 0),
        ("entry-bool", [True, 31001], r"port True is not a port number", 0),
    ):
        task = {"id": f"task-{name}", "host": "10.0.1.8", "ports": ports}
        b.add(f"task-ports-{name}", "task:ports", [with_task(task)], both_ports(),
              Skip(HOSTILE_ID, reason, index))
    b.add("task-ports-fewer-than-service-ports", "task:ports-tolerated",
          [with_task({"id": "short", "host": "10.0.1.8", "ports": [31002]})], both_ports())
    b.add("task-ports-more-than-service-ports", "task:ports-tolerated",
          [with_task({"id": "long", "host": "10.0.1.8", "ports": [31002, 31003, 31004]})],
          both_ports())
    for name, task in (("number", 5), ("string", "task"), ("null", None), ("list", [1])):
        b.add(f"task-is-{name}", "task:type", [with_task(task)], both_ports(),
              Skip(HOSTILE_ID, r"task is not a JSON object"))
    b.add("task-id-odd", "task:tolerated",
          [with_task({"id": {"x": "evil\n"}, "host": "10.0.1.8", "ports": [31002, 31003]})],
          both_ports(), markers=(MARKER,))
    b.add("task-duplicate-endpoint", "task:tolerated",
          [with_task(dict(good, id="hostile.copy"))], both_ports())
    b.add("zero-tasks", "task:count", [app(n_tasks=0)], frozenset())
    big = app(n_tasks=0)
    big["tasks"] = [{"id": f"t{i}", "host": f"10.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}",
                     "ports": [31000, 31001]} for i in range(10_000)]
    b.add("ten-thousand-tasks", "task:count", [big], both_ports())
    many_bad = app(n_tasks=0)
    many_bad["tasks"] = [copy.deepcopy(good)] + [
        {"id": f"bad{i}", "host": f"evil {i}", "ports": [31000, 31001]} for i in range(1000)]
    b.add("thousand-bad-tasks", "task:count", [many_bad], both_ports(),
          Skip(HOSTILE_ID, r"is not a host name"), markers=(MARKER,))


# --------------------------------------------------------------------------- whole bodies

DOCUMENT_CASES: tuple[DocumentCase, ...] = (
    DocumentCase("not-json", b"<html>502 Bad Gateway</html>", r"invalid JSON"),
    DocumentCase("truncated", b'{"apps": [{"id": "/a", "ports": [1', r"invalid JSON"),
    DocumentCase("empty-body", b"", r"invalid JSON"),
    DocumentCase("json-list", b"[]", r"without an 'apps' list"),
    DocumentCase("apps-object", b'{"apps": {}}', r"without an 'apps' list"),
    DocumentCase("apps-null", b'{"apps": null}', r"without an 'apps' list"),
    DocumentCase("not-utf8", b'{"apps": ["\xff\xfe"]}', r"invalid JSON"),
    DocumentCase("nan", b'{"apps": [NaN]}', r"invalid JSON"),
)


def build_corpus() -> list[Case]:
    """Every app-level case, with unique names."""
    b = _Builder()
    _label_cases(b)
    _host_cases(b)
    _port_cases(b)
    _conflict_cases(b)
    _app_cases(b)
    _task_cases(b)
    names = [c.name for c in b.cases]
    duplicates = [n for n, count in Counter(names).items() if count > 1]
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates}")
    return b.cases


def iter_categories(cases: list[Case]) -> Iterator[tuple[str, int]]:
    yield from sorted(Counter(c.category for c in cases).items())


if __name__ == "__main__":
    corpus = build_corpus()
    print(f"{len(corpus)} app cases + {len(DOCUMENT_CASES)} document cases")
    for category, count in iter_categories(corpus):
        print(f"  {category:32} {count}")

