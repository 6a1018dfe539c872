"""Deterministic synthetic Marathon states for the benchmarks.

Why our own generator: the benchmark must be reproducible on a clean checkout
without a cluster, and a fair floor needs bodies shaped like a real
``/v2/apps?embed=apps.tasks`` answer (every field Marathon 1.x writes, not just
the few servicerouter reads), or the cost of downloading and parsing would be
understated.  The same ``(apps, tasks, seed)`` always gives the same bytes.

The mix: one or two service ports per app; apps in nested groups
(``/team-NN/...``); three app shapes (``portDefinitions``, Docker
``container.docker.portMappings``, Marathon 1.5 ``container.portMappings``);
virtual hosts (some sticky, some redirecting to HTTPS), plain TCP ports, HTTP
and TCP health checks, ``HAPROXY_GROUP`` labels and a few legacy ``env``
settings.  Task hosts are IPv4 literals.

Two address shapes (``--addresses``):

* ``hosts`` (the default): host-networked tasks on a pool of agents (one per
  ten apps), so task hosts repeat thousands of times, as on a cluster of big
  agents;
* ``distinct``: every task has its own address, as on IP-per-task clusters
  (CNI / overlay networks): each task gets its own host and its own
  ``ipAddresses`` entry, and the Marathon 1.5 container-shaped apps are on a
  ``container`` network, so servicerouter routes them to the task's own IP.
  Host caches cannot help here: 50,000 tasks are 50,000 addresses.

Usage: ``python benchmarks/generate.py --apps 5000 --tasks 10 [--addresses distinct]
--out state.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

FIRST_SERVICE_PORT = 10000
ADDRESS_SHAPES = ("hosts", "distinct")
_EPOCH_DAY = "2024-03-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


def _stamp(rng: random.Random) -> str:
    return _EPOCH_DAY.format(day=rng.randint(1, 28), hour=rng.randint(0, 23),
                             minute=rng.randint(0, 59), second=rng.randint(0, 59),
                             ms=rng.randint(0, 999))


def _hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


def _uuid(rng: random.Random) -> str:
    return f"{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}"


def _health_check(rng: random.Random, index: int, http: bool) -> dict[str, Any]:
    check: dict[str, Any] = {
        "gracePeriodSeconds": rng.choice((15, 60, 300)),
        "intervalSeconds": rng.choice((3, 10, 30)),
        "timeoutSeconds": rng.choice((5, 10, 20)),
        "maxConsecutiveFailures": rng.choice((0, 3, 10)),
        "portIndex": index,
        "delaySeconds": 15,
        "ignoreHttp1xx": False,
        "protocol": "HTTP" if http else "TCP",
    }
    if http:
        check["path"] = rng.choice(("/", "/health", "/ping", "/status?full=1"))
    return check


def app_id(number: int) -> str:
    """The id of app ``number``: nested groups, some two levels deep."""
    team = number % 40
    if number % 7 == 0:
        return f"/team-{team:02d}/env-{number % 3}/svc-{number:05d}"
    return f"/team-{team:02d}/svc-{number:05d}"


def _distinct_address(serial: int) -> str:
    """The ``serial``-th task address of a distinct-address cluster: 10.0.0.1 onwards."""
    serial += 1
    return f"10.{(serial >> 16) & 255}.{(serial >> 8) & 255}.{serial & 255}"


def _app(rng: random.Random, number: int, ports: list[int], tasks: int,
         agents: list[tuple[str, str]], first_serial: int | None = None) -> dict[str, Any]:
    """One app in Marathon 1.x's full shape, with ``tasks`` running tasks.

    ``first_serial`` (distinct addresses): task ``k`` gets the address of serial
    ``first_serial + k``, both as its host and as its IP address.
    """
    team = number % 40
    the_id = app_id(number)
    labels: dict[str, str] = {"owner": f"team-{team:02d}", "tier": rng.choice(("web", "api", "db"))}
    env: dict[str, str] = {"JAVA_OPTS": "-Xmx256m", "LOG_LEVEL": "info"}
    checks: list[dict[str, Any]] = []
    kind = number % 10
    if number % 5 == 0:
        labels["HAPROXY_GROUP"] = "external"
    elif number % 5 == 1:
        labels["HAPROXY_GROUP"] = "internal,external"
    for index in range(len(ports)):
        vhost = kind < 5 and index == 0
        if vhost:
            labels[f"HAPROXY_{index}_VHOST"] = f"svc-{number:05d}.team-{team:02d}.example.com"
            if number % 3 == 0:
                labels[f"HAPROXY_{index}_STICKY"] = "true"
            if number % 4 == 0:
                labels[f"HAPROXY_{index}_REDIRECT_TO_HTTPS"] = "true"
            checks.append(_health_check(rng, index, http=True))
        elif kind < 8:
            checks.append(_health_check(rng, index, http=kind == 7))
        if kind == 9 and index == 0:
            env[f"HAPROXY_{index}_MODE"] = "http"  # a legacy env setting
    version = _stamp(rng)
    shape = number % 3
    port_definitions = [{"port": p, "protocol": "tcp", "name": f"p{i}", "labels": {}}
                        for i, p in enumerate(ports)]
    mappings = [{"containerPort": 8080 + i, "hostPort": 0, "servicePort": p,
                 "protocol": "tcp", "name": f"p{i}", "labels": {}}
                for i, p in enumerate(ports)]
    container: dict[str, Any] | None = None
    networks: list[dict[str, str]] = [{"mode": "host"}]
    if shape == 1:
        container = {"type": "DOCKER", "volumes": [], "docker": {
            "image": f"registry.example.com/team-{team:02d}/svc:{number % 17}",
            "network": "BRIDGE", "portMappings": mappings, "privileged": False,
            "parameters": [], "forcePullImage": False}}
    elif shape == 2:
        container = {"type": "DOCKER", "volumes": [], "portMappings": mappings, "docker": {
            "image": f"registry.example.com/team-{team:02d}/svc:{number % 17}",
            "privileged": False, "parameters": [], "forcePullImage": False}}
        networks = [{"mode": "container/bridge"}]
        if first_serial is not None:  # IP-per-task: reached on the task's own IP
            networks = [{"mode": "container", "name": "overlay"}]
    app: dict[str, Any] = {
        "id": the_id,
        "cmd": None if container else f"./bin/svc --port $PORT0 --name svc-{number:05d}",
        "args": None,
        "user": None,
        "env": env,
        "instances": tasks,
        "cpus": rng.choice((0.1, 0.25, 0.5, 1.0)),
        "mem": rng.choice((64, 128, 256, 512)),
        "disk": 0,
        "gpus": 0,
        "executor": "",
        "constraints": [["hostname", "UNIQUE"]] if number % 4 == 0 else [],
        "uris": [],
        "fetch": [],
        "storeUrls": [],
        "backoffSeconds": 1,
        "backoffFactor": 1.15,
        "maxLaunchDelaySeconds": 3600,
        "container": container,
        "healthChecks": checks,
        "readinessChecks": [],
        "dependencies": [],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "labels": labels,
        "ipAddress": None,
        "version": version,
        "residency": None,
        "secrets": {},
        "taskKillGracePeriodSeconds": None,
        "unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600},
        "killSelection": "YOUNGEST_FIRST",
        "requirePorts": False,
        "networks": networks,
        "versionInfo": {"lastScalingAt": version, "lastConfigChangeAt": version},
        "tasksStaged": 0,
        "tasksRunning": tasks,
        "tasksHealthy": tasks if checks else 0,
        "tasksUnhealthy": 0,
        "deployments": [],
    }
    if container is None:
        app["portDefinitions"] = port_definitions
    app["ports"] = list(ports)
    prefix = the_id[1:].replace("/", "_")
    task_list = []
    for k in range(tasks):
        host, slave = rng.choice(agents)
        if first_serial is not None:
            host = _distinct_address(first_serial + k)
        started = _stamp(rng)
        task: dict[str, Any] = {
            "id": f"{prefix}.{_uuid(rng)}",
            "slaveId": slave,
            "host": host,
            "state": "TASK_RUNNING",
            "startedAt": started,
            "stagedAt": started,
            "ports": [rng.randint(31000, 32999) for _ in ports],
            "version": version,
            "ipAddresses": [{"ipAddress": f"172.17.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
                             "protocol": "IPv4"}],
            "appId": the_id,
            "servicePorts": list(ports),
        }
        if checks:
            task["healthCheckResults"] = [{
                "alive": True, "consecutiveFailures": 0, "firstSuccess": started,
                "lastFailure": None, "lastSuccess": started, "lastFailureCause": None,
                "taskId": task["id"]}]
        if first_serial is not None:
            task["ipAddresses"][0]["ipAddress"] = host
        task_list.append(task)
    app["tasks"] = task_list
    return app


def generate_state(apps: int, tasks: int = 10, seed: int = 1,
                   addresses: str = "hosts") -> dict[str, Any]:
    """A ``/v2/apps?embed=apps.tasks`` document: same arguments, same document.

    ``addresses``: ``hosts`` (tasks on a pool of agents) or ``distinct`` (an
    address per task, see the module docstring).
    """
    if addresses not in ADDRESS_SHAPES:
        raise ValueError(f"addresses must be one of {ADDRESS_SHAPES}, not {addresses!r}")
    rng = random.Random(f"servicerouter-bench-{seed}-{apps}-{tasks}")
    agent_count = max(10, apps // 10)
    agents = [(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}",
               f"{_uuid(rng)}-S{i}") for i in range(1, agent_count + 1)]
    next_port = FIRST_SERVICE_PORT
    out = []
    for number in range(apps):
        count = 2 if number % 4 == 3 else 1
        ports = list(range(next_port, next_port + count))
        next_port += count
        first_serial = number * tasks if addresses == "distinct" else None
        out.append(_app(rng, number, ports, tasks, agents, first_serial))
    # Marathon lists apps sorted by id.
    out.sort(key=lambda app: app["id"])
    return {"apps": out}


def dumps_state(state: dict[str, Any]) -> bytes:
    """Compact JSON, as Marathon sends it."""
    return json.dumps(state, separators=(",", ":")).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10, help="tasks per app")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--addresses", choices=ADDRESS_SHAPES, default="hosts",
                        help="task addresses: a pool of agents, or one per task (IP-per-task)")
    parser.add_argument("--out", default="-", help="output file ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.apps < 1 or args.tasks < 0:
        parser.error("--apps must be >= 1 and --tasks >= 0")
    data = dumps_state(generate_state(args.apps, args.tasks, args.seed, args.addresses))
    if args.out == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(args.out, "wb") as handle:
            handle.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
