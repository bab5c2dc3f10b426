"""The admin token: where it comes from, and the one check every admin page and action makes.

Where it comes from (``admin_token``): ``CORRAL_ADMIN_TOKEN`` in the environment, else the token
kept in the runtime folder (``ops.rundir``) as ``NAME.admin-token`` (mode 0600), made (random,
256 bits) the first time and reused afterwards, so that a bookmark or a script keeps working
across restarts. Deleting the file makes a new one at the next start.

How a request carries it (``TokenGuard``):

- ``Authorization: Bearer TOKEN`` (scripts, ``curl``);
- ``?token=TOKEN`` on a page (a link to paste in a browser): answered by a redirect to the same
  URL without it, setting an HttpOnly, SameSite=Strict cookie that carries it from then on
  (``login``), so that the token does not stay in the address bar or the history;
- that cookie.

Actions (anything that changes something) are POST only, and besides the token need either the
Bearer field, or the page's CSRF value (``csrf``: derived from the token, embedded in the page,
sent back as ``X-Corral-CSRF``) compared in constant time; an ``Origin`` field, when the browser
sends one, must be the admin listener's own origin (``action_refusal``). A cross-site page can
thus neither read the CSRF value nor make the browser send it.

Pure apart from ``admin_token`` (which reads the environment and the runtime folder). The web
console (``corral.console``) uses ``TokenGuard`` too, with its login cookie limited to the
console's path.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from corral.front.cgienv import ADMIN_COOKIE

#: The environment variables that set the tokens.
ADMIN_TOKEN_ENV = "CORRAL_ADMIN_TOKEN"
METRICS_TOKEN_ENV = "CORRAL_METRICS_TOKEN"
#: The cookie that carries the admin token after a ``?token=`` login.
COOKIE = ADMIN_COOKIE.decode()  # (the front never passes it on to applications)
#: The header field an action's CSRF value comes in.
CSRF_FIELD = b"x-corral-csrf"


@dataclass(frozen=True, slots=True)
class AdminToken:
    token: str
    #: Where it was read or written; None: from the environment.
    path: Path | None
    #: It was made now (not found).
    created: bool = False


def admin_token(folder: Path, name: str, environ: dict[str, str] | None = None) -> AdminToken:
    """The admin token: the environment's, else the one in ``folder`` (made when missing or
    unusable). ``OSError`` when the file cannot be written."""
    env = os.environ if environ is None else environ
    given = env.get(ADMIN_TOKEN_ENV, "").strip()
    if given:
        return AdminToken(given, None)
    path = folder / f"{name}.admin-token"
    kept = _read_private(path)
    if kept:
        return AdminToken(kept, path)
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return AdminToken(token, path, created=True)


def _read_private(path: Path) -> str | None:
    """The token in ``path`` if it is a regular file of ours that only we may read."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) >= 16 else None


def metrics_token(configured: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The token ``/metrics`` asks for: ``[server] metrics_token``, else the environment's."""
    env = os.environ if environ is None else environ
    return configured or env.get(METRICS_TOKEN_ENV, "").strip() or None


def same(given: str | bytes | None, expected: str) -> bool:
    """``given`` is ``expected``, compared in constant time."""
    if given is None:
        return False
    raw = given if isinstance(given, bytes) else given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(raw, expected.encode("utf-8"))


def bearer(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer TOKEN`` field."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(b" ")
    return value.strip() or None if scheme.lower() == b"bearer" else None


def cookie(header_values: list[bytes], name: str = COOKIE) -> bytes | None:
    """The value of cookie ``name`` among the request's Cookie fields."""
    wanted = name.encode("ascii")
    for value in header_values:
        for part in value.split(b";"):
            key, sep, data = part.strip().partition(b"=")
            if sep and key == wanted:
                return data.strip()
    return None


def query_param(query: bytes, name: str) -> str | None:
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == name:
            return value
    return None


def without_param(path: bytes, query: bytes, name: str) -> str:
    """``path?query`` with every ``name`` parameter dropped (the ``?token=`` redirect)."""
    kept = [(k, v) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
    rest = urlencode([(k, v) for k, v in kept if k != name])
    where = path.decode("latin-1") or "/"
    return f"{where}?{rest}" if rest else where


class TokenGuard:
    """Checks a request's credentials against one token (see the module docstring)."""

    __slots__ = ("_csrf", "_token")

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the admin token cannot be empty")
        self._token = token
        self._csrf = hmac.new(token.encode("utf-8"), b"corral-csrf", hashlib.sha256).hexdigest()

    @property
    def csrf(self) -> str:
        """The value a page embeds and its actions send back as ``X-Corral-CSRF``."""
        return self._csrf

    def authenticated(self, authorization: bytes | None, cookies: list[bytes]) -> bool:
        """The request carries the token (Bearer field or the login cookie)."""
        return same(bearer(authorization), self._token) or same(cookie(cookies), self._token)

    def login(self, query: bytes) -> bool:
        """``?token=`` on this request is the token (answer with ``login_cookie`` and a
        redirect without it)."""
        return same(query_param(query, "token"), self._token)

    def login_cookie(self, secure: bool = False, path: str = "/") -> bytes:
        """The ``Set-Cookie`` value after a ``?token=`` login, for the URLs at and below
        ``path`` (the web console's: the token is then never sent to the application)."""
        flags = "; Secure" if secure else ""
        return f"{COOKIE}={self._token}; Path={path}; HttpOnly; SameSite=Strict{flags}".encode()

    def action_refusal(
        self,
        method: bytes,
        authorization: bytes | None,
        cookies: list[bytes],
        csrf: bytes | None,
        origin: bytes | None,
        host: bytes | None,
    ) -> tuple[int, str] | None:
        """Why an action request is refused (status, message), or None: it may go ahead."""
        if method != b"POST":
            return 405, "actions are POST requests"
        if origin is not None and origin != b"null" and host is not None:
            if origin.lower() not in (b"http://" + host.lower(), b"https://" + host.lower()):
                return 403, "cross-origin request refused"
        elif origin == b"null":
            return 403, "cross-origin request refused"
        if same(bearer(authorization), self._token):
            return None
        if not same(cookie(cookies), self._token):
            return 401, "the admin token is missing or wrong"
        if not same(csrf, self._csrf):
            return 403, "the CSRF value is missing or wrong (reload the page)"
        return None


def check_metrics(token: str | None, authorization: bytes | None) -> bool:
    """``/metrics`` may be answered: no metrics token is set, or the Bearer field carries it."""
    return token is None or same(bearer(authorization), token)
