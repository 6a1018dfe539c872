"""A real ZooKeeper for tests: Debian's ``zookeeper`` package on a free 127.0.0.1 port.

Started with its own ``zoo.cfg`` and a temporary data directory (no admin server,
no JMX), stopped by PID; stop then start again keeps the data and the port, as
an outage of the ensemble does.  Skips the test when ZooKeeper is not installed
(``scripts/test`` and ``.ci/run`` install it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.harness import _REGISTRY, free_port, wait_for_port, wait_until

ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"


class ZooKeeper:
    """One standalone ZooKeeper server; ``hosts`` is what a client connects to."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "zoo.cfg"
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\n"
            f"dataDir={workdir / 'data'}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
            "maxSessionTimeout=60000\n")

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ, JMXDISABLE="true", ZOO_LOG_DIR=str(self.workdir),
                   ZOO_LOG4J_PROP="WARN,CONSOLE", SERVER_JVMFLAGS="-Xmx128m")
        with open(self.workdir / "zookeeper.log", "ab") as log:
            # start-foreground execs java: our child is the server itself
            self.proc = subprocess.Popen([ZK_SERVER, "start-foreground", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        _REGISTRY.add_pid(self.proc.pid, str(self.config))
        wait_for_port(self.port, timeout=timeout)
        # The port accepts before the server answers: ask until it says it serves.
        wait_until(self.serving, timeout, interval=0.1, message="ZooKeeper did not serve")

    def serving(self) -> bool:
        """Whether the server answers the ``srvr`` command (standalone mode)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(b"srvr")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        return b"Mode: standalone" in reply

    def stop(self) -> None:
        """SIGKILL by PID (an outage, not a clean shutdown), then reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        _REGISTRY.discard_pid(self.proc.pid)
        self.proc = None
        time.sleep(0.1)
