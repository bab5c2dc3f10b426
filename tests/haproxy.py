"""Real HAProxy in front of Corral nodes (tests/nodes.py) for the many-nodes tests, on this
machine's loopback or in a network namespace of its own (tests/netns.py).

HAProxy checks every node's /readyz on its admin listener and takes it out at the first failed
check (a check may take a second: a node is not taken out because this shared machine stalled
for a moment, which would take out every node at once). Two ways through it to the same nodes:

- "strict" (``retries 0``) checks every 200 ms (it notices a draining node within ~0.3 s, well
  inside the nodes' drain_delay) and never sends a request again: what the rolling stops are
  measured on, only the drain keeps them from failing;
- "retrying" sends a request whose connection to a node could not be made (a node killed, not
  yet seen by a check: it checks once a second, so that a kill is seen late) to another node,
  and nothing else: a request already on a node that dies is lost with it
  (docs/examples/haproxy.cfg's ``empty-response`` would replay such GETs too, which would hide
  the requests in flight that the kill test counts).

Its stats socket (a Unix socket in the tests' runtime folder, reachable from any namespace) tells
how many requests each server has at a given moment (``in_flight``).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import WAIT, request
from tests.loadgen import Load
from tests.netns import call_in
from tests.nodes import Node, node_of

CONFIG = """\
global
    maxconn 256
    stats socket {stats} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout check 1s
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
    balance leastconn
backend strict
    retries 0
{servers}
backend retrying
    default-server inter 1s fall 1 rise 2
    retries 3
    option redispatch 1
    retry-on conn-failure
{servers}
frontend strict
    bind {listen}:{strict}
    default_backend strict
frontend retrying
    bind {listen}:{retrying}
    default_backend retrying
"""

_NUMBERS = itertools.count()


@dataclass
class Balancer:
    """One HAProxy process: its two frontends on ``listen`` (in namespace ``netns``, started
    through ``launcher``), the nodes as servers n0, n1..."""

    haproxy: str
    folder: Path
    strict: int
    retrying: int
    listen: str = "127.0.0.1"
    netns: str | None = None
    launcher: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    stats: Path = field(init=False)

    def __post_init__(self) -> None:
        # A Unix socket's path is short: the tests' runtime folder (tests/conftest.py).
        runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
        self.stats = runtime / f"haproxy-{os.getpid()}-{next(_NUMBERS)}.sock"

    def start(self, nodes: list[Node]) -> Balancer:
        """Start HAProxy and wait until every node answers through both frontends."""
        servers = "\n".join(
            f"    server n{i} {node.host}:{node.port} check port {node.admin}"
            for i, node in enumerate(nodes)
        )
        config = self.folder / "haproxy.cfg"
        config.write_text(
            CONFIG.format(
                stats=self.stats,
                servers=servers,
                listen=self.listen,
                strict=self.strict,
                retrying=self.retrying,
            )
        )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.launcher, self.haproxy, "-db", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        call_in(self.netns, lambda: self._wait_for(len(nodes)))
        return self

    @property
    def log(self) -> Path:
        """HAProxy's own messages (a server going DOWN or UP, and why)."""
        return self.folder / "haproxy.log"

    def servers_changes(self) -> list[str]:
        """The lines of its log where a server went DOWN or UP."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [line for line in lines if " is DOWN" in line or " is UP" in line]

    def _wait_for(self, count: int) -> None:
        deadline = time.monotonic() + WAIT
        for front in (self.strict, self.retrying):
            seen: set[str | None] = set()
            while len(seen - {None}) < count:
                assert self.proc is not None and self.proc.poll() is None, "haproxy exited"
                assert time.monotonic() < deadline, f"only {seen} answer behind haproxy"
                try:
                    seen.add(node_of(request(front, path="/warm", address=self.listen).body))
                except OSError:
                    time.sleep(0.05)

    def load(self, frontend: str, *, path: str, clients: int) -> Load:
        """Steady load on ``frontend`` ("strict" or "retrying") from where HAProxy runs."""
        port = self.strict if frontend == "strict" else self.retrying
        return Load(port, path=path, clients=clients, address=self.listen, netns=self.netns)

    def in_flight(self, backend: str) -> dict[str, int]:
        """The requests HAProxy has on each server of ``backend`` now (their ``scur``)."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(WAIT)
            conn.connect(str(self.stats))
            conn.sendall(b"show stat\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        return {
            row["svname"]: int(row["scur"])
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(WAIT)
            self.proc = None
        self.stats.unlink(missing_ok=True)
