"""Real HAProxy in front of three Corral nodes, health-checking each node's /readyz (its admin
listener): under steady load every node is stopped with SIGTERM (its drain_delay longer than
HAProxy's detection time) and started again in turn without a failed request; a node killed
with SIGKILL costs only the requests that were in flight on it, and gets traffic again once
restarted.

Twice: on this machine's loopback (each node on its own ports), and as four hosts of their own
(tests/netns.py): HAProxy in one network namespace, each node in another, linked by a bridge in a
fifth, with private addresses and the same ports on every node as on separate machines; the
test's client threads run in HAProxy's namespace and reach it on that namespace's loopback. No
packet of the second run touches this machine's own interfaces."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.haproxy import Balancer
from tests.harness import WAIT
from tests.loadgen import Outcome, p99
from tests.netns import lab
from tests.nodes import Node, make_node_site, node_of
from tests.ports import port

from conftest import require_program

#: About 20 s alone; up to a minute when this 2-core machine runs other suites (load average 18).
pytestmark = [pytest.mark.external("haproxy"), pytest.mark.timeout(240)]

DRAIN = "drain_delay=1.5"
SETTINGS = (DRAIN, "shutdown_grace=5")


@dataclass
class Cluster:
    nodes: list[Node]
    balancer: Balancer


@pytest.fixture(params=["loopback", pytest.param("netns", marks=pytest.mark.external("iproute2"))])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    haproxy = require_program("haproxy", "/usr/sbin/haproxy")
    with contextlib.ExitStack() as stack:
        if request.param == "loopback":
            nodes = [Node(make_node_site(tmp_path, f"n{i}"), settings=SETTINGS) for i in range(3)]
            balancer = Balancer(haproxy, tmp_path, strict=port(), retrying=port())
        else:
            hosts = stack.enter_context(lab())
            front = hosts.host("lb")
            nodes = []
            for i in range(3):
                host = hosts.host(f"n{i}")
                site = make_node_site(tmp_path, f"n{i}")
                nodes.append(
                    Node(
                        site,
                        settings=SETTINGS,
                        host=host.address,
                        port=8080,
                        admin=9100,
                        netns=host.netns,
                        launcher=hosts.command(host),
                    )
                )
            balancer = Balancer(
                haproxy,
                tmp_path,
                strict=8000,
                retrying=8001,
                netns=front.netns,
                launcher=hosts.command(front),
            )
        stack.callback(balancer.close)
        for node in nodes:
            stack.callback(node.close)
        for node in nodes:
            node.start()
        balancer.start(nodes)
        yield Cluster(nodes, balancer)


def test_rolling_restarts_behind_haproxy_lose_nothing_and_a_kill_only_its_in_flight(
    cluster: Cluster,
) -> None:
    nodes, balancer = cluster.nodes, cluster.balancer
    stops: list[tuple[str, float]] = []
    with balancer.load("strict", path="/roll", clients=4) as load:
        time.sleep(0.5)
        for node in nodes:
            stopped = time.monotonic()
            stops.append((node.where, stopped))
            assert node.stop() == 0
            node.start()
            # Back behind HAProxy (rise 2: two checks) and given requests again.
            assert load.wait_for(f"node {node.where} /roll", 10, time.monotonic())
            answered = {node_of(o.body) for o in load.since(stopped) if o.ok}
            assert answered >= {other.where for other in nodes if other is not node}
    roll_outcomes = load.outcomes
    rolling_failures = [o for o in roll_outcomes if not o.ok]
    assert rolling_failures == [], _described(rolling_failures, stops, balancer)
    assert len(roll_outcomes) > 300, len(roll_outcomes)

    # The kill: requests that take 200 ms, so that some are on the node when it dies.
    killed = nodes[0]
    with balancer.load("retrying", path="/slow", clients=6) as load:
        deadline = time.monotonic() + WAIT
        while True:
            asked = time.monotonic()
            on = balancer.in_flight("retrying")
            counted = time.monotonic()
            if on["n0"] >= 1:
                break
            assert counted < deadline, "no request ever in flight on n0"
            time.sleep(0.01)
        kill_at, dead_at = killed.kill()
        time.sleep(1.0)
        restarted = time.monotonic()
        killed.start()
        assert load.wait_for(f"node {killed.where} /slow", 10, restarted)
        time.sleep(0.5)
    # What may have been on the node when it died: every request the client had outstanding
    # when HAProxy counted, less those HAProxy then had on the other nodes (a request on a node
    # stays there), and every request begun since.
    outstanding = [o for o in load.outcomes if o.started < counted and o.ended > asked]
    begun = [o for o in load.outcomes if counted <= o.started < dead_at]
    bound = len(outstanding) - on["n1"] - on["n2"] + len(begun)
    kill_failures = load.failures()
    assert all(o.started < dead_at and o.ended > kill_at for o in kill_failures), (
        kill_at,
        dead_at,
        kill_failures,
    )
    assert len(kill_failures) <= bound, (on, outstanding, begun, kill_failures)
    assert len(load.since(dead_at)) > 20
    _report(roll_outcomes, on["n0"], bound, kill_failures)


def _described(failures: list[Outcome], stops: list[tuple[str, float]], lb: Balancer) -> str:
    """The failed requests, each with when it began and ended after each SIGTERM, and what
    HAProxy saw of the servers."""
    lines = [f"{len(failures)} failed:"]
    for o in failures[:10]:
        since = ", ".join(
            f"{where} +{(o.started - at) * 1000:.0f}..{(o.ended - at) * 1000:.0f} ms"
            for where, at in stops
            if at <= o.ended
        )
        reason = o.error or o.body.split(b"</h1>")[-1].strip()[:80].decode(errors="replace")
        lines.append(f"  {o.status} {reason!r} after SIGTERM to {since}")
    return "\n".join([*lines, "haproxy:", *lb.servers_changes()])


def _report(outcomes: list[Outcome], on_node: int, bound: int, killed: list[Outcome]) -> None:
    """The figures bench/README.md quotes (printed with -s)."""
    print(
        f"\nrolling restart of 3 nodes behind haproxy: {len(outcomes)} requests, "
        f"{sum(not o.ok for o in outcomes)} failed, p99 {p99(outcomes) * 1000:.1f} ms; "
        f"SIGKILL of one node with {on_node} requests on it (at most {bound} at its death): "
        f"{len(killed)} failed"
    )
