"""Finding things: an application by ``NAME`` or ``SITE/NAME`` (``ops.status``), the running
server's control socket (``ops.client.choose``), and a control socket's place, taken over from a
dead server or refused to a second live one (``ops.control.bind_socket``)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.ops.client import ClientError, choose, live_sockets
from corral.ops.control import MAX_PATH, ControlError, bind_socket, default_path
from corral.ops.rundir import name_for
from corral.ops.status import app_ids, find_app

APPS = [("main", "blog"), ("other", "blog"), ("main", "shop")]


def test_apps_are_named_by_name_or_by_site_where_two_sites_share_it() -> None:
    assert app_ids(APPS) == ["main/blog", "other/blog", "shop"]
    assert find_app("shop", APPS) == 2
    assert find_app("main/shop", APPS) == 2
    assert find_app("other/blog", APPS) == 1
    with pytest.raises(LookupError, match=r"several sites: say which \(main/blog, other/blog\)"):
        find_app("blog", APPS)
    with pytest.raises(LookupError, match=r"no application 'shp' \(applications: main/blog, "):
        find_app("shp", APPS)
    with pytest.raises(LookupError, match="no application 'x/shop'"):
        find_app("x/shop", APPS)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder (a Unix socket's path is at most 103 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="corral-t-"))
    yield path
    shutil.rmtree(path)


def listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.fspath(path))
    sock.listen()
    return sock


def stale(path: Path) -> None:
    """A socket file that nobody listens on any more (its server died)."""
    listening(path).close()
    assert path.exists()


def test_the_default_socket_is_named_after_the_configuration(tmp_path: Path) -> None:
    environ = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    site = tmp_path / "www"
    assert default_path(site, environ) == Path(f"/run/user/1000/corral/{name_for(site)}.sock")
    assert name_for(site).startswith("www-")


def test_a_dead_servers_socket_is_replaced_and_the_new_one_is_0600(folder: Path) -> None:
    path = folder / "site.sock"
    stale(path)
    sock = bind_socket(path)
    try:
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(os.fspath(path))  # the new socket is the one listening
    finally:
        sock.close()


def test_a_live_socket_refuses_a_second_server(folder: Path) -> None:
    path = folder / "site.sock"
    with listening(path), pytest.raises(ControlError, match="another corral serves this"):
        bind_socket(path)
    assert path.exists()  # left alone


def test_a_file_in_the_sockets_place_or_a_too_long_path_is_refused(folder: Path) -> None:
    path = folder / "site.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        bind_socket(path)
    long = folder / ("x" * (MAX_PATH - len(os.fspath(folder))) + ".sock")
    with pytest.raises(ControlError, match="too long for a Unix socket"):
        bind_socket(long)


def test_the_client_finds_the_only_live_server_and_ignores_stale_sockets(folder: Path) -> None:
    runtime = folder / "corral"
    runtime.mkdir()
    environ = {"XDG_RUNTIME_DIR": os.fspath(folder)}
    with pytest.raises(ClientError, match=f"no live control socket in {runtime}") as none:
        choose(None, environ)
    assert none.value.code == 1
    stale(runtime / "dead.sock")
    (runtime / "notes.txt").write_text("")
    with pytest.raises(ClientError, match="no running corral found"):
        choose(None, environ)
    with listening(runtime / "a.sock"):
        assert choose(None, environ) == runtime / "a.sock"
        with listening(runtime / "b.sock"):
            assert live_sockets(runtime) == [runtime / "a.sock", runtime / "b.sock"]
            with pytest.raises(ClientError, match="2 corral servers are running") as several:
                choose(None, environ)
            assert several.value.code == 2
            assert f"  {runtime / 'a.sock'}" in several.value.message
        assert choose(Path("/elsewhere.sock"), environ) == Path("/elsewhere.sock")
