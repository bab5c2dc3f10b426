"""The development page for an exception raised during a request: the traceback with each
frame's source lines and local variables (stdlib only: this runs in the application's
interpreter).

Shown only when the front marks the request both as an application in development mode
(``CORRAL_DEVELOPMENT=1``, DEVELOPMENT_MODE) and as coming from a local client
(``CORRAL_LOCAL_CLIENT=1``: a loopback peer that no proxy forwarded, or the loopback client a
trusted proxy names: ``front.details``). Everyone else gets the plain 500, and the traceback
goes to the application's log either way.

Everything shown is HTML-escaped (a local variable's value is the application's data, which a
visitor may have chosen), the page carries a Content-Security-Policy that allows no script and
no external resource, and every part is capped: frames (the innermost ``MAX_FRAMES``), locals
per frame, characters per value (``reprlib``, then a hard cut), chained exceptions and the
whole page. Values of secret-looking names (``info.masked``: passwords, tokens, keys...) are
masked, as on the service-information page. A ``__repr__`` that fails does not fail the page
(``reprlib`` shows ``<T instance at 0x…>`` instead).
"""

from __future__ import annotations

import html
import linecache
import os
import reprlib
import sys
import traceback
from collections.abc import Mapping
from types import FrameType, TracebackType
from typing import Any

from corral.worker.info import MASK, is_secret, masked

DEVELOPMENT = "CORRAL_DEVELOPMENT"
LOCAL_CLIENT = "CORRAL_LOCAL_CLIENT"

#: The innermost frames shown (a recursion error has thousands).
MAX_FRAMES = 40
#: Local variables shown per frame.
MAX_LOCALS = 60
#: Characters of one value's repr.
MAX_VALUE = 600
#: Source lines shown around each frame's line.
CONTEXT_LINES = 3
#: Exceptions of a chain (``raise ... from``, "during handling of...") shown.
MAX_CHAIN = 5
#: Characters of the exception's message.
MAX_MESSAGE = 4000
#: Bytes of the whole page; beyond it the page ends with a note.
MAX_PAGE = 1024 * 1024

_repr = reprlib.Repr()
_repr.maxstring = MAX_VALUE
_repr.maxother = MAX_VALUE
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 20
_repr.maxdict = 20
_repr.maxlevel = 3

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { background: #8b1a1a; color: #fff; padding: 1rem 1.5rem; }
header h1 { margin: 0 0 .3rem; font-size: 1.3rem; }
header p { margin: 0; white-space: pre-wrap; word-break: break-word; font-family: monospace; }
main { padding: 1rem 1.5rem; }
.note { color: #555; }
.frame { background: #fff; border: 1px solid #ddd; border-radius: 4px; margin: .8rem 0; }
.frame.app { border-left: 4px solid #8b1a1a; }
.where { padding: .4rem .7rem; background: #f0f0f0; font-family: monospace; }
pre { margin: 0; padding: .4rem .7rem; overflow-x: auto; }
pre span { display: block; min-height: 1.2em; }
pre .current { background: #ffe9a8; }
table { border-collapse: collapse; margin: .3rem .7rem .7rem; font-family: monospace; }
th, td { text-align: left; vertical-align: top; padding: .1rem .6rem .1rem 0; }
td { white-space: pre-wrap; word-break: break-all; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .3rem; }
"""

HEAD_FIELDS = (
    b"Status: 500 Internal Server Error\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Cache-Control: no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
)


def wanted(environ: Mapping[str, Any]) -> bool:
    """Whether this request may see the page (see the module doc)."""
    return environ.get(DEVELOPMENT) == "1" and environ.get(LOCAL_CLIENT) == "1"


def wanted_params(params: list[tuple[bytes, bytes]]) -> bool:
    """``wanted`` from a request's FastCGI params (the ASGI worker's)."""
    return (DEVELOPMENT.encode(), b"1") in params and (LOCAL_CLIENT.encode(), b"1") in params


def response(exc: BaseException, method: str, path: str, *, head_only: bool = False) -> bytes:
    """The whole CGI response (head and, unless ``head_only``, the page)."""
    body = render(exc, method, path).encode("utf-8", "replace")
    head = HEAD_FIELDS + b"Content-Length: %d\r\n\r\n" % len(body)
    return head if head_only else head + body


def render(exc: BaseException, method: str, path: str) -> str:
    title = f"{type(exc).__qualname__} at {method} {path}"
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(_cut(title, 300))}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_esc(_cut(title, 300))}</h1><p>{_esc(_message(exc))}</p></header><main>",
        '<p class="note">Corral\'s development page: shown because DEVELOPMENT_MODE is on and '
        "this browser is on the server's own machine. Other visitors get a plain 500; the "
        "traceback is in the application's log. Innermost frame last.</p>",
    ]
    size = sum(len(p) for p in parts)
    for error, link in _chain(exc):
        if link:
            parts.append(f"<h2>{_esc(link)}</h2>")
            parts.append(f"<p><b>{_esc(_message(error))}</b></p>")
        for piece in _frames(error):
            size += len(piece)
            if size > MAX_PAGE:
                parts.append('<p class="note">(the rest is cut: the page is too long)</p>')
                return "".join(parts) + "</main></body></html>\n"
            parts.append(piece)
    parts.append(_environment())
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _chain(exc: BaseException) -> list[tuple[BaseException, str]]:
    """The exception, then the ones behind it (each with how it led to the one before)."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "It was raised from this exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "It was raised while handling this exception:"
        else:
            current = None
    return chain


def _message(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception_only(exc)).strip()
    except Exception as failure:  # a __str__ that fails
        text = f"{type(exc).__qualname__} (its message could not be shown: {failure!r})"
    return _cut(text, MAX_MESSAGE)


def _frames(exc: BaseException) -> list[str]:
    entries: list[tuple[FrameType, int]] = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        entries.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    # Corral's own worker frames around the application's call are noise to its author.
    while len(entries) > 1 and _is_worker(entries[0][0].f_code.co_filename):
        entries.pop(0)
    pieces = []
    hidden = len(entries) - MAX_FRAMES
    if hidden > 0:
        pieces.append(f'<p class="note">({hidden} outer frames not shown)</p>')
        entries = entries[hidden:]
    for frame, lineno in entries:
        pieces.append(_frame(frame, lineno))
    return pieces


def _frame(frame: FrameType, lineno: int) -> str:
    code = frame.f_code
    filename = code.co_filename
    library = _is_library(filename)
    where = f"{filename}, line {lineno}, in {code.co_name}"
    source = []
    for number in range(max(1, lineno - CONTEXT_LINES), lineno + CONTEXT_LINES + 1):
        line = linecache.getline(filename, number, frame.f_globals)
        if not line and number > lineno:
            break
        text = _esc(f"{number:>5}  {_cut(line.rstrip(), 300)}")
        current = ' class="current"' if number == lineno else ""
        source.append(f"<span{current}>{text}</span>")
    rows = []
    items = list(frame.f_locals.items())
    for name, value in items[:MAX_LOCALS]:
        rows.append(
            f"<tr><th>{_esc(_cut(str(name), 100))}</th><td>{_esc(_value(name, value))}</td></tr>"
        )
    if len(items) > MAX_LOCALS:
        rows.append(f"<tr><th>…</th><td>{len(items) - MAX_LOCALS} more</td></tr>")
    table = f"<table>{''.join(rows)}</table>" if rows else ""
    classes = "frame" if library else "frame app"
    code_block = "".join(source)
    return (
        f'<div class="{classes}"><div class="where">{_esc(where)}</div>'
        f"<pre>{code_block}</pre>{table}</div>"
    )


def _value(name: str, value: object) -> str:
    if type(value) is dict and len(value) <= 10_000:
        # A mapping of settings or of a request's variables: its secret-looking entries too.
        value = {
            key: MASK if isinstance(key, str) and is_secret(key) else item
            for key, item in value.items()
        }
    try:
        text = _repr.repr(value)
    except Exception as failure:
        text = f"<repr failed: {type(failure).__qualname__}>"
    return _cut(masked(str(name), text), MAX_VALUE)


def _is_worker(filename: str) -> bool:
    return filename.startswith(os.path.dirname(os.path.abspath(__file__)) + os.sep)


def _is_library(filename: str) -> bool:
    """A frame of the standard library, a site-packages or Corral's worker (not the app's)."""
    worker = os.path.dirname(os.path.abspath(__file__))
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return (
        "site-packages" in filename
        or filename.startswith(worker)
        or any(filename.startswith(os.path.join(p, "lib")) for p in prefixes)
    )


def _environment() -> str:
    rows = [
        ("Python", sys.version.split()[0]),
        ("Interpreter", sys.executable),
        ("Worker pid", str(os.getpid())),
    ]
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<h2>Worker</h2><table>{cells}</table>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
