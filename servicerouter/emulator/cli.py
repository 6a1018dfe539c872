"""The emulator's command line: ``python -m servicerouter.emulator.marathon`` serves in the
foreground until SIGTERM/SIGINT, so a benchmark or test can run Marathon as a separate
process (bound port in ``--port-file``, state from a ``/v2/apps`` body)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import ssl
import threading
from typing import Any

from servicerouter.emulator.marathon import MarathonEmulator

__all__ = ["main"]


def _write_port_file(path: str, port: int) -> None:
    """Write atomically so a polling parent never reads a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m servicerouter.emulator.marathon``: serve in the foreground until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m servicerouter.emulator.marathon",
        description="Marathon REST API emulator (apps, tasks, events, callbacks).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="bind port (default 0: any free)")
    parser.add_argument("--state", metavar="FILE.json",
                        help="a /v2/apps?embed=apps.tasks body to start with")
    parser.add_argument("--port-file", metavar="PATH", help="write the bound port here")
    parser.add_argument("--keepalive-interval", type=float, default=5.0,
                        help="seconds between SSE keep-alive comments (default 5)")
    parser.add_argument("--credentials", metavar="USER:PASSWORD",
                        help="require HTTP basic auth on /v2 and /ping")
    parser.add_argument("--service-account", nargs=2, metavar=("UID", "PUBLIC_KEY_PEM"),
                        help="require DC/OS tokens on /v2 and /ping, issued by POST "
                             "/acs/api/v1/auth/login to this service account")
    parser.add_argument("--ssl-cert", metavar="PEM",
                        help="serve HTTPS with this PEM (certificate + key)")
    parser.add_argument("--ssl-key", metavar="PEM", help="private key, if not in --ssl-cert")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(name)s: %(message)s")

    credentials = None
    if args.credentials:
        user, sep, password = args.credentials.partition(":")
        if not sep:
            parser.error("--credentials must be USER:PASSWORD")
        credentials = (user, password)
    context = None
    if args.ssl_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.ssl_cert, args.ssl_key)

    service_account = None
    if args.service_account:
        uid, key_path = args.service_account
        with open(key_path, "rb") as fh:
            service_account = (uid, fh.read())
    emulator = MarathonEmulator(host=args.host, port=args.port, credentials=credentials,
                                ssl_context=context, keepalive_interval=args.keepalive_interval,
                                service_account=service_account)
    if args.state:
        with open(args.state, encoding="utf-8") as fh:
            emulator.load_state(json.load(fh))

    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        emulator.start()
        if args.port_file:
            _write_port_file(args.port_file, emulator.port)
        print(f"listening on {emulator.url}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
