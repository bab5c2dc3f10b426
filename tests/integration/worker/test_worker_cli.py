"""The worker as a process: how it finds the app, binds (fd 0, unix:, tcp), fails (exit codes
with a traceback), dies with its host (liveness pipe), and the service-information page."""

from __future__ import annotations

import html
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.worker_support import (
    APPS,
    Workers,
    fcgiclient,
    free_port,
    start_worker,
    unix_address,
    worker_env,
    workers_fixture,
)

from corral.errors import ExitCode
from corral.worker import loader

Client = fcgiclient.Client
base_params = fcgiclient.base_params


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


def run_to_exit(tmp_path: Path, *args: str, **kwargs: object) -> tuple[int, str]:
    """Start a worker that is expected to exit by itself; its exit code and output."""
    worker = start_worker(tmp_path, *args, wait=False, **kwargs)  # type: ignore[arg-type]
    try:
        code = worker.proc.wait(15)
    finally:
        worker.stop()
    return code, worker.log


# -------------------------------------------------------------------------------- app loading


def write_app(folder: Path, name: str, source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source))


HELLO = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WSGI_APP": "site_app.application"}, b"site"),
        ({"WSGI_APP": "pkg.sub:holder.app"}, b"nested"),
        ({"WSGI_APP": "pkg.sub.holder.app"}, b"nested"),
        ({"WSGI_HANDLER": "factory_app.make_app()"}, b"hi"),
        ({"WSGI_HANDLER": "factory_app.make_app('yo', repeat=3)"}, b"yoyoyo"),
        ({"WSGI_HANDLER": "factory_app:Holder.Inner.application"}, b"nested"),
        ({"WSGI_APP": "site_app.application", "WSGI_HANDLER": "factory_app.make_app()"}, b"site"),
        ({"DJANGO_SETTINGS_MODULE": "mysite.settings"}, b"django:mysite.settings"),
        ({}, b"from wsgi.py"),
    ],
)
def test_app_sources(
    workers: Workers, tmp_path: Path, env: dict[str, str], expected: bytes
) -> None:
    site = tmp_path / "site"
    write_app(site, "site_app.py", HELLO % "site")
    write_app(site, "wsgi.py", HELLO % "from wsgi.py")
    write_app(site / "pkg", "__init__.py", "")
    write_app(
        site / "pkg",
        "sub.py",
        "class holder:\n"
        "    @staticmethod\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [])\n"
        "        return [b'nested']\n",
    )
    (site / "factory_app.py").write_text((APPS / "factory_app.py").read_text())
    # A stand-in for Django: the worker only calls django.core.wsgi.get_wsgi_application().
    write_app(site / "django", "__init__.py", "")
    write_app(site / "django" / "core", "__init__.py", "")
    write_app(
        site / "django" / "core",
        "wsgi.py",
        """
        import os

        def get_wsgi_application():
            def application(environ, start_response):
                start_response("200 OK", [])
                return [("django:" + os.environ["DJANGO_SETTINGS_MODULE"]).encode()]
            return application
        """,
    )
    address = unix_address(tmp_path)
    workers.start("--bind", f"unix:{address}", cwd=site, env=env)
    assert fcgiclient.get(address, "/").body == expected


def test_without_any_app_the_service_information_page_is_served(
    workers: Workers, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-site"
    empty.mkdir()
    address = unix_address(tmp_path)
    workers.start(
        "--bind",
        f"unix:{address}",
        cwd=empty,
        env={"CORRAL_ENGINE": "python.3.x.wsgi", "SECRET_KEY": "s3cr3t-env"},
    )
    params = base_params(
        "/some/path",
        CORRAL_DEVELOPMENT="1",
        SCRIPT_NAME="/virtual",
        HTTP_COOKIE="sessionid=abc123secret",
        HTTP_AUTHORIZATION="Bearer t0ps3cret",
        HTTP_X_API_KEY="k3y-value",
        HTTP_X_NOTE="<script>alert(1)</script>",
        HTTP_X_UPSTREAM="postgres://user:pa55word@db.example/app",
    )
    with Client(address) as client:
        response = client.request(params)
    assert response.status == "200 OK"
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    page = response.body.decode()
    assert "no application configured" in page
    assert html.escape(sys.version.split()[0]) in page
    assert "python.3.x.wsgi" in page  # the engine
    assert str(empty) in page  # the application root
    assert "/virtual" in page
    for secret in ("abc123secret", "t0ps3cret", "k3y-value", "pa55word", "s3cr3t-env"):
        assert secret not in page
    assert "postgres://user:********@db.example/app" in page
    assert "HTTP_COOKIE" in page and "********" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("args", "env", "first_line", "detail"),
    [
        (
            ("--app", "broken_app:application"),
            {},
            "corral worker: cannot load application 'broken_app:application' (from --app)",
            "ModuleNotFoundError: No module named 'corral_missing_dependency_for_tests'",
        ),
        (
            (),
            {"WSGI_APP": "no_such_module.app"},
            "corral worker: cannot load application 'no_such_module.app' (from WSGI_APP)",
            "No module named 'no_such_module'",
        ),
        (
            (),
            {"WSGI_APP": "worker_apps.no_such_attr"},
            "corral worker: cannot load application 'worker_apps.no_such_attr'",
            "'worker_apps' has no attribute 'no_such_attr'",
        ),
        (
            (),
            {"WSGI_HANDLER": "factory_app.make_app(__import__('os'))"},
            "corral worker: cannot load application",
            "only literal arguments",
        ),
        (
            (),
            {"WSGI_APP": "worker_apps.ROUTES"},
            "corral worker: cannot load application",
            "not a callable application",
        ),
    ],
)
def test_load_failure_exits_4_with_a_clear_first_line_and_the_traceback(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], first_line: str, detail: str
) -> None:
    code, log = run_to_exit(tmp_path, "--bind", f"unix:{unix_address(tmp_path)}", *args, env=env)
    assert code == ExitCode.APP_LOAD_FAILED == 4
    assert log.startswith(first_line), log
    assert detail in log
    if args:
        assert "Traceback (most recent call last)" in log
        assert 'broken_app.py", line' in log


def test_spec_parser_never_evaluates_code() -> None:
    parsed = loader.parse_spec("pkg.mod:make(1, 'a', flag=True, items=[1, 2], m={'k': None})")
    assert parsed.module == "pkg.mod"
    assert parsed.attrs == ("make",)
    assert parsed.call and parsed.args == (1, "a")
    assert dict(parsed.kwargs) == {"flag": True, "items": [1, 2], "m": {"k": None}}
    for bad in ("os.system('x')()", "a.b(c)", "a.b(*x)", "a.b(**x)", "a[0]", "a.b; c", "1 + 2"):
        with pytest.raises(loader.AppLoadError):
            loader.parse_spec(bad)
    assert loader.parse_spec("a.b.c").module is None
    assert loader.parse_spec("a.b.c").attrs == ("a", "b", "c")


# -------------------------------------------------------------------------------- binding


def test_serves_on_a_listening_socket_inherited_at_fd_0(workers: Workers, tmp_path: Path) -> None:
    address = unix_address(tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    try:
        workers.start("--app", "worker_apps:application", stdin=listener.fileno())
    finally:
        listener.close()  # the worker holds its own copy
    assert fcgiclient.get(address, "/hello").body == b"Hello, world!"
    with Client(address) as client:
        environ = client.request(base_params("/environ")).body
    assert b'"REQUEST_METHOD": "GET"' in environ


def test_serves_on_an_inherited_tcp_socket(workers: Workers) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        workers.start("--app", "worker_apps:application", stdin=listener.fileno())
    finally:
        listener.close()
    assert fcgiclient.get(("127.0.0.1", port), "/hello").body == b"Hello, world!"


def test_fd_0_not_a_socket_exits_bind_failed(tmp_path: Path) -> None:
    code, log = run_to_exit(tmp_path, "--app", "worker_apps:application")  # stdin is /dev/null
    assert code == ExitCode.BIND_FAILED
    assert "fd 0 is not a socket" in log


def test_fd_0_socket_that_is_not_listening_exits_bind_failed(tmp_path: Path) -> None:
    left, right = socket.socketpair()
    try:
        code, log = run_to_exit(tmp_path, "--app", "worker_apps:application", stdin=left.fileno())
    finally:
        left.close()
        right.close()
    assert code == ExitCode.BIND_FAILED
    assert "not a listening" in log


def test_bind_unix(workers: Workers) -> None:
    w = workers.unix()
    assert fcgiclient.get(w.address, "/hello").body == b"Hello, world!"  # type: ignore[arg-type]


def test_bind_unix_replaces_a_stale_socket_file(workers: Workers, tmp_path: Path) -> None:
    address = unix_address(tmp_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(address)
    stale.close()  # the file stays, nobody listens
    workers.start("--bind", f"unix:{address}", "--app", "worker_apps:application")
    assert fcgiclient.get(address, "/hello").body == b"Hello, world!"


def test_bind_tcp(workers: Workers) -> None:
    port = free_port()
    w = workers.start("--bind", f"127.0.0.1:{port}", "--app", "worker_apps:application")
    assert f"127.0.0.1:{port}" in w.log
    assert fcgiclient.get(("127.0.0.1", port), "/hello").body == b"Hello, world!"


def test_bind_failure_exits_bind_failed(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, log = run_to_exit(tmp_path, "--bind", f"127.0.0.1:{port}")
    assert code == ExitCode.BIND_FAILED
    assert f"cannot listen on 127.0.0.1:{port}" in log
    code, log = run_to_exit(tmp_path, "--bind", "nonsense")
    assert code == ExitCode.BIND_FAILED


# -------------------------------------------------------------------------------- liveness


def test_worker_exits_when_the_liveness_pipe_closes(workers: Workers) -> None:
    read_end, write_end = os.pipe()
    try:
        w = workers.unix("--liveness-fd", str(read_end), pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert fcgiclient.get(w.address, "/hello").body == b"Hello, world!"  # type: ignore[arg-type]
    assert w.proc.poll() is None
    os.close(write_end)  # the host "dies"
    assert w.proc.wait(10) == ExitCode.ORPHANED
    assert "liveness pipe closed" in w.log


def test_bad_liveness_fd_is_a_usage_error(tmp_path: Path) -> None:
    code, log = run_to_exit(
        tmp_path, "--bind", f"unix:{unix_address(tmp_path)}", "--liveness-fd", "97"
    )
    assert code == ExitCode.USAGE
    assert "--liveness-fd 97" in log


def test_help_runs_in_a_bare_interpreter_without_corral_dependencies(tmp_path: Path) -> None:
    """The worker imports only the stdlib and Corral's pure modules: run it with -I -S (no
    site-packages at all) and only Corral's src on the path."""
    src = Path(loader.__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(src)!r}); "
        "import corral.worker.server, corral.worker.__main__, corral.worker.info; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] not in "
        "sys.stdlib_module_names | {'corral', '__main__'}); "
        "print('outside stdlib:', bad)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=worker_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "outside stdlib: []"


def test_worker_exits_at_liveness_eof_even_when_its_stderr_is_a_dead_pipe(
    tmp_path: Path,
) -> None:
    """The host died: its end of the worker's stderr pipe is gone too, so the farewell log
    line fails with EPIPE. The worker must exit anyway."""
    live_read, live_write = os.pipe()
    err_read, err_write = os.pipe()
    address = unix_address(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral.worker",
            "--bind",
            f"unix:{address}",
            "--app",
            "worker_apps:application",
            "--liveness-fd",
            str(live_read),
        ],
        cwd=APPS,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        stdout=err_write,
        stderr=err_write,
        pass_fds=(live_read,),
        start_new_session=True,
    )
    os.close(live_read)
    os.close(err_write)
    try:
        with os.fdopen(err_read, "rb") as err:
            assert b"serving" in err.readline()  # ready; then the reader goes away
        os.close(live_write)
        assert proc.wait(10) == ExitCode.ORPHANED
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(5)
