"""The control socket's protocol (``corral.ops.controlproto``): requests and replies, one JSON
line each, versioned; every malformed line is a ``ProtocolError`` saying what is wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.ops import controlproto as proto
from corral.ops.controlproto import ProtocolError, Reply, Request


@pytest.mark.parametrize(
    "request_",
    [
        Request(proto.STATUS),
        Request(proto.INFO),
        Request(proto.RELOAD),
        Request(proto.STOP),
        Request(proto.RESTART, "blog"),
        Request(proto.SCALE, "main/blog", 2, 4),
        Request(proto.SCALE, "blog", None, 3),
        Request(proto.SCALE, "blog", 0, None),
    ],
)
def test_a_request_survives_encoding(request_: Request) -> None:
    line = proto.encode_request(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["version"] == proto.VERSION
    assert proto.decode_request(line) == request_


def test_the_documented_request_and_reply_lines() -> None:
    assert proto.encode_request(Request(proto.SCALE, "blog", 2, 4)) == (
        b'{"version":1,"command":"scale","app":"blog","min":2,"max":4}\n'
    )
    assert proto.encode_reply(Reply(True, {"message": "m"})) == (
        b'{"version":1,"ok":true,"result":{"message":"m"}}\n'
    )
    assert (
        proto.encode_reply(Reply(False, error="no")) == b'{"version":1,"ok":false,"error":"no"}\n'
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"version":2,"command":"status"}\n', "request version 2 is not supported (only 1 is)"),
        (b'{"command":"status"}\n', "the request has no version"),
        (b'{"version":"1","command":"status"}\n', "the request has no version"),
        (b'{"version":true,"command":"status"}\n', "the request has no version"),
        (b'{"version":1,"command":"dance"}\n', "unknown command 'dance'"),
        (b'{"version":1}\n', "the request names no command"),
        (b'{"version":1,"command":"restart"}\n', "restart: name the application"),
        (b'{"version":1,"command":"restart","app":""}\n', "restart: name the application"),
        (b'{"version":1,"command":"restart","app":3}\n', "app must be a string"),
        (b'{"version":1,"command":"status","app":"x"}\n', "status: takes no application"),
        (b'{"version":1,"command":"reload","min":1}\n', "reload: takes no min or max"),
        (b'{"version":1,"command":"scale","app":"a"}\n', "scale: give min, max or both"),
        (b'{"version":1,"command":"scale","app":"a","min":3,"max":2}\n', "must not exceed"),
        (b'{"version":1,"command":"scale","app":"a","max":0}\n', "max must be at least 1"),
        (b'{"version":1,"command":"scale","app":"a","min":-1}\n', "min must be within"),
        (b'{"version":1,"command":"scale","app":"a","min":1.5}\n', "min must be a whole number"),
        (b'{"version":1,"command":"scale","app":"a","max":true}\n', "max must be a whole number"),
        (b'{"version":1,"command":"status","extra":1}\n', "unknown request fields: extra"),
        (b"[1]\n", "not a JSON object"),
        (b"status\n", "not JSON"),
        (b"\xff\xfe\n", "not JSON"),
        (b'{"version":1,"command":"status"}', "does not end with a newline"),
        (b'{"version":1,"command":"' + b"x" * proto.MAX_REQUEST + b'"}\n', "longer than"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        proto.decode_request(line)


def test_replies_decode_and_refuse_what_is_not_a_reply() -> None:
    assert proto.decode_reply(b'{"version":1,"ok":true,"result":[1,2]}\n') == Reply(True, [1, 2])
    assert proto.decode_reply(b'{"version":1,"ok":false,"error":"bad"}\n') == Reply(
        False, error="bad"
    )
    assert proto.decode_reply(b'{"version":1,"ok":false}\n') == Reply(False, error="failed")
    with pytest.raises(ProtocolError, match="neither ok true nor ok false"):
        proto.decode_reply(b'{"version":1,"ok":1}\n')
    with pytest.raises(ProtocolError, match="reply version 7 is not supported"):
        proto.decode_reply(b'{"version":7,"ok":true}\n')


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_request_or_a_protocol_error(data: bytes) -> None:
    for line in (data, data + b"\n"):
        try:
            request = proto.decode_request(line)
        except ProtocolError:
            continue
        assert request.command in proto.COMMANDS


@given(
    st.sampled_from(proto.COMMANDS),
    st.one_of(st.none(), st.text(max_size=30)),
    st.one_of(st.none(), st.integers(-5, 20_000)),
    st.one_of(st.none(), st.integers(-5, 20_000)),
)
def test_any_request_document_decodes_or_is_refused(
    command: str, app: str | None, low: int | None, high: int | None
) -> None:
    document: dict[str, object] = {"version": 1, "command": command}
    for key, value in (("app", app), ("min", low), ("max", high)):
        if value is not None:
            document[key] = value
    line = json.dumps(document).encode() + b"\n"
    try:
        request = proto.decode_request(line)
    except ProtocolError:
        return
    assert proto.decode_request(proto.encode_request(request)) == request
