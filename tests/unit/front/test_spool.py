"""BodySpool and Spill: bytes in order through memory and an unlinked temporary file."""

from __future__ import annotations

import os

from corral.front import spool
from corral.front.spool import PIECE, BodySpool, Spill


class Recorder:
    """A backend that takes ``room`` pieces, then says its send buffer is full."""

    def __init__(self, target: BodySpool, room: int) -> None:
        self.target = target
        self.room = room
        self.got: list[bytes] = []
        self.ended = False

    def send_body(self, data: bytes) -> None:
        self.got.append(data)
        self.room -= 1
        if self.room <= 0:
            self.target.paused = True  # (the exchange's backend_pause_writing)

    def end_body(self) -> None:
        self.ended = True


def test_a_body_stays_in_memory_up_to_the_threshold_then_goes_to_a_file() -> None:
    small = BodySpool(100)
    small.write(b"a" * 60)
    small.write(b"b" * 40)
    assert small._file is None and small.size == 100
    big = BodySpool(100)
    pieces = [b"x" * 60, os.urandom(70), os.urandom(3 * PIECE + 5)]
    for piece in pieces:
        big.write(piece)
    assert big._file is not None and big._memory_size == 60
    # The file has no name: nothing in the private folder.
    assert os.listdir(spool._private_folder()) == []
    backend = Recorder(big, room=2)
    assert not big.send(backend)  # paused after two pieces
    backend.room = 100
    assert big.send(backend)  # type: ignore[arg-type]
    assert backend.ended and b"".join(backend.got) == b"".join(pieces)
    assert big._file is None  # closed once sent


def test_a_closed_spool_stops_sending() -> None:
    body = BodySpool(0)
    body.write(os.urandom(3 * PIECE))
    backend = Recorder(body, room=100)
    backend.send_body = lambda data: body.close()  # type: ignore[method-assign]
    assert not body.send(backend)  # type: ignore[arg-type]
    assert not backend.ended


def test_a_spill_gives_back_what_it_took_in_order_and_knows_when_it_is_full() -> None:
    spill = Spill(limit=1000, total_limit=1 << 40)
    spill.add([b"head", memoryview(b"-body-"), b"x" * 500])
    assert spill.held == 510 and not spill.full
    assert spill.take() == b"head-body-" + b"x" * 500
    assert spill.take() == b""
    spill.add([os.urandom(PIECE + 10)])
    assert spill.full
    assert len(spill.take()) == PIECE and len(spill.take()) == 10
    spill.close()


def test_spills_together_are_bounded_and_give_their_share_back() -> None:
    before = spool.spilled_total()
    first = Spill(limit=1 << 30, total_limit=before + 1000)
    second = Spill(limit=1 << 30, total_limit=before + 1000)
    first.add([b"a" * 600])
    second.add([b"b" * 300])
    assert not second.full and spool.spilled_total() == before + 900
    second.add([b"b" * 100])
    assert first.full and second.full  # the process's share is taken
    assert first.take() == b"a" * 600
    assert not second.full and spool.spilled_total() == before + 400
    second.close()
    first.close()
    assert spool.spilled_total() == before


def test_a_spill_dropped_without_close_gives_its_share_back() -> None:
    before = spool.spilled_total()
    spill = Spill(limit=1 << 30, total_limit=1 << 40)
    spill.add([b"z" * 5000])
    assert spool.spilled_total() == before + 5000
    del spill
    assert spool.spilled_total() == before
