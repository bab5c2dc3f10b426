"""Every case of gunicorn's and llhttp's request corpora, fed whole, byte by byte and in
random chunks: parsed exactly as expected, or rejected with a 4xx/5xx (see corpus_cases)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest

from corpus_cases import UNDERSCORE_DROPPED, Case, ExpectedRequest, corpus_available, load_cases
from corral.protocol.http1 import (
    NEED_DATA,
    PAUSED,
    Body,
    ConnectionClosed,
    EndOfMessage,
    HTTPProtocolError,
    Limits,
    Request,
    RequestParser,
)

pytestmark = pytest.mark.skipif(not corpus_available(), reason="../shared/corpus is missing")

CASES = load_cases() if corpus_available() else ()


class Outcome:
    def __init__(self) -> None:
        self.requests: list[tuple[Request, bytes, tuple[tuple[bytes, bytes], ...]]] = []
        self.error: HTTPProtocolError | None = None
        self.closed = False


def _drain(parser: RequestParser, out: Outcome, state: dict[str, object]) -> None:
    while out.error is None and not out.closed:
        try:
            event = parser.next_event()
        except HTTPProtocolError as exc:
            out.error = exc
            return
        if event is NEED_DATA:
            return
        if event is PAUSED:
            parser.start_next()
        elif isinstance(event, Request):
            assert state.get("current") is None
            state["current"] = (event, bytearray())
        elif isinstance(event, Body):
            assert event.data
            current = state["current"]
            assert isinstance(current, tuple)
            current[1].extend(event.data)
        elif isinstance(event, EndOfMessage):
            current = state.pop("current")
            assert isinstance(current, tuple)
            out.requests.append((current[0], bytes(current[1]), event.trailers))
            state["current"] = None
        elif isinstance(event, ConnectionClosed):
            out.closed = True
        else:  # pragma: no cover - a new event type would land here
            raise AssertionError(f"unexpected event {event!r}")


def replay(raw: bytes, limits: Limits, pieces: Iterator[bytes] | None = None) -> Outcome:
    parser = RequestParser(limits)
    out = Outcome()
    state: dict[str, object] = {"current": None}
    for piece in pieces if pieces is not None else iter([raw]):
        parser.receive_data(piece)
        _drain(parser, out, state)
    parser.receive_data(b"")
    _drain(parser, out, state)
    assert out.error is not None or out.closed, "the parser neither ended nor rejected"
    return out


def _headers(pairs: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> list[Any]:
    # Names are case-insensitive (gunicorn upper-cases them); llhttp's spans keep trailing
    # whitespace that RFC 9110 5.5 says is not part of the value.
    return [(k.lower(), v.rstrip(b" \t")) for k, v in pairs]


def assert_same(
    case: Case, got: tuple[Request, bytes, list[tuple[bytes, bytes]]], want: ExpectedRequest
) -> None:
    request, body, trailers = got
    headers = request.headers
    if case.id in UNDERSCORE_DROPPED:
        headers = [(k, v) for k, v in headers if b"_" not in k]
    assert request.method == want.method
    assert request.target == want.target
    assert request.http_version == want.version
    assert _headers(headers) == _headers(want.headers)
    assert body == want.body
    assert _headers(trailers) == _headers(want.trailers)
    # The parser's own summaries agree with the raw headers.
    if request.content_length is not None:
        assert request.content_length == int(request.get(b"content-length") or b"-1")
    assert request.chunked == (request.get(b"transfer-encoding") is not None)
    if request.target.startswith(b"/"):
        assert request.target.startswith(request.path)


def check(case: Case, out: Outcome) -> None:
    exp = case.expectation
    if exp.accept:
        assert out.error is None, f"{case.id}: rejected ({out.error}) but expected to pass"
        assert out.closed
    else:
        assert out.error is not None, f"{case.id}: accepted but expected a rejection"
        assert 400 <= out.error.status_hint <= 599
    assert len(out.requests) == exp.accepted, (case.id, out.requests, out.error)
    for got, want in zip(out.requests, exp.requests, strict=False):
        assert_same(case, got, want)


def _limits(case: Case) -> Limits:
    return Limits(**case.expectation.limits)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_whole(case: Case) -> None:
    check(case, replay(case.raw, _limits(case)))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_byte_by_byte(case: Case) -> None:
    raw = case.raw
    check(case, replay(raw, _limits(case), (raw[i : i + 1] for i in range(len(raw)))))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_random_chunks(case: Case) -> None:
    rng = random.Random(case.id)
    raw = case.raw
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 8))))
        bounds = [0, *cuts, len(raw)]
        pieces = [raw[a:b] for a, b in itertools.pairwise(bounds)]
        check(case, replay(raw, _limits(case), iter(pieces)))


def test_every_deviation_is_used_and_justified() -> None:
    from corpus_cases import DEVIATIONS

    ids = {c.id for c in CASES}
    assert set(DEVIATIONS) <= ids
    for case in CASES:
        exp = case.expectation
        differs = exp.accept != exp.upstream_accepts or exp.accepted != len(exp.requests)
        assert differs == bool(exp.note) or case.id in UNDERSCORE_DROPPED, case.id


def test_corpus_sizes() -> None:
    # The loader must see every file / markdown block; a parsing slip would silently drop cases.
    assert sum(c.id.startswith("gunicorn/") for c in CASES) == 137
    assert sum(c.id.startswith("llhttp/") for c in CASES) == 166
