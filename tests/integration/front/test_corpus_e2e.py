"""Replay every HTTP corpus case (gunicorn's and llhttp's) over a real socket against the front.

Each case (see tests/corpus_cases.py): send its bytes, close our sending side, read to EOF. The
front must answer exactly the requests a parse accepts (the app echoes what it received, which is
compared with the expected method, target and body), then either end the connection (accepted
cases) or answer one 4xx/5xx and close (rejected cases).
"""

from __future__ import annotations

import json
import socket
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.corpus_cases import Case, corpus_available, load_cases
from tests.harness import CorralServer, Response, make_site

pytestmark = pytest.mark.skipif(not corpus_available(), reason="HTTP corpora not found")

ECHO_APP = """
import json

def application(environ, start_response):
    body = environ["wsgi.input"].read()
    out = json.dumps({
        "method": environ["REQUEST_METHOD"],
        "uri": environ.get("REQUEST_URI", ""),
        "body": body.hex(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
"""

_LIMIT_SETTINGS = {
    "max_request_line": "max_request_line",
    "max_header_count": "max_header_count",
    "max_header_field": "max_header_field",
    "max_header_bytes": "max_header_size",
}


def _limits_key(case: Case) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(case.expectation.limits.items()))


def _cases() -> list[Case]:
    return list(load_cases()) if corpus_available() else []


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[object, CorralServer]]:
    """One server per distinct set of limits the corpus asks for, started on first use."""
    started: dict[object, CorralServer] = {}
    root = tmp_path_factory.mktemp("corpus")
    site = make_site(root, ECHO_APP)

    class Servers(dict[object, CorralServer]):
        def __missing__(self, key: tuple[tuple[str, int], ...]) -> CorralServer:
            args = ["--no-access-log", "--max", "2", "--set", "header_timeout=3"]
            for name, value in key:
                args += ["--set", f"{_LIMIT_SETTINGS[name]}={value}"]
            server = CorralServer(site, args=tuple(args))
            started[key] = server  # stopped in teardown even if start() fails below
            server.start(wait_ready=False)
            self[key] = server
            return server

    try:
        yield Servers()
    finally:
        for server in started.values():
            server.stop()


def _read_all(port: int, raw: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the front rejected and closed before we were done sending
        data = b""
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
        return data
    finally:
        sock.close()


def _parse_responses(data: bytes, methods: list[bytes]) -> list[Response]:
    responses = []
    while data:
        end = data.find(b"\r\n\r\n")
        assert end >= 0, f"incomplete response head: {data[:200]!r}"
        head, data = data[:end], data[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        response = Response(status, "", headers, b"", head)
        index = len(responses)
        is_head = index < len(methods) and methods[index] == b"HEAD" and status == 200
        length = response.header("content-length")
        if not is_head and length is not None:
            response.body, data = data[: int(length)], data[int(length) :]
        responses.append(response)
    return responses


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case.id)
def test_corpus_case(case: Case, servers: dict[object, CorralServer]) -> None:
    server = servers[_limits_key(case)]
    expectation = case.expectation
    data = _read_all(server.port, case.raw)
    accepted = expectation.accepted
    accept = expectation.accept
    expected = expectation.requests[:accepted]
    connect = [i for i, request in enumerate(expected) if request.method == b"CONNECT"]
    if connect:
        # The front's policy: it is no forward proxy, CONNECT is answered 501 and closed.
        accepted, accept = connect[0], False
        expected = expected[:accepted]
    responses = _parse_responses(data, [request.method for request in expected])
    answered = responses[:accepted]
    assert len(answered) == accepted, (case.id, data[:500])
    for response, request in zip(answered, expected, strict=False):
        # (A deviation may accept what upstream rejected, without expected requests.)
        assert response.status == 200, (case.id, response)
        if request.method == b"HEAD":
            continue
        echoed = json.loads(response.body)
        assert echoed["method"].encode("latin-1") == request.method
        assert echoed["uri"].encode("latin-1") == request.target
        assert bytes.fromhex(echoed["body"]) == request.body, case.id
    rest = responses[accepted:]
    if accept:
        assert rest == [], (case.id, rest)
    else:
        assert len(rest) == 1, (case.id, data[:500])
        assert 400 <= rest[0].status < 600, (case.id, rest[0])
        assert rest[0].header("connection") == "close"


def test_every_limits_group_is_covered() -> None:
    groups: dict[object, int] = defaultdict(int)
    for case in _cases():
        groups[_limits_key(case)] += 1
    if corpus_available():
        assert sum(groups.values()) == len(load_cases()) > 200


def test_site_path_is_a_folder(tmp_path: Path) -> None:
    assert make_site(tmp_path, ECHO_APP).is_dir()
