"""The worker's development page for an exception: what it shows, what it escapes, what it
caps, and who gets it (``corral.worker.debugpage``)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.worker import debugpage


def _raise(function: object, *args: object) -> BaseException:
    try:
        function(*args)  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


#: Built at run time, so that the source lines the page shows do not hold them.
TOKEN = "-".join(["hunter2", "do", "not", "show"])
URL = "postgres://app:" + "s3" + "cret@db/app"


def view(user_input: str) -> None:
    api_token = TOKEN  # noqa: F841 (shown, masked, in the page)
    database_url = URL  # noqa: F841
    rows = list(range(10_000))  # noqa: F841
    big = "x" * 100_000  # noqa: F841
    raise ValueError(f"bad input: {user_input}")


def test_the_page_shows_the_traceback_with_the_locals() -> None:
    exc = _raise(view, "hello")
    page = debugpage.render(exc, "GET", "/orders/1")
    assert "<title>ValueError at GET /orders/1</title>" in page
    assert "ValueError: bad input: hello" in page
    assert "in view" in page and "raise ValueError(f&quot;bad input: {user_input}&quot;)" in page
    assert "<th>user_input</th><td>&#x27;hello&#x27;</td>" in page
    # Masked like the service-information page: secret-looking names, URL passwords.
    assert TOKEN not in page and "s3cret" not in page
    assert "postgres://app:********@db/app" in page
    assert "<th>api_token</th><td>********</td>" in page


def test_secret_looking_entries_of_a_dict_are_masked() -> None:
    def settings_view() -> None:
        config = {"DEBUG": True, "DATABASE_PASSWORD": TOKEN, "HTTP_COOKIE": TOKEN}
        raise KeyError(len(config))

    page = debugpage.render(_raise(settings_view), "GET", "/")
    assert TOKEN not in page
    assert "&#x27;DATABASE_PASSWORD&#x27;: &#x27;********&#x27;" in page
    assert "&#x27;DEBUG&#x27;: True" in page


def test_everything_from_the_application_is_escaped() -> None:
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    page = debugpage.render(_raise(view, payload), "GET", "/<b>")
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_no_markup_from_a_value_survives(text: str) -> None:
    page = debugpage.render(_raise(view, text), "GET", text)
    # The only tags are the page's own: every '<' the value had was escaped.
    tags = set(re.findall(r"<(/?[a-zA-Z0-9!]+)", page))
    assert tags <= {
        "!DOCTYPE",
        "html",
        "/html",
        "head",
        "/head",
        "meta",
        "title",
        "/title",
        "style",
        "/style",
        "body",
        "/body",
        "header",
        "/header",
        "h1",
        "/h1",
        "p",
        "/p",
        "main",
        "/main",
        "div",
        "/div",
        "pre",
        "/pre",
        "span",
        "/span",
        "table",
        "/table",
        "tr",
        "/tr",
        "th",
        "/th",
        "td",
        "/td",
        "h2",
        "/h2",
        "b",
        "/b",
    }, tags


def test_values_and_frames_are_capped() -> None:
    def recurse(n: int) -> None:
        recurse(n + 1)

    exc = _raise(recurse, 0)
    assert isinstance(exc, RecursionError)
    page = debugpage.render(exc, "GET", "/")
    assert page.count('<div class="frame') == debugpage.MAX_FRAMES
    assert "outer frames not shown" in page
    assert len(page.encode()) < debugpage.MAX_PAGE + 64 * 1024
    big = debugpage.render(_raise(view, "y" * 1_000_000), "GET", "/")
    assert "x" * (debugpage.MAX_VALUE + 1) not in big
    assert "y" * (debugpage.MAX_MESSAGE + 1) not in big


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_a_failing_repr_does_not_fail_the_page() -> None:
    def fails() -> None:
        value = Hostile()
        raise KeyError(value is None)

    page = debugpage.render(_raise(fails), "GET", "/")
    assert "<th>value</th><td>&lt;Hostile instance at 0x" in page  # reprlib's stand-in


def test_chained_exceptions_are_shown() -> None:
    def chained() -> None:
        try:
            {}["missing"]
        except KeyError as error:
            raise LookupError("wrapped") from error

    page = debugpage.render(_raise(chained), "GET", "/")
    assert "LookupError: wrapped" in page
    assert "It was raised from this exception:" in page and "KeyError: &#x27;missing&#x27;" in page


def test_the_response_is_a_500_that_runs_no_script() -> None:
    response = debugpage.response(_raise(view, "x"), "GET", "/")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 500 Internal Server Error\r\n")
    assert b"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'" in head
    assert b"Content-Length: %d" % len(body) in head


@pytest.mark.parametrize(
    ("environ", "shown"),
    [
        ({"CORRAL_DEVELOPMENT": "1", "CORRAL_LOCAL_CLIENT": "1"}, True),
        ({"CORRAL_DEVELOPMENT": "1"}, False),  # a remote client of a development app
        ({"CORRAL_LOCAL_CLIENT": "1"}, False),  # never sent without development mode
        ({}, False),
    ],
)
def test_only_a_local_client_of_a_development_app(environ: dict[str, str], shown: bool) -> None:
    assert debugpage.wanted(environ) is shown
    params = [(k.encode(), v.encode()) for k, v in environ.items()]
    assert debugpage.wanted_params(params) is shown
