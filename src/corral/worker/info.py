"""The built-in service-information page.

Served when no application is configured (like Helicon Zoo's stub page on a fresh site), and
reusable by applications: ``render(environ, ...)`` returns the HTML, ``application`` is a complete
WSGI app. Values whose names look secret are masked, and everything is HTML-escaped.

What ``application`` (the page of a site with no application) shows depends on who may see it:
the whole page (interpreter, application root, ``sys.path``, the host's variables, the request's
environ) only to an application in development mode (the front sends ``CORRAL_DEVELOPMENT=1``
with its requests); anyone else gets the bare page: that the site is served and how to configure
it, with nothing about the machine or the request. The worker cannot tell a local client from a
visitor behind a proxy on the same host (both come from a loopback address), so locality is no
criterion here; development mode is how a developer asks for the details.
"""

from __future__ import annotations

import html
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Names containing any of these words (case-insensitive) have their values masked.
SECRET_WORDS = (
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
    "PRIVATE",
    "SIGNATURE",
    "CSRF",
    "SALT",
)
_SECRET_NAME = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)
# scheme://user:password@host -> the password part, in any value (database URLs and the like).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)")
MASK = "********"

#: The variables the host sets that are worth showing on the page (from the process environment).
HOST_VARIABLES = (
    "WSGI_APP",
    "WSGI_HANDLER",
    "DJANGO_SETTINGS_MODULE",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "ERROR_LOG_DIR",
    "DEPLOY_FILE",
    "CORRAL_ENGINE",
)


def is_secret(name: str) -> bool:
    """True when a variable's name suggests its value is a secret."""
    return _SECRET_NAME.search(name) is not None


def masked(name: str, value: object) -> str:
    """The value as shown on the page: masked when secret-looking, URL passwords hidden."""
    if is_secret(name):
        return MASK
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, str(value))


def _rows(items: Iterable[tuple[str, object]]) -> str:
    esc = html.escape
    return "\n".join(
        f"<tr><th>{esc(name)}</th><td>{esc(masked(name, value))}</td></tr>" for name, value in items
    )


def render(
    environ: Mapping[str, Any],
    *,
    title: str = "Corral: no application configured",
    intro_html: str | None = None,
) -> str:
    """The page as HTML text. ``intro_html`` is trusted markup placed under the title."""
    if intro_html is None:
        intro_html = (
            "<p>This site is served by Corral's Python worker, but no WSGI application is "
            "configured for it. Set <code>WSGI_APP</code> (for example "
            "<code>myapp.wsgi:application</code>) in the site's <code>web.config</code>, or put a "
            "<code>wsgi.py</code> defining <code>application</code> in the application root.</p>"
        )
    service = [
        ("Python version", sys.version.replace("\n", " ")),
        ("Python executable", sys.executable),
        ("Worker pid", os.getpid()),
        ("Engine", os.environ.get("CORRAL_ENGINE", "(not set)")),
        ("Application root", os.getcwd()),
        ("Virtual path", environ.get("SCRIPT_NAME", "") or "/"),
        ("Multithreaded", environ.get("wsgi.multithread", "")),
        ("sys.path", os.pathsep.join(sys.path)),
    ]
    host = [(name, os.environ[name]) for name in HOST_VARIABLES if name in os.environ]
    request = sorted((str(k), v) for k, v in environ.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 2em; }}
th, td {{ text-align: left; vertical-align: top; padding: .25em .5em;
         border-bottom: 1px solid #ddd; font-size: 90%; }}
th {{ white-space: nowrap; width: 15em; }}
td {{ font-family: ui-monospace, monospace; word-break: break-all; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{intro_html}
<h2>Service</h2>
<table>
{_rows(service)}
</table>
<h2>Host settings</h2>
<table>
{_rows(host)}
</table>
<h2>WSGI environ</h2>
<table>
{_rows(request)}
</table>
</body>
</html>
"""


def render_bare(title: str = "Corral: no application configured") -> str:
    """The page without the service information (for anyone not in development mode)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>This site is served by Corral, but no application is configured for it.</p>
<p>Its administrator configures one in the site's <code>web.config</code> (for example
<code>WSGI_APP</code>), and may set <code>DEVELOPMENT_MODE</code> to see the service
information on this page.</p>
</body>
</html>
"""


def page(
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    *,
    title: str = "Corral: no application configured",
    intro_html: str | None = None,
) -> list[bytes]:
    """Answer a request with the page (a WSGI app with extra keyword arguments)."""
    return _answer(environ, start_response, render(environ, title=title, intro_html=intro_html))


def _answer(environ: dict[str, Any], start_response: Callable[..., Any], text: str) -> list[bytes]:
    body = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
    ]
    start_response("200 OK", headers)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return []
    return [body]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The page of a site with no application: whole in development mode, else bare (see the
    module doc)."""
    if environ.get("CORRAL_DEVELOPMENT") == "1":
        return page(environ, start_response)
    return _answer(environ, start_response, render_bare())
