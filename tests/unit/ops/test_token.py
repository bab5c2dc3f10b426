"""The admin token (``corral.ops.token``): where it comes from, and the check of a request."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from corral.ops.token import (
    TokenGuard,
    admin_token,
    bearer,
    check_metrics,
    cookie,
    metrics_token,
    without_param,
)

TOKEN = "t0ken-t0ken-t0ken-t0ken"


def test_the_environment_wins(tmp_path: Path) -> None:
    found = admin_token(tmp_path, "site", {"CORRAL_ADMIN_TOKEN": TOKEN})
    assert found.token == TOKEN and found.path is None
    assert list(tmp_path.iterdir()) == []


def test_a_made_token_is_private_and_kept(tmp_path: Path) -> None:
    made = admin_token(tmp_path, "site", {})
    assert made.created and made.path == tmp_path / "site.admin-token"
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert len(made.token) >= 40
    again = admin_token(tmp_path, "site", {})
    assert again.token == made.token and not again.created
    os.chmod(made.path, 0o644)  # readable by others: not trusted, replaced
    replaced = admin_token(tmp_path, "site", {})
    assert replaced.created and replaced.token != made.token
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600


def test_metrics_token_config_then_environment() -> None:
    assert metrics_token(None, {}) is None
    assert metrics_token(None, {"CORRAL_METRICS_TOKEN": "m"}) == "m"
    assert metrics_token("c", {"CORRAL_METRICS_TOKEN": "m"}) == "c"
    assert check_metrics(None, None)
    assert check_metrics("m", b"Bearer m") and not check_metrics("m", b"Bearer x")
    assert not check_metrics("m", None) and not check_metrics("m", b"Basic m")


def test_bearer_and_cookie_parsing() -> None:
    assert bearer(b"Bearer abc") == b"abc" and bearer(b"bearer  abc ") == b"abc"
    assert bearer(b"Basic abc") is None and bearer(b"Bearer") is None and bearer(None) is None
    assert cookie([b"a=1; corral_admin=xyz; b=2"]) == b"xyz"
    assert cookie([b"a=1", b"corral_admin=q"]) == b"q"
    assert cookie([b"corral_adminx=1"]) is None


def test_login_and_redirect_drop_the_token() -> None:
    guard = TokenGuard(TOKEN)
    assert guard.login(f"token={TOKEN}".encode())
    assert not guard.login(b"token=nope")
    assert without_param(b"/", f"a=1&token={TOKEN}&b=2".encode(), "token") == "/?a=1&b=2"
    assert without_param(b"/", f"token={TOKEN}".encode(), "token") == "/"
    set_cookie = guard.login_cookie().decode()
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert guard.authenticated(None, [set_cookie.split(";")[0].encode()])
    assert guard.authenticated(f"Bearer {TOKEN}".encode(), [])
    assert not guard.authenticated(b"Bearer nope", [b"corral_admin=nope"])


def test_actions_need_post_token_csrf_and_same_origin() -> None:
    guard = TokenGuard(TOKEN)
    jar = [f"corral_admin={TOKEN}".encode()]
    csrf = guard.csrf.encode()
    host = b"127.0.0.1:9100"
    ok = guard.action_refusal(b"POST", None, jar, csrf, b"http://127.0.0.1:9100", host)
    assert ok is None
    assert guard.action_refusal(b"GET", None, jar, csrf, None, host) == (
        405,
        "actions are POST requests",
    )
    refused = guard.action_refusal(b"POST", None, jar, None, None, host)
    assert refused is not None and refused[0] == 403  # the cookie alone is not enough
    refused = guard.action_refusal(b"POST", None, jar, csrf, b"http://evil.example", host)
    assert refused is not None and refused[0] == 403
    refused = guard.action_refusal(b"POST", None, jar, csrf, b"null", host)
    assert refused is not None and refused[0] == 403
    refused = guard.action_refusal(b"POST", None, [], csrf, None, host)
    assert refused is not None and refused[0] == 401
    bearer_ok = guard.action_refusal(b"POST", f"Bearer {TOKEN}".encode(), [], None, None, host)
    assert bearer_ok is None
    assert guard.csrf != TOKEN and TOKEN not in guard.csrf


@given(st.text(min_size=1, max_size=60))
def test_any_other_token_is_refused(other: str) -> None:
    guard = TokenGuard(TOKEN)
    raw = other.encode("utf-8", "surrogatepass")
    if raw == TOKEN.encode():
        return
    assert not guard.authenticated(b"Bearer " + raw, [b"corral_admin=" + raw])
