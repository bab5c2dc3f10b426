"""Corral nodes for the many-nodes tests: `corral serve` processes on fixed ports (so that a node
stopped and started again comes back where its balancer expects it), on loopback or each in a
network namespace of its own (tests/netns.py), each with an admin listener for /readyz, serving
an application that says which node answered (and takes 200 ms to answer a path under /slow)."""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import WAIT, CorralServer, request
from tests.netns import call_in
from tests.ports import port as free_port

#: Answers "node ADDRESS:PORT PATH" (the node's listening address), whatever the path; a path
#: under /slow after 200 ms (requests that stay in flight on a node long enough to count them).
NODE_APP = """
import time

def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/slow"):
        time.sleep(0.2)
    where = "%s:%s" % (environ["SERVER_ADDR"], environ["SERVER_PORT"])
    body = ("node %s %s\\n" % (where, environ.get("PATH_INFO", ""))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

TOKEN = "many-nodes-test-token"


@dataclass
class Node:
    """One Corral node: its site, its ports, and its `corral serve` while it runs."""

    site: Path
    settings: tuple[str, ...] = ()
    #: A loopback address of its own (127.0.0.2...) stands for a machine of its own.
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    #: The network namespace it runs in (None: this machine's) and the command that runs a
    #: program there (``Lab.command``'s prefix, ``ip netns exec NAME``).
    netns: str | None = None
    launcher: tuple[str, ...] = ()
    server: CorralServer | None = None
    starts: int = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Node:
        sets = [arg for item in self.settings for arg in ("--set", item)]
        self.starts += 1
        self.server = CorralServer(
            self.site,
            args=("--no-access-log", "--admin", f"{self.host}:{self.admin}", *sets),
            env={"CORRAL_ADMIN_TOKEN": TOKEN},
            listen=self.where,
            command=(*self.launcher, sys.executable, "-m", "corral"),
        ).start(wait_ready=False)
        call_in(self.netns, self._wait_ready)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if request(self.port, path="/hello", address=self.host).status == 200:
                    return
            except OSError:
                pass
            assert self.server is not None
            assert time.monotonic() < deadline, self.server.text()
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the node and wait for it to exit; its exit code."""
        assert self.server is not None
        self.server.signal(signum)
        code = self.server.wait(WAIT)
        self.server.stop()  # (its workers' groups, should any be left)
        self.server = None
        return code

    def kill(self) -> tuple[float, float]:
        """SIGKILL the node: when the signal was sent and when the process had died (its sockets
        closed: the kernel refuses connections from then on), as ``time.monotonic()`` at once
        (a pidfd, not ``wait``'s polling); then wait for it and clear what it left."""
        assert self.server is not None and self.server.proc is not None
        pidfd = os.pidfd_open(self.server.proc.pid)
        try:
            sent = time.monotonic()
            self.server.signal(signal.SIGKILL)
            assert select.select([pidfd], [], [], WAIT)[0], "a killed node did not die"
            died = time.monotonic()
        finally:
            os.close(pidfd)
        self.server.wait(WAIT)
        self.close()
        return sent, died

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def make_node_site(root: Path, name: str) -> Path:
    site = root / name
    site.mkdir(parents=True, exist_ok=True)
    (site / "wsgi.py").write_text(NODE_APP)
    return site


_NODE = re.compile(rb"node (\S+) ")


def node_of(body: bytes) -> str | None:
    """Where the node that answered ``body`` listens (ADDRESS:PORT)."""
    match = _NODE.match(body)
    return match.group(1).decode() if match else None
