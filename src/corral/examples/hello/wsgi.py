"""Corral's example site: a start page that shows the service information.

``WSGI_APP=wsgi.application`` in web.config points the worker here. Replace this file with your
own application (or point ``WSGI_APP`` at it) and the site serves that instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.worker import info

INTRO = """
<p>It works: this page is the example application at <code>wsgi.py</code>, served by Corral's
Python worker over FastCGI. Edit <code>wsgi.py</code>, or set <code>WSGI_APP</code> in
<code>web.config</code> to your own application (<code>package.module:application</code>, or a
factory such as <code>myapp.create_app()</code>); for Django, set
<code>DJANGO_SETTINGS_MODULE</code>.</p>
<p>Secrets in the tables below (cookies, tokens, passwords, keys) are masked.</p>
"""


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    return info.page(environ, start_response, title="Hello from Corral", intro_html=INTRO)
