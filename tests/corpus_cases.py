"""HTTP/1.1 request corpora (gunicorn's and llhttp's) as replayable cases.

Shared by the parser's unit tests (tests/unit/protocol/http1) and by end-to-end tests that
replay the same bytes over a real socket against the front server. The corpora live outside the
repository, at ``../shared/corpus`` from the project root (or ``../../shared/corpus`` from a
worktree; override with ``CORRAL_CORPUS_DIR``); ``corpus_available()`` says whether they are
there.

``load_cases()`` returns ``Case(id, raw, expectation)`` tuples. ``raw`` is the exact bytes to
send. The protocol every case follows, over a parser or a socket:

1. send ``raw`` (in any split), then close the sending side (EOF);
2. Corral answers ``expectation.accepted`` requests, each parsed as
   ``expectation.requests[i]`` (method, target, version, headers, body, trailers);
3. then, if ``expectation.accept``, the connection simply ends (EOF or ``Connection:
   close``, or an upgrade / CONNECT tunnel); otherwise Corral rejects the next request
   with a 4xx/5xx and closes (``HTTPProtocolError`` in the parser).

``expectation.upstream_accepts`` / ``upstream_error`` record what the upstream project
expects; where Corral's verdict differs, ``expectation.note`` says why (see ``DEVIATIONS``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent


def _corpus_dir() -> Path:
    """``CORRAL_CORPUS_DIR``, else ``../shared/corpus`` from the project root (CI's clone and the
    main checkout), else ``../../shared/corpus`` (a git worktree one folder further down, such
    as ``wt/NAME``, which would otherwise skip every corpus test without a word)."""
    if os.environ.get("CORRAL_CORPUS_DIR"):
        return Path(os.environ["CORRAL_CORPUS_DIR"])
    candidates = [ROOT.parent / "shared" / "corpus", ROOT.parent.parent / "shared" / "corpus"]
    return next((path for path in candidates if path.is_dir()), candidates[0])


CORPUS_DIR = _corpus_dir()

#: gunicorn's defaults (gunicorn/config.py) for the settings that map onto our Limits.
GUNICORN_DEFAULT_LIMITS: dict[str, int] = {
    "max_request_line": 4094,
    "max_header_count": 100,
    "max_header_field": 8190,
}
_GUNICORN_LIMIT_KEYS = {
    "limit_request_line": "max_request_line",
    "limit_request_fields": "max_header_count",
    "limit_request_field_size": "max_header_field",
}


@dataclass(frozen=True)
class ExpectedRequest:
    method: bytes
    target: bytes
    version: str  # "1.0" / "1.1"
    headers: tuple[tuple[bytes, bytes], ...]  # names compare case-insensitively
    body: bytes
    trailers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True)
class Expectation:
    corpus: str  # "gunicorn" | "llhttp"
    #: Requests upstream parsed completely, in order.
    requests: tuple[ExpectedRequest, ...]
    #: Upstream's error (gunicorn exception name, llhttp reason), None if it accepts all.
    upstream_error: str | None
    #: Upstream configuration beyond the defaults (gunicorn config / llhttp test type).
    upstream_config: dict[str, Any]
    #: Keyword arguments for ``corral.protocol.http1.Limits`` reproducing upstream's limits.
    limits: dict[str, int]
    #: Corral's verdict: True = every byte is accepted, False = a 4xx/5xx ends it.
    accept: bool
    #: How many of ``requests`` Corral answers before ending / rejecting.
    accepted: int
    #: Why Corral's verdict differs from upstream's ("" when it agrees).
    note: str = ""
    source: str = field(default="", compare=False)  # file (and line) upstream

    @property
    def upstream_accepts(self) -> bool:
        return self.upstream_error is None


class Case(NamedTuple):
    id: str
    raw: bytes
    expectation: Expectation


# --------------------------------------------------------------------------------------------
# Deviations from upstream, one justification per case.
# Key: case id. Value: (accept, accepted_before_end, why).
# --------------------------------------------------------------------------------------------

_PROXY = "PROXY protocol is not part of HTTP/1.1 and Corral's front does not speak it"
_LENIENT = (
    "upstream expects this only with an llhttp leniency flag ({}), which Corral never "
    "enables: RFC 9112 strict parsing"
)

_TE = (
    "Transfer-Encoding {} : Corral decodes only 'chunked' alone; other codings get 501 "
    "(RFC 9112 6.1: a server SHOULD answer 501 to a transfer coding it does not understand; "
    "'identity' left the registry with RFC 7230) instead of passing a coded body on"
)
_OBS_FOLD = (
    "obs-fold: RFC 9112 5.2 lets a server reject it with 400; llhttp does unless lenient, "
    "and unfolding is a header-smuggling vector between components"
)
_REJECT = False
_ACCEPT = True

DEVIATIONS: dict[str, tuple[bool, int, str]] = {
    # ---- gunicorn: upstream rejects, Corral accepts ------------------------------------------
    "gunicorn/invalid/040": (
        _ACCEPT,
        1,
        "header_map=refuse: Corral drops names containing '_' when it builds the CGI "
        "environment (front/cgienv.py, like nginx's underscores_in_headers off) instead of "
        "refusing the request; no Transfer_Encoding / Content_Length alias reaches an app",
    ),
    # ---- gunicorn: upstream accepts, Corral rejects ------------------------------------------
    "gunicorn/valid/009": (
        _REJECT,
        0,
        "Content-Length together with Transfer-Encoding (here 'identity') is refused: the "
        "classic smuggling vector, RFC 9112 6.3 says such a message ought to be handled as "
        "an error (llhttp: HPE_UNEXPECTED_CONTENT_LENGTH)",
    ),
    "gunicorn/valid/013": (
        _REJECT,
        0,
        "chunk extensions with whitespace around ';' ('5; some; parameters=stuff'): RFC "
        "9112 7.1.1 allows BWS there, but llhttp's strict mode refuses it and the only "
        "knob would be a global leniency; no real client sends chunk extensions",
    ),
    "gunicorn/valid/025": (_REJECT, 0, _TE.format("'gzip' then 'chunked'")),
    "gunicorn/valid/025_line": (_REJECT, 0, _TE.format("'gzip,chunked'")),
    "gunicorn/valid/027": (
        _REJECT,
        0,
        "raw non-ASCII bytes in the request-target: RFC 3986 / RFC 9112 3.2 allow only "
        "visible ASCII (clients percent-encode); llhttp refuses them",
    ),
    "gunicorn/valid/028": (
        _REJECT,
        0,
        "whitespace between field name and colon (strip_header_spaces): RFC 9112 5.1 "
        "says a server MUST reject it with 400",
    ),
    "gunicorn/valid/029": (_REJECT, 0, _TE.format("'identity' then 'chunked'")),
    "gunicorn/valid/030": (_REJECT, 0, _TE.format("'identity' then 'chunked'")),
    "gunicorn/valid/031": (
        _REJECT,
        0,
        "method '-BLARGH' is not in llhttp's method table (every IANA-registered method "
        "is); unknown methods get 400",
    ),
    "gunicorn/valid/031compat": (_REJECT, 0, "as valid/031 (unknown method)"),
    "gunicorn/valid/031compat2": (_REJECT, 0, "as valid/031 (unknown, lower-case method)"),
    "gunicorn/valid/040": (
        _ACCEPT,
        1,
        "gunicorn's default header_map=drop removes '_' names while parsing; Corral keeps "
        "them in Request.headers and drops them in the CGI environment, so the comparison "
        "ignores them (UNDERSCORE_DROPPED)",
    ),
    "gunicorn/valid/099": (
        _REJECT,
        0,
        "the file's body (8599 bytes) is shorter than its Content-Length (17914): the "
        "request is truncated at EOF; gunicorn's reader returns the short body, Corral "
        "streams the 8599 bytes then reports the incomplete request",
    ),
    "gunicorn/valid/compat_obs_fold": (_REJECT, 0, _OBS_FOLD),
    "gunicorn/valid/compat_obs_fold_huge": (_REJECT, 0, _OBS_FOLD),
    "gunicorn/valid/pp_01": (_REJECT, 0, _PROXY),
    "gunicorn/valid/pp_02": (_REJECT, 0, _PROXY),
    "gunicorn/valid/pp_04": (_REJECT, 0, _PROXY),
    "gunicorn/valid/pp_05": (_REJECT, 0, _PROXY),
    "gunicorn/valid/rfc9112_smuggle_gzip_chunked_01": (_REJECT, 0, _TE.format("'gzip, chunked'")),
    "gunicorn/valid/rfc9112_smuggle_te_identity_chunked_01": (
        _REJECT,
        0,
        _TE.format("'identity, chunked'"),
    ),
    # ---- llhttp: upstream (with a leniency) stops with an incomplete message, Corral ends ----
    "llhttp/connection/resetting-flags-when-keep-alive-is-off-1-0-lenient": (
        _ACCEPT,
        1,
        _LENIENT.format("keep-alive")
        + "; an HTTP/1.0 request without keep-alive ends the connection, later bytes are "
        "ignored (strict llhttp: 'Data after Connection: close')",
    ),
    "llhttp/connection/crlf-between-requests-explicit-close-lenient": (
        _ACCEPT,
        1,
        _LENIENT.format("keep-alive")
        + "; after 'Connection: close' the connection ends and later bytes are ignored",
    ),
    # ---- llhttp: upstream accepts (mostly under a leniency), Corral rejects ------------------
    "llhttp/connection/multiple-tokens-with-folding": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; " + _OBS_FOLD,
    ),
    "llhttp/connection/multiple-tokens-with-folding-lws-and-crlf": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; " + _OBS_FOLD,
    ),
    "llhttp/connection/invalid-whitespace-token-with-connection-header-field-lenient": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; whitespace before the colon is 400 (RFC 9112 5.1)",
    ),
    "llhttp/content-length/invalid-whitespace-token-with-content-length-header-field-lenient": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; whitespace before the colon is 400 (RFC 9112 5.1)",
    ),
    "llhttp/content-length/content-length-reset-when-no-body-is-received": (
        _REJECT,
        0,
        "upstream runs this with skipBody (the HEAD-response mode of its harness); for a "
        "request the bytes after the PUT head are its 123-byte body, cut short by EOF",
    ),
    "llhttp/content-length/missing-crlf-crlf-before-body-lenient": (
        _REJECT,
        0,
        _LENIENT.format("optional LF after CR") + "; a bare CR is 400 (RFC 9112 2.2)",
    ),
    "llhttp/invalid/headers-separated-by-dummy-characters-lenient": (
        _REJECT,
        0,
        _LENIENT.format("optional LF after CR") + "; a bare CR is 400 (RFC 9112 2.2)",
    ),
    "llhttp/invalid/only-lfs-present-lenient": (
        _REJECT,
        0,
        _LENIENT.format("all") + "; bare-LF line ends are refused",
    ),
    "llhttp/invalid/spaces-before-headers-lenient": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; whitespace before the first field line is 400 "
        "(RFC 9112 2.2: reject, or it could hide a header from one parser)",
    ),
    "llhttp/lenient-header-value-relaxed/control-char-in-header-value-relaxed": (
        _REJECT,
        0,
        _LENIENT.format("header value relaxed") + "; control characters in field values "
        "are 400 (RFC 9110 5.5)",
    ),
    "llhttp/lenient-headers/header-value-lenient": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; control characters in field values are 400",
    ),
    "llhttp/lenient-headers/second-request-header-value-lenient": (
        _REJECT,
        1,
        _LENIENT.format("headers") + "; the second request has a control character in a "
        "field value: the first is answered, the second gets 400",
    ),
    "llhttp/lenient-version/invalid-http-version-lenient": (
        _REJECT,
        0,
        _LENIENT.format("version") + "; only HTTP/1.0 and HTTP/1.1 are served (505)",
    ),
    "llhttp/method/m-search-request": (
        _REJECT,
        0,
        "SSDP 'M-SEARCH *': the asterisk-form is only for OPTIONS (RFC 9112 3.2.4); not "
        "something an application host serves",
    ),
    "llhttp/method/announce-request-with-rtsp": (
        _REJECT,
        0,
        "RTSP/1.0, not HTTP: a protocol name other than HTTP is 400 (RFC 9112 2.3: "
        "HTTP-name is case-sensitive 'HTTP'; llhttp also parses RTSP and ICE)",
    ),
    "llhttp/method/options-request-with-rtsp": (
        _REJECT,
        0,
        "RTSP/1.0, not HTTP (OPTIONS is a method of both): a protocol name other than HTTP is 400",
    ),
    "llhttp/method/source-request-with-ice": (
        _REJECT,
        0,
        "ICE/1.0 (SHOUTcast), not HTTP: a protocol name other than HTTP is 400",
    ),
    "llhttp/sample/no-http-version": (
        _REJECT,
        0,
        "HTTP/0.9 simple request (no version): only HTTP/1.0 and 1.1 are served (505)",
    ),
    "llhttp/sample/line-folding-in-header-value-with-crlf": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; " + _OBS_FOLD,
    ),
    "llhttp/sample/x-ssl-nonsense": (
        _REJECT,
        0,
        _LENIENT.format("headers") + "; " + _OBS_FOLD,
    ),
    "llhttp/transfer-encoding/post-with-chunked-as-last-transfer-encoding": (
        _REJECT,
        0,
        _TE.format("'deflate, chunked'"),
    ),
    "llhttp/transfer-encoding/post-with-chunked-as-last-transfer-encoding-multiple-headers": (
        _REJECT,
        0,
        _TE.format("'deflate' then 'chunked'"),
    ),
    "llhttp/transfer-encoding/chunk-header-not-terminated-by-crlf-lenient": (
        _REJECT,
        0,
        _LENIENT.format("optional LF after CR") + "; a bare CR is 400 (RFC 9112 2.2)",
    ),
    "llhttp/transfer-encoding/space-after-chunk-header-lenient": (
        _REJECT,
        0,
        _LENIENT.format("spaces after chunk size") + "; invalid chunk size, 400 (a "
        "chunk-size disagreement is a smuggling vector)",
    ),
}

#: Cases whose expected headers omit names containing "_" (gunicorn's header_map=drop);
#: Corral drops those in the CGI environment, so comparisons ignore them on our side.
UNDERSCORE_DROPPED = frozenset({"gunicorn/valid/040"})


def corpus_available() -> bool:
    return (CORPUS_DIR / "gunicorn" / "expectations.json").is_file() and (
        CORPUS_DIR / "llhttp" / "request"
    ).is_dir()


# --------------------------------------------------------------------------------------------
# gunicorn: tests/requests/{valid,invalid}/*.http + expectations.json
# --------------------------------------------------------------------------------------------

_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|[rnt0\\])")
_SIMPLE_ESCAPES = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\0", b"\\": b"\\"}


def decode_gunicorn_http(text: bytes) -> bytes:
    """The file format: real newlines are layout only; ``\\r\\n``, ``\\n``, ``\\t``, ``\\0``
    and ``\\xHH`` are the escaped bytes."""
    text = text.replace(b"\n", b"")

    def replace(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        return _SIMPLE_ESCAPES[code]

    data = _ESCAPE.sub(replace, text)
    return data


def _gunicorn_limits(config: dict[str, Any]) -> dict[str, int]:
    limits = dict(GUNICORN_DEFAULT_LIMITS)
    for key, ours in _GUNICORN_LIMIT_KEYS.items():
        if key in config:
            value = int(config[key])
            if value == 0:  # gunicorn: 0 means "the default" (see invalid/limit_header_default_01)
                value = GUNICORN_DEFAULT_LIMITS[ours]
            limits[ours] = value
    return limits


def _gunicorn_cases() -> list[Case]:
    base = CORPUS_DIR / "gunicorn"
    data = json.loads((base / "expectations.json").read_text())
    cases = []
    for name, exp in sorted(data["cases"].items()):
        raw = decode_gunicorn_http((base / f"{name}.http").read_bytes())
        requests = tuple(
            ExpectedRequest(
                method=r["method"].encode("latin-1"),
                target=r["uri"].encode("latin-1"),
                version="{}.{}".format(*r["version"]),
                headers=tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in r["headers"]),
                body=r["body_latin1"].encode("latin-1"),
                trailers=tuple(
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in r.get("trailers", [])
                ),
            )
            for r in exp.get("requests", [])
        )
        cases.append(
            _case(
                f"gunicorn/{name}",
                raw,
                "gunicorn",
                requests,
                exp.get("error"),
                exp["config"],
                _gunicorn_limits(exp["config"]),
                source=f"gunicorn/{name}.http",
            )
        )
    return cases


# --------------------------------------------------------------------------------------------
# llhttp: test/request/*.md, ```http input then ```log of parser callbacks
# --------------------------------------------------------------------------------------------

_BLOCK = re.compile(
    r"^##+ (?P<title>[^\n]*)\n(?:(?!^##).)*?<!-- meta=(?P<meta>\{[^\n]*?\}) -->\s*\n"
    r"```http\n(?P<http>.*?)^```[ \t]*\n(?:(?!^##).)*?^```log\n(?P<log>.*?)^```",
    re.S | re.M,
)
_LOG_LINE = re.compile(r"^off=(?:\d+|NULL) (?P<rest>.*)$")
_SPAN = re.compile(r'^len=\d+ span\[(?P<kind>\w+)\]="(?P<value>.*)"$')
#: llhttp "errors" that are not errors for a server: the stream switches protocol (Upgrade,
#: CONNECT) or the connection ends after ``Connection: close``.
_NOT_ERRORS = ("Pause on CONNECT/Upgrade", "Data after `Connection: close`")


def decode_llhttp_http(block: str) -> bytes:
    """Mirror llhttp's test/md-test.ts: the block's newlines are CRLF, escapes are bytes."""
    text = block
    if text.endswith("\n"):
        text = text[:-1]
    text = re.sub(r"\\(\r\n|\r|\n)", "", text)
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    text = text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")
    text = text.replace("\\f", "\f")
    text = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16)), text)
    text = re.sub(r"\\([0-7]{1,3})", lambda m: chr(int(m.group(1), 8)), text)
    return text.encode("utf-8")  # the harness passes the JS string as UTF-8


def _unescape_log(value: str) -> bytes:
    """Spans are printed raw; md-test.ts only turns ``\\t`` and ``\\f`` into bytes."""
    return value.replace("\\t", "\t").replace("\\f", "\f").encode("utf-8")


def _parse_llhttp_log(log: str) -> tuple[list[ExpectedRequest], str | None, bool]:
    """-> (complete requests, error reason or None, last message left incomplete)."""
    requests: list[ExpectedRequest] = []
    error: str | None = None
    current: dict[str, Any] | None = None
    last_kind = ""
    for line in log.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        rest = match.group("rest")
        if rest == "message begin":
            current = {
                "method": b"",
                "url": b"",
                "version": b"",
                "headers": [],
                "trailers": [],
                "body": b"",
                "in_body": False,
            }
            last_kind = ""
            continue
        if rest.startswith("error "):
            reason = re.search(r'reason="(.*)"', rest)
            text = reason.group(1) if reason else rest
            if text not in _NOT_ERRORS:
                error = text
            break
        if rest.startswith("finish="):
            if rest != "finish=0":
                error = f"llhttp_finish: {rest}"
            break
        if current is None:
            continue
        if rest.startswith("headers complete"):
            current["in_body"] = True
            continue
        if rest == "message complete":
            current["headers"] = [(k, v) for k, v in current["headers"]]
            requests.append(
                ExpectedRequest(
                    method=current["method"],
                    target=current["url"],
                    version=current["version"].decode("latin-1"),
                    headers=tuple(current["headers"]),
                    body=current["body"],
                    trailers=tuple(current["trailers"]),
                )
            )
            current = None
            continue
        span = _SPAN.match(rest)
        if span is None:
            continue
        kind, value = span.group("kind"), _unescape_log(span.group("value"))
        fields = current["trailers"] if current["in_body"] else current["headers"]
        if kind in ("method", "url", "version"):
            current[kind] += value
        elif kind == "body":
            current["body"] += value
        elif kind == "header_field":
            if last_kind == "header_field":
                fields[-1] = (fields[-1][0] + value, fields[-1][1])
            else:
                fields.append((value, b""))
        elif kind == "header_value":
            fields[-1] = (fields[-1][0], fields[-1][1] + value)
        last_kind = kind
    return requests, error, current is not None


def _llhttp_cases() -> list[Case]:
    base = CORPUS_DIR / "llhttp" / "request"
    cases = []
    for path in sorted(base.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        seen: dict[str, int] = {}
        for match in _BLOCK.finditer(text):
            meta = json.loads(match.group("meta"))
            title = match.group("title").strip()
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            seen[slug] = seen.get(slug, 0) + 1
            if seen[slug] > 1:
                slug = f"{slug}-{seen[slug]}"
            line = text.count("\n", 0, match.start()) + 1
            raw = decode_llhttp_http(match.group("http"))
            requests, error, incomplete = _parse_llhttp_log(match.group("log"))
            if error is None and incomplete:
                error = "incomplete message at EOF (llhttp_finish: HPE_INVALID_EOF_STATE)"
            cases.append(
                _case(
                    f"llhttp/{path.stem}/{slug}",
                    raw,
                    "llhttp",
                    tuple(requests),
                    error,
                    meta,
                    {},
                    source=f"llhttp/request/{path.name}:{line}",
                )
            )
    return cases


#: Applied to every case rather than listed in DEVIATIONS: both corpora have many HTTP/1.1
#: requests without Host (their parsers leave that check to the server).
NO_HOST = (
    "an HTTP/1.1 request without Host is 400 (RFC 9112 3.2: a server MUST reject it); "
    "the requests before it are answered"
)


def _first_without_host(requests: tuple[ExpectedRequest, ...]) -> int | None:
    """Index of the first HTTP/1.1 request with no Host field, None if every one has it."""
    for index, request in enumerate(requests):
        if request.version == "1.1" and not any(n.lower() == b"host" for n, _ in request.headers):
            return index
    return None


def _case(
    case_id: str,
    raw: bytes,
    corpus: str,
    requests: tuple[ExpectedRequest, ...],
    error: str | None,
    config: dict[str, Any],
    limits: dict[str, int],
    source: str,
) -> Case:
    accept, accepted, note = error is None, len(requests), ""
    if case_id in DEVIATIONS:
        accept, accepted, note = DEVIATIONS[case_id]
    hostless = _first_without_host(requests[:accepted])
    if hostless is not None:
        accept, accepted, note = _REJECT, hostless, NO_HOST + (f"; {note}" if note else "")
    return Case(
        case_id,
        raw,
        Expectation(
            corpus=corpus,
            requests=requests,
            upstream_error=error,
            upstream_config=config,
            limits=limits,
            accept=accept,
            accepted=accepted,
            note=note,
            source=source,
        ),
    )


@cache
def load_cases() -> tuple[Case, ...]:
    """Every case of both corpora (gunicorn first), as ``(id, raw, expectation)``."""
    return tuple(_gunicorn_cases() + _llhttp_cases())
