"""Real HAProxy in front of three Corral nodes on loopback, health-checking each node's /readyz
(its admin listener): under steady load every node is stopped with SIGTERM (its drain_delay
longer than HAProxy's detection time) and started again in turn without a failed request; a node
killed with SIGKILL costs only the requests in flight on it.

(The issue asks for network namespaces; loopback ports are enough for what is tested here: each
node has its own ports, HAProxy tells them apart by port as it would by address.)"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import WAIT, request
from tests.loadgen import Load, Outcome, p99
from tests.nodes import Node, make_node_site, node_of
from tests.ports import port

from conftest import require_program

pytestmark = pytest.mark.external("haproxy")

#: HAProxy checks every 200 ms and takes a node out at the first failed check: it notices a
#: draining node within ~0.3 s, well inside the nodes' drain_delay. Two ways through it to the
#: same nodes: "strict" never sends a request again (what the rolling stops are measured on: only
#: the drain keeps them from failing), "retrying" sends a request whose server connection fails
#: before any answer (a node killed) to another node, as docs/examples/haproxy.cfg does.
HAPROXY_CFG = """\
global
    maxconn 256
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
    balance leastconn
backend strict
    retries 0
{servers}
backend retrying
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
{servers}
frontend strict
    bind 127.0.0.1:{strict}
    default_backend strict
frontend retrying
    bind 127.0.0.1:{retrying}
    default_backend retrying
"""

DRAIN = "drain_delay=1.5"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[Node], int, int]]:
    haproxy = require_program("haproxy", "/usr/sbin/haproxy")
    nodes = [
        Node(make_node_site(tmp_path, f"n{i}"), settings=(DRAIN, "shutdown_grace=5"))
        for i in range(3)
    ]
    strict, retrying = port(), port()
    servers = "\n".join(
        f"    server n{i} 127.0.0.1:{node.port} check port {node.admin}"
        for i, node in enumerate(nodes)
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CFG.format(servers=servers, strict=strict, retrying=retrying))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for node in nodes:
            node.start()
        proc = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + WAIT
        seen: set[str | None] = set()
        for front in (strict, retrying):
            seen: set[str | None] = set()
            while len(seen - {None}) < 3:  # every node up behind HAProxy
                assert proc.poll() is None, "haproxy exited"
                assert time.monotonic() < deadline, f"only {seen} answer behind haproxy"
                try:
                    seen.add(node_of(request(front, path="/warm").body))
                except OSError:
                    time.sleep(0.05)
        yield nodes, strict, retrying
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(WAIT)
        for node in nodes:
            node.close()


def test_rolling_restarts_behind_haproxy_lose_nothing_and_a_kill_only_its_in_flight(
    cluster: tuple[list[Node], int, int],
) -> None:
    nodes, strict, retrying = cluster
    with Load(strict, path="/roll", clients=4) as load:
        time.sleep(0.5)
        for node in nodes:
            stopped = time.monotonic()
            assert node.stop() == 0
            node.start()
            # Back behind HAProxy (rise 2: two checks) and given requests again.
            assert load.wait_for(f"node {node.where} /roll", 10, time.monotonic())
            answered = {node_of(o.body) for o in load.since(stopped) if o.ok}
            assert answered >= {other.where for other in nodes if other is not node}
    roll_outcomes = load.outcomes
    rolling_failures = [o for o in roll_outcomes if not o.ok]
    assert rolling_failures == [], rolling_failures[:5]
    assert len(roll_outcomes) > 300, len(roll_outcomes)
    with Load(retrying, path="/kill", clients=4) as load:
        time.sleep(0.5)
        killed = nodes[0]
        assert killed.server is not None and killed.server.proc is not None
        kill_at = time.monotonic()
        killed.server.proc.send_signal(signal.SIGKILL)
        killed.server.wait(WAIT)
        dead_at = time.monotonic()
        time.sleep(1.5)
        after_kill = load.since(kill_at + 0.5)
    # The kill: only requests begun before the node died (in flight on it) may fail.
    kill_failures = load.failures()
    assert all(o.started < dead_at for o in kill_failures), (kill_at, dead_at, kill_failures)
    assert len(kill_failures) <= load.clients
    assert after_kill and all(o.ok for o in after_kill)
    assert not any(node_of(o.body) == killed.where for o in after_kill)
    _report(roll_outcomes, kill_failures)


def _report(outcomes: list[Outcome], killed: list[Outcome]) -> None:
    """The figures bench/README.md quotes (printed with -s)."""
    print(
        f"\nrolling restart of 3 nodes behind haproxy: {len(outcomes)} requests, "
        f"{sum(not o.ok for o in outcomes)} failed, p99 {p99(outcomes) * 1000:.1f} ms; "
        f"SIGKILL of one node: {len(killed)} failed"
    )
