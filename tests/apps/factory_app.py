"""An app built by a factory with arguments (``WSGI_HANDLER=factory_app.make_app(...)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def make_app(greeting: str = "hi", *, repeat: int = 1) -> Callable[..., Any]:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [(greeting * repeat).encode()]

    return application


class Holder:
    class Inner:
        application = staticmethod(make_app("nested"))
