"""The template's warm-up requests (``corral.worker.warmup``): the targets the WARM_UP setting
accepts and how the worker reads them, the requests served in-process through the worker's
FastCGI path, their statuses, a stuck warm-up, and Corral's own warm-up quickening its path."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.config.convert import to_warm_up
from corral.supervision.launch import WarmUp, python_worker_plan
from corral.worker import warmup

StartResponse = Callable[..., object]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("/", "/"),
        ("  /admin/login/  ", "/admin/login/"),
        ("/a?b=1&c=%20", "/a?b=1&c=%20"),
        ("http://example.com", "http://example.com/"),
        ("https://example.com:8443/x?y", "https://example.com:8443/x?y"),
        ("", ""),
    ],
)
def test_warm_up_values(text: str, value: str) -> None:
    assert to_warm_up(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "admin/login",
        "//evil.example/x",
        "/with space",
        "/frag#ment",
        "ftp://example.com/",
        "http://",
        "http://user@example.com/",
        "http://bad_host/",
        "http://example.com:99999/",
        "/tab\there",
    ],
)
def test_warm_up_refusals(text: str) -> None:
    with pytest.raises(ValueError, match=r"warm-up|host name|at most"):
        to_warm_up(text)


_PATH_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters="#"
)


@given(
    st.one_of(
        st.text(_PATH_CHARS, max_size=40).map(lambda t: "/" + t.lstrip("/")),
        st.builds(
            lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
            st.sampled_from(["http", "https"]),
            st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,5}){0,2}", fullmatch=True),
            st.sampled_from(["", ":80", ":8443"]),
            st.text(_PATH_CHARS, max_size=20),
        ),
    )
)
def test_what_the_host_accepts_the_worker_reads(text: str) -> None:
    """Every value the configuration accepts is one the worker's template can request: a path
    the app sees as PATH_INFO (with its query apart), a host it sees as HTTP_HOST."""
    value = to_warm_up(text)
    target = warmup.parse_target(value)
    assert target.path.startswith("/")
    pairs = dict(warmup.params(target, "/mount"))
    assert pairs[b"PATH_INFO"] == unquote_to_bytes(target.path)
    assert pairs[b"REQUEST_URI"] == b"/mount" + target.path.encode()
    assert pairs[b"QUERY_STRING"] == target.query.encode()
    if value.startswith("http"):
        assert pairs[b"HTTP_HOST"].decode() == value.split("/")[2]
        assert (pairs.get(b"HTTPS") == b"on") == value.startswith("https:")
    else:
        assert pairs[b"HTTP_HOST"] == b"localhost"


@pytest.mark.parametrize(
    ("path", "info"),
    [
        ("/a%20b", b"/a b"),
        ("/%", b"/%"),
        ("/%4", b"/%4"),
        ("/%41%42", b"/AB"),
        ("/%zz", b"/%zz"),
        ("/%C3%A9t%C3%A9", "/été".encode()),
        ("/été", "/été".encode()),
    ],
)
def test_path_info_is_the_path_with_its_escapes_decoded(path: str, info: bytes) -> None:
    assert warmup.unquote(path) == info == unquote_to_bytes(path)


def test_the_launch_plan_carries_the_warm_up() -> None:
    plan = python_worker_plan("/app", warm_up=WarmUp("/warm?x=1", 3, "/blog"))
    argv = list(plan.argv)
    i = argv.index("--warm-up")
    assert argv[i : i + 6] == [
        "--warm-up",
        "/warm?x=1",
        "--warm-up-requests",
        "3",
        "--warm-up-script-name",
        "/blog",
    ]
    assert "--warm-up" not in python_worker_plan("/app").argv


def later() -> float:
    return time.monotonic() + 30


def never_stuck() -> None:
    raise AssertionError("the warm-up was declared stuck")


def test_requests_reach_the_app_through_the_worker_path() -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        seen.append(environ)
        status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"x" * 300_000]  # more than a socket buffer: the front's end reads as it goes

    target = warmup.parse_target("https://example.test:8443/page?q=1")
    assert warmup.warm_app(app, target, 3, "/blog", never_stuck, later()) == [200, 200, 200]
    assert len(seen) == 3
    environ = seen[0]
    assert environ["PATH_INFO"] == "/page"
    assert environ["SCRIPT_NAME"] == "/blog"
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["HTTP_HOST"] == "example.test:8443"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REQUEST_METHOD"] == "GET"
    missing = warmup.parse_target("/missing")
    assert warmup.warm_app(app, missing, 2, "", never_stuck, later()) == [404, 404]
    # The front's thread is gone: the template may fork.
    assert not [t for t in threading.enumerate() if t.name == "corral-warm-up"]


def test_an_exception_is_a_500_with_its_traceback_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("broken on purpose")

    warmup.before_fork(app, "/boom", 2, "", never_stuck, later())  # returns: the template goes on
    err = capsys.readouterr().err
    assert "GET /boom: the application failed; answering 500" in err
    assert "RuntimeError: broken on purpose" in err
    assert "warm-up request GET /boom: 2 of 2 not 2xx (500 x2); the workers are forked" in err


def test_an_app_that_exits_does_not_end_the_template(capsys: pytest.CaptureFixture[str]) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise SystemExit(3)

    warmup.before_fork(app, "/exit", 2, "", never_stuck, later())
    err = capsys.readouterr().err
    assert "warm-up: the request ended the serving path: SystemExit: 3" in err
    assert "warm-up request GET /exit: 2 of 2 not 2xx (no answer x2); the workers are" in err


def test_the_deadline_leaves_the_template_time_to_answer() -> None:
    assert warmup.deadline(100.0, 30.0) == 127.0
    assert warmup.deadline(100.0, 5.0) == 104.0
    assert warmup.deadline(100.0, 300.0) == 395.0
    assert warmup.deadline(100.0, None) == 127.0


def test_no_time_left_skips_the_app_s_warm_up(capsys: pytest.CaptureFixture[str]) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise AssertionError("the app was called")

    warmup.before_fork(app, "/late", 3, "", never_stuck, time.monotonic() - 1)
    assert "warm-up request GET /late: not sent: the app's import took" in capsys.readouterr().err


def test_a_stuck_warm_up_calls_on_stuck() -> None:
    release = threading.Event()
    stuck: list[bool] = []

    def on_stuck() -> None:  # (the template's ends the process; here the app is let go)
        stuck.append(True)
        release.set()

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        release.wait(10)
        start_response("200 OK", [])
        return [b""]

    target = warmup.parse_target("/slow")
    statuses = warmup.serve(app, [warmup.params(target, "")], on_stuck, time.monotonic() + 0.2)
    assert stuck == [True]
    assert statuses == []


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="3.11's quickening is measured")
def test_corral_s_own_warm_up_quickens_its_path_in_place() -> None:
    """In a fresh interpreter, the worker's per-request code is still as compiled; after
    Corral's own warm-up (an internal app, no app code) it is quickened: a forked worker finds
    it so, in pages it shares with the template."""
    script = """
import sys
from corral.worker import environ, server, warmup, wsgi
codes = [server.Connection.serve.__code__, server.Connection._whole_request.__code__,
         environ.environ_from_params.__code__, wsgi.run.__code__]
before = [c._co_code_adaptive == c.co_code for c in codes]
if sys.argv[1] == "warm":
    assert warmup.warm_own(lambda: None, 1e9) == [200] * warmup.OWN_REQUESTS
print(before, [c._co_code_adaptive == c.co_code for c in codes])
"""
    cold = subprocess.run([sys.executable, "-c", script, "cold"], capture_output=True, text=True)
    warm = subprocess.run([sys.executable, "-c", script, "warm"], capture_output=True, text=True)
    assert cold.stdout.split() and warm.stdout.split(), cold.stderr + warm.stderr
    assert cold.stdout.strip() == "[True, True, True, True] [True, True, True, True]"
    assert warm.stdout.strip() == "[True, True, True, True] [False, False, False, False]"
