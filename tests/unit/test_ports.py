"""tests/ports.py: the port leases that keep one test's backends from answering for another's
(issue 10, item 21). Another process is a real child Python process."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ports
from corral.supervision.ports import ephemeral_port_range

TESTS = Path(__file__).resolve().parents[1]


def take_in_another_process(blocks: list[int], size: int = ports.BLOCK) -> str:
    """What another process gets when it may only take one of `blocks`: "LOW-HIGH" or "none"."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import ports
        ports._blocks = lambda size: {blocks!r}
        try:
            lease = ports.take({size})
        except AssertionError:
            print("none")
        else:
            print(f"{{lease.low}}-{{lease.high}}")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def test_a_held_block_is_not_given_to_another_process_until_it_is_closed() -> None:
    lease = ports.take()
    # (Several other blocks: the suite's other processes may hold some of them meanwhile.)
    others = [low for low in ports._blocks(ports.BLOCK) if low != lease.low][:16]
    try:
        assert take_in_another_process([lease.low]) == "none"
        given = take_in_another_process([lease.low, *others])
        assert given in {f"{low}-{low + ports.BLOCK - 1}" for low in others}
    finally:
        lease.close()
    assert take_in_another_process([lease.low]) == f"{lease.low}-{lease.high}"


def test_a_block_with_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two blocks nobody else has (leased, then given back just before use).
    first, second = ports.take(), ports.take()
    first.close()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.low + 5))
        squatter.listen()
        second.close()
        monkeypatch.setattr(ports, "_blocks", lambda size: [first.low, second.low])
        with ports.lease() as lease:
            assert (lease.low, lease.high) == (second.low, second.high)


def test_blocks_are_outside_the_kernels_ephemeral_range() -> None:
    low, high = ephemeral_port_range() or (32768, 60999)
    for start in ports._blocks(ports.BLOCK):
        assert start + ports.BLOCK - 1 < low or start > high


def test_port_never_gives_the_same_port_twice_in_a_process() -> None:
    given = [ports.port() for _ in range(ports.BLOCK + 3)]
    assert len(set(given)) == len(given)
    for port in given:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # free: nobody else was given it
