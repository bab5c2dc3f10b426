"""The access log's formats (front/accesslog.py): what each line holds, that no client byte can
break a line or forge a field, and that a JSON line always parses back to what was sent."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from corral.front import accesslog
from corral.protocol.http1.events import Request


def _request(target: bytes = b"/a?b=1", host: bytes | None = b"example.test") -> Request:
    return Request(b"GET", target, target, b"", "1.1", [], True, False, None, False, None, host)


def test_extended_and_json_without_an_application_or_a_backend() -> None:
    # A 404 for an unknown host: no application, no backend time.
    args = ("192.0.2.1", _request(host=None), 404, 120, None, None, "", 0.25, None)
    line = accesslog.extended(*args)
    assert line.endswith('"GET /a?b=1 HTTP/1.1" 404 120 "-" "-" "-" "-" 0.250000 -'), line
    record = json.loads(accesslog.json_line(*args))
    assert record["app"] is None and record["upstream"] is None and record["host"] is None
    assert record["referer"] is None and record["user_agent"] is None
    assert record["status"] == 404 and record["bytes"] == 120


def test_the_formats_are_the_setting_choices() -> None:
    from corral.config.settings import SERVER_BY_TOML

    assert SERVER_BY_TOML["access_log_format"].choices == tuple(accesslog.FORMATS)
    for name, function in accesslog.FORMATS.items():
        assert accesslog.format_for(name) is function


CLIENT_BYTES = st.binary(max_size=40)


@given(CLIENT_BYTES, CLIENT_BYTES, CLIENT_BYTES, CLIENT_BYTES)
def test_no_client_byte_breaks_or_forges_a_text_line(
    target: bytes, referer: bytes, agent: bytes, host: bytes
) -> None:
    args = ("192.0.2.1", _request(b"/" + target, host), 200, 0, referer, agent, "s:/:a", 0.5, 0.25)
    for fmt in (accesslog.combined, accesslog.extended):
        line = fmt(*args)
        assert line.isascii() and line.isprintable()
        # Every quoted field is whole: quotes only where the format puts them.
        quoted = re.findall(r'"([^"]*)"', line)
        assert len(quoted) == (3 if fmt is accesslog.combined else 5)
        assert line.count('"') == 2 * len(quoted)


@given(CLIENT_BYTES, CLIENT_BYTES, CLIENT_BYTES, CLIENT_BYTES)
def test_a_json_line_parses_back_to_the_client_s_text(
    target: bytes, referer: bytes, agent: bytes, host: bytes
) -> None:
    args = ("192.0.2.1", _request(b"/" + target, host), 200, 0, referer, agent, "s:/:a", 0.5, 0.25)
    line = accesslog.json_line(*args)
    assert line.isascii() and "\n" not in line
    record = json.loads(line)
    assert record["target"] == (b"/" + target).decode("utf-8", "backslashreplace")
    assert record["referer"] == referer.decode("utf-8", "backslashreplace")
    assert record["user_agent"] == agent.decode("utf-8", "backslashreplace")
    assert record["host"] == host.decode("utf-8", "backslashreplace")
    assert record["duration"] == 0.5 and record["upstream"] == 0.25 and record["app"] == "s:/:a"
