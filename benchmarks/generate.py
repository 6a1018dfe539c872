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
settings.  Task hosts are IPv4 literals on a pool of agents.

Usage: ``python benchmarks/generate.py --apps 5000 --tasks 10 --out state.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

FIRST_SERVICE_PORT = 10000
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


def _app(rng: random.Random, number: int, ports: list[int], tasks: int,
         agents: list[tuple[str, str]]) -> dict[str, Any]:
    """One app in Marathon 1.x's full shape, with ``tasks`` running tasks."""
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
    for _ in range(tasks):
        host, slave = rng.choice(agents)
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
        task_list.append(task)
    app["tasks"] = task_list
    return app


def generate_state(apps: int, tasks: int = 10, seed: int = 1) -> dict[str, Any]:
    """A ``/v2/apps?embed=apps.tasks`` document: same arguments, same document."""
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
        out.append(_app(rng, number, ports, tasks, agents))
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
    parser.add_argument("--out", default="-", help="output file ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.apps < 1 or args.tasks < 0:
        parser.error("--apps must be >= 1 and --tasks >= 0")
    data = dumps_state(generate_state(args.apps, args.tasks, args.seed))
    if args.out == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(args.out, "wb") as handle:
            handle.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
