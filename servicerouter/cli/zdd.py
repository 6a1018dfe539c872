"""``servicerouter zdd APP.json``: a zero-downtime blue/green (or canary) deployment.

marathon-lb's ``zdd.py`` workflow, against Marathon and servicerouter's status API:

1. the next colour of the app is posted (``-blue``/``-green``, the labels of
   :mod:`servicerouter.cli.zdd_plan`), with ``--initial-instances`` tasks;
2. its tasks must be up *in HAProxy* (``GET /api/backends/GROUP_PORT`` on every
   ``--status`` URL: HAProxy's own checks, weight above 0), not merely healthy in
   Marathon; meanwhile servicerouter drains as many old tasks (weight 0, through the
   Runtime API);
3. drained old tasks without sessions are killed with scale (after ``--pre-kill-hook``),
   the new colour grows by half each step (by N with ``--linear-increase N``), until
   it is whole and the old app is deleted; with ``--canary PERCENT`` (or
   ``--new-instances N``) it stops at that share and holds, to be finished by
   ``--complete-cur`` or undone by ``--complete-prev``.
   ``--canary`` holds PERCENT of the requests by server weights and ``--step-percent``
   shifts a full deployment in weight steps: both are the label
   ``HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT`` on the new colour, posted once (see
   :mod:`servicerouter.model.deployment_groups`);
4. a step that makes no progress for ``--max-wait`` seconds, an error, or Ctrl-C rolls
   back: the old app scaled back to its instances (and up in HAProxy), the new app
   deleted, so the cluster is as the command found it.  A run that could not roll back
   (killed, or its machine lost) leaves both colours: ``--resume`` goes on with it.

No step reloads HAProxy: servicerouter serves the group as one backend whose servers
come, change weight and go through the Runtime API.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from servicerouter.cli.flags import client_settings
from servicerouter.cli.logs import setup_logging
from servicerouter.cli.zdd_flags import build_parser, usage_error
from servicerouter.cli.zdd_plan import (
    DeployOptions,
    Views,
    ZddError,
    backend_of,
    by_start,
    canary_instances,
    count,
    every_node,
    finished,
    group_of,
    new_count_of,
    next_scale,
    parse_steps,
    prepare,
    task_servers,
    validate,
)
from servicerouter.source.marathon import ClientSettings

log = logging.getLogger("servicerouter.zdd")


class Cluster:
    """Marathon's REST API and servicerouter's status API, as zdd uses them."""

    def __init__(self, marathon: str, status_urls: Sequence[str], token: str | None,
                 timeout: float = 10.0, settings: ClientSettings | None = None) -> None:
        self.marathon = marathon.rstrip("/")
        self.status_urls = [u.rstrip("/") for u in status_urls]
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()  # servicerouter's status API: never Marathon's auth
        # Marathon's auth and TLS (the flags marathon-lb's zdd.py took), on their own session
        self.marathon_http = requests.Session()
        if settings is not None:
            self.marathon_http.auth = settings.token_auth or settings.auth
            self.marathon_http.verify = settings.verify
            self.marathon_http.cert = settings.client_cert

    def _call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        try:
            # verify per request: requests lets $REQUESTS_CA_BUNDLE beat a session's
            response = self.marathon_http.request(method, self.marathon + path, json=body,
                                                  params=params or None, timeout=self.timeout,
                                                  verify=self.marathon_http.verify)
        except requests.RequestException as err:
            raise ZddError(f"Marathon {method} {path}: {err}") from None
        if response.status_code >= 400:
            raise ZddError(f"Marathon {method} {path}: HTTP {response.status_code} "
                           f"{response.text[:200]}")
        return response.json() if response.content else {}

    def apps(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v2/apps", embed="apps.tasks").get("apps") or [])

    def app(self, app_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"/v2/apps{app_id}")["app"]
        except ZddError as err:
            if "HTTP 404" in str(err):
                return None
            raise

    def post(self, app: Mapping[str, Any]) -> None:
        self._call("POST", "/v2/apps", dict(app))

    def scale(self, app_id: str, instances: int, force: bool = False) -> None:
        log.info("scaling %s to %d instances", app_id, instances)
        params = {"force": "true"} if force else {}
        self._call("PUT", f"/v2/apps{app_id}", {"instances": instances}, **params)

    def kill(self, task_ids: Sequence[str]) -> None:
        log.info("killing %d drained task(s) with scale: %s", len(task_ids), ", ".join(task_ids))
        self._call("POST", "/v2/tasks/delete", {"ids": list(task_ids)}, scale="true")

    def delete(self, app_id: str) -> None:
        log.info("deleting %s", app_id)
        self._call("DELETE", f"/v2/apps{app_id}", force="true")

    def views(self, backend: str) -> Views:
        """The backend's servers on every servicerouter (an unknown backend: none yet)."""
        nodes = []
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        for url in self.status_urls:
            try:
                response = self.http.get(f"{url}/api/backends/{backend}", headers=headers,
                                         timeout=self.timeout)
            except requests.RequestException as err:
                raise ZddError(f"servicerouter {url}: {err}") from None
            if response.status_code == 404:
                nodes.append({})
                continue
            if response.status_code != 200:
                raise ZddError(f"servicerouter {url}: HTTP {response.status_code} "
                               f"{response.text[:200]}")
            nodes.append({s["name"]: s for s in response.json().get("servers") or []})
        return Views(tuple(nodes))


class Deployment:
    """One run of the command: the swap loop and its rollback."""

    def __init__(self, cluster: Cluster, args: argparse.Namespace) -> None:
        self.cluster = cluster
        self.args = args

    def confirm(self, question: str) -> bool:
        if self.args.force:
            return True
        sys.stderr.write(f"{question} [y/N] ")
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    def wait_up(self, app_id: str, instances: int | None = None,
                weighted: bool = True) -> dict[str, Any]:
        """Until the app's deployment is done and all its tasks serve in HAProxy (or,
        without ``weighted``, pass its checks whatever their weight)."""
        deadline = time.monotonic() + self.args.max_wait
        while True:
            app = self.cluster.app(app_id)
            if app is None:
                raise ZddError(f"{app_id} is gone")
            names = set(task_servers(app))
            wanted = count(app.get("instances")) if instances is None else instances
            views = self.cluster.views(backend_of(app))
            up = views.all_serving(names) if weighted else views.all_up(names)
            if not app.get("deployments") and len(names) == wanted and up:
                return app
            if time.monotonic() > deadline:
                raise ZddError(f"{app_id}: {wanted} task(s) not up in HAProxy after "
                               f"{self.args.max_wait:g} s ({len(names)} task(s), "
                               f"deployments {app.get('deployments')}, backend "
                               f"{backend_of(app)}: {views.describe(names)})")
            time.sleep(self.args.step_delay)

    def swap(self, new_id: str, old_id: str, hybrid: bool) -> None:
        """Grow the new colour and retire the old one (zdd.py's loop)."""
        progress = time.monotonic()
        while True:
            time.sleep(self.args.step_delay)
            new, old = self.cluster.app(new_id), self.cluster.app(old_id)
            if new is None or old is None:
                raise ZddError(f"{new_id if new is None else old_id} disappeared")
            if time.monotonic() - progress > self.args.max_wait:
                raise ZddError(f"no progress in {self.args.max_wait:g} s "
                               f"({new_id}: {count(new.get('instances'))} instance(s))")
            new_names = set(task_servers(new))
            views = self.cluster.views(backend_of(old))
            if new.get("deployments") or len(new_names) != count(new.get("instances")) \
                    or not views.all_serving(new_names):
                continue  # the new colour is not all up in HAProxy yet
            old_names = task_servers(old)
            idle = views.drained(old_names, idle=True)
            if finished(new, old, idle, hybrid):  # old tasks drained and without sessions
                if hybrid:
                    log.info("canary holds: %d new, %d old instance(s)",
                             count(new.get("instances")), count(old.get("instances")))
                    return
                if not self.confirm(f"Delete the old app {old_id}?"):
                    raise ZddError("stopped before deleting the old app")
                if idle:
                    self.pre_kill(old, idle, new)
                self.cluster.delete(old_id)
                return
            if idle:
                self.pre_kill(old, idle, new)
                if not self.confirm(f"Kill {len(idle)} drained task(s) of {old_id}?"):
                    raise ZddError("stopped before killing drained tasks")
                self.cluster.kill(idle)
                progress = time.monotonic()
            grow = next_scale(new, old, hybrid, self.args.linear_increase)
            if grow is not None:
                self.cluster.scale(new_id, grow)
                progress = time.monotonic()

    def pre_kill(self, old: Mapping[str, Any], task_ids: Sequence[str],
                 new: Mapping[str, Any]) -> None:
        """--pre-kill-hook OLD_APP_JSON TASK_IDS_JSON NEW_APP_JSON; non-zero: stop."""
        if not self.args.pre_kill_hook:
            return
        log.info("running the pre-kill hook %s", self.args.pre_kill_hook)
        result = subprocess.run([self.args.pre_kill_hook, json.dumps(old),
                                 json.dumps(list(task_ids)), json.dumps(new)], check=False)
        if result.returncode != 0:
            raise ZddError(f"pre-kill hook exited with {result.returncode}")

    def rollback(self, new_id: str, old_id: str, old_instances: int) -> None:
        """The old colour back at its instances and up in HAProxy, then the new app gone."""
        log.warning("rolling back to %s", old_id)
        old = self.cluster.app(old_id)
        if old is not None and count(old.get("instances")) != old_instances:
            self.cluster.scale(old_id, old_instances, force=True)
            try:
                self.wait_up(old_id, old_instances, weighted=False)
            except ZddError as err:
                log.error("the old app is not all up again: %s", err)
        if self.cluster.app(new_id) is not None:
            self.cluster.delete(new_id)


def run(cluster: Cluster, args: argparse.Namespace, out: Any = sys.stdout) -> int:
    try:
        with open(args.app_json, encoding="utf-8") as handle:
            app = validate(json.load(handle))
    except (OSError, ValueError) as err:
        log.error("cannot read %s: %s", args.app_json, err)
        return 2
    except ZddError as err:
        log.error("%s", err)
        return 2
    group = group_of(app)
    previous = [a for a in cluster.apps() if group_of(a) == group]
    deployment = Deployment(cluster, args)
    if len(previous) > 1 or args.complete_cur or args.complete_prev:
        return complete(deployment, previous)
    if args.resume:  # as zdd.py: nothing half done, so this is a new deployment
        log.info("--resume: no deployment of group %s in progress; deploying", group)
    new_instances = args.new_instances
    weight_percent = None
    if args.canary is not None and previous:
        target = count(previous[0].get("instances"), 1)
        if new_instances <= 0:
            new_instances = canary_instances(target, args.canary)
        # the share is held by server weights (HAPROXY_DEPLOYMENT_NEW_WEIGHT_PERCENT),
        # not by the instance counts, whose steps are 1/target
        weight_percent = round(args.canary)
        log.info("canary: %d of %d instance(s) on the new colour, %d%% of requests "
                 "by server weights", min(new_instances, target), target, weight_percent)
    try:
        steps = parse_steps(args.step_percent) if args.step_percent else ()
    except ZddError as err:
        log.error("%s", err)
        return 2
    new_app = prepare(app, previous, DeployOptions(args.initial_instances, new_instances,
                                                   weight_percent, steps), datetime.now())
    out.write(json.dumps(new_app, sort_keys=True, indent=2) + "\n")
    if args.dry_run:
        return 0
    if not deployment.confirm("Continue with the deployment?"):
        return 1
    cluster.post(new_app)
    if not previous:
        try:
            deployment.wait_up(new_app["id"])
        except (ZddError, KeyboardInterrupt) as err:
            log.error("deployment failed: %s; removing %s", str(err) or "interrupted", new_app["id"])
            cluster.delete(new_app["id"])
            return 130 if isinstance(err, KeyboardInterrupt) else 1
        log.info("%s deployed (the group's first colour)", new_app["id"])
        return 0
    old = previous[0]
    hybrid = new_count_of(new_app) > 0
    try:
        deployment.swap(new_app["id"], old["id"], hybrid)
    except (ZddError, KeyboardInterrupt) as err:
        log.error("deployment failed: %s", str(err) or "interrupted")
        deployment.rollback(new_app["id"], old["id"], count(old.get("instances")))
        return 130 if isinstance(err, KeyboardInterrupt) else 1
    log.info("%s deployed%s", new_app["id"], " (canary holds)" if hybrid else "")
    return 0


def complete(deployment: Deployment, previous: list[dict[str, Any]]) -> int:
    """Two colours running: --complete-cur makes the newest colour whole, --complete-prev
    the previous one, --resume goes on with the deployment as it was started (a canary
    keeps holding at its share); anything else is refused, as zdd.py."""
    args = deployment.args
    if len(previous) < 2:
        log.error("--complete-cur/--complete-prev need a hybrid deployment (two colours)")
        return 2
    if not (args.complete_cur or args.complete_prev or args.resume):
        log.error("a deployment of this group is in progress (%s); go on with it with "
                  "--resume, finish it with --complete-cur or undo it with --complete-prev",
                  ", ".join(a["id"] for a in previous))
        return 2
    older, newer = by_start(previous)[-2:]
    new, old = (older, newer) if args.complete_prev else (newer, older)
    resuming = not (args.complete_cur or args.complete_prev)  # --resume alone
    hybrid = resuming and new_count_of(new) > 0
    if resuming:
        log.info("resuming: %s grows%s, %s drains", new["id"],
                 " to its canary share" if hybrid else "", old["id"])
    try:
        deployment.swap(new["id"], old["id"], hybrid=hybrid)
    except (ZddError, KeyboardInterrupt) as err:
        log.error("%s failed: %s; both colours are left running",
                  "resuming" if resuming else "completing", str(err) or "interrupted")
        return 1
    return 0


def _ipv4_addresses(host: str) -> list[str]:
    """Every IPv4 address of ``host`` (none if it does not resolve now)."""
    try:
        return socket.gethostbyname_ex(host)[2]
    except OSError:
        return []


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.longhelp:
        sys.stdout.write(__doc__ or "")
        return 0
    problem = usage_error(args)
    if problem is None:
        try:
            settings = client_settings(args)
        except ValueError as err:
            problem = str(err)
    if problem is not None:
        sys.stderr.write(f"servicerouter zdd: {problem}\n")
        return 2
    args.app_json = args.app_json or args.json_file
    setup_logging(args.syslog_socket, args.log_format, args.log_level)
    status_urls = every_node(args.status, _ipv4_addresses)
    if len(status_urls) > len(args.status):
        log.info("checking HAProxy on %d edge nodes: %s", len(status_urls),
                 ", ".join(status_urls))
    cluster = Cluster(args.marathon, status_urls, args.status_token, settings=settings)
    try:
        return run(cluster, args)
    except ZddError as err:
        log.error("%s", err)
        return 1


__all__ = ["Cluster", "Deployment", "build_parser", "main", "run"]
