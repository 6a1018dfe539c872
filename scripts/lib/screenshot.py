"""Make docs/dashboard.png: the dashboard of the demo's edge, in headless Chromium.

Starts what ``servicerouter.emulator.demo`` starts (the Marathon emulator with
the demo's apps, real backends on 127.0.0.1, servicerouter with
``--manage-haproxy`` and ``--status-listen``, on free ports), adds one operator
rule through the dashboard's own form (so the table shows a rule beside the
labels), then photographs the services page signed in.  Everything it started
is stopped by PID, the browser included.

Usage: ``./scripts/screenshot [--out docs/dashboard.png] [--width 1280 --height 720]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from servicerouter.emulator.demo import (  # noqa: E402 - after the path setup
    LOCALHOST,
    check_routes,
    demo_apps,
    free_port,
    running,
    start_backend,
    wait_for,
)
from servicerouter.emulator.marathon import MarathonEmulator  # noqa: E402
from tests.harness import self_signed_cert  # noqa: E402
from tests.serve.browser import Browser, chromium_path  # noqa: E402

TOKEN = "screenshot-demo-token"


def router_command(emulator: MarathonEmulator, ports: dict[str, int], workdir: Path,
                   haproxy: str) -> list[str]:
    """The demo's production-shaped router, with an admin token for the editor."""
    return [
        sys.executable, "-m", "servicerouter", "-m", emulator.url, "--sse",
        "--manage-haproxy", "--haproxy-bin", haproxy, "--haproxy-stop-on-exit",
        "--status-listen", f"{LOCALHOST}:{ports['status']}", "--status-token", TOKEN,
        "--haproxy-config", str(workdir / "haproxy.cfg"), "--syslog-socket", "/dev/null",
        "--bind-addr", LOCALHOST, "--http-port", str(ports["http"]),
        "--https-port", str(ports["https"]), "--appid-port", str(ports["appid"]),
        "--stats-port", str(ports["stats"]), "--state-dir", str(workdir / "state"),
        "--min-wait", "0.1", "--max-wait", "0.5",
        # two bundles for the certificates table: one due for renewal soon
        "--ssl-certs", ",".join([
            self_signed_cert(workdir / "wildcard.pem", ["*.demo.local", "demo.local"], days=90),
            self_signed_cert(workdir / "api.pem", ["api.demo.local"], days=9)]),
    ]


def photograph(out: Path, width: int, height: int, workdir: Path) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None or chromium_path() is None:
        raise SystemExit("screenshot: needs haproxy and chromium (apt-get install -y haproxy "
                         "chromium)")
    ports = {name: free_port() for name in ("http", "https", "appid", "stats", "status")}
    service_ports = {"web": free_port(), "api": free_port(), "tcp": free_port()}
    backends = {name: start_backend(name) for name in ("web-1", "web-2", "api-1", "tcp-1")}
    emulator = MarathonEmulator(demo_apps({}, service_ports), keepalive_interval=1.0).start()
    log_path = workdir / "servicerouter.log"
    try:
        for name, server in backends.items():
            emulator.add_task("/demo/" + name.split("-")[0], LOCALHOST,
                              [server.server_address[1]])
        with running(router_command(emulator, ports, workdir, haproxy), log_path) as router:
            wait_for(lambda: check_routes(ports, service_ports), 60, "routes to answer",
                     router, log_path)
            base = f"http://{LOCALHOST}:{ports['status']}"
            with Browser(width=width, height=height) as browser:
                browser.goto(base + "/signin")
                browser.submit("#signin", {"token": TOKEN})
                browser.goto(base + "/rules?app=/demo/api&port=0")
                browser.submit("#rule-form", {"hosts": "api.demo.local shop.demo.local",
                                              "paths": "", "note": "canary host"}, "#save")
                time.sleep(1.5)  # the rule's sync, and a health check round
                browser.goto(base + "/")
                browser.screenshot(out)
    finally:
        emulator.stop()
        for server in backends.values():
            server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "dashboard.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--workdir", help="config and logs (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        photograph(out, args.width, args.height, workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="sr-shot-") as temp:
            photograph(out, args.width, args.height, Path(temp))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
