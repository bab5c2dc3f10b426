"""A front tier and an app tier split with nothing but configuration: one `corral serve` whose
tcp.service engine sends requests over HTTP to two other Corral nodes' fronts, checking their
admin listeners' /readyz. Each app-tier node has a loopback address of its own (127.0.0.2,
127.0.0.3), as it would have a machine of its own, with the same ports on each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import CorralServer
from tests.loadgen import Load
from tests.nodes import Node, make_node_site, node_of
from tests.ports import port

HOSTS = ("127.0.0.2", "127.0.0.3")


@pytest.fixture
def app_tier(tmp_path: Path) -> Iterator[list[Node]]:
    listen, admin = port(), port()
    nodes = [
        Node(
            make_node_site(tmp_path, f"app{i}"),
            settings=("drain_delay=1", "shutdown_grace=5"),
            host=host,
            port=listen,
            admin=admin,
        )
        for i, host in enumerate(HOSTS)
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.close()


def test_a_front_tier_spreads_over_app_tier_nodes_and_follows_their_readiness(
    app_tier: list[Node], tmp_path: Path
) -> None:
    site = tmp_path / "front"
    site.mkdir()
    servers = " ".join(node.where for node in app_tier)
    (site / "corral.toml").write_text(
        '[engines.app-tier]\ntransport = "tcp.service"\nprotocol = "http"\n'
        f'servers = "{servers}"\nhealth_check = ":{app_tier[0].admin}/readyz"\n'
        "health_interval = 0.2\nslow_start = 0.5\n"
        '[apps.app]\nengine = "app-tier"\n'
    )
    front = CorralServer(site, args=("--no-access-log",), listen="127.0.0.1:0")
    front.start(wait_ready=False)
    try:
        with Load(front.port, path="/tiers", clients=3) as load:
            began = time.monotonic()
            for node in app_tier:
                assert load.wait_for(f"node {node.where} /tiers", 10, began), front.text()
            # One app-tier node stops (SIGTERM: its /readyz turns 503, it drains, it exits) and
            # comes back: the front tier follows without a failed request.
            leaving = app_tier[1]
            assert leaving.stop() == 0
            gone = time.monotonic()
            time.sleep(0.5)
            assert not any(node_of(o.body) == leaving.where for o in load.since(gone))
            leaving.start()
            assert load.wait_for(f"node {leaving.where} /tiers", 10, time.monotonic())
        failures = load.failures()
        assert failures == [], failures[:5]
        assert len(load.outcomes) > 100
        front.wait_log(rf"{leaving.host}:{leaving.port} taken out: health check")
    finally:
        front.stop()
