"""The compiled hot path (``setup.py``, ``src/corral/hotpath.py``) through real builds and real
processes: the wheel a C compiler builds holds the compiled modules and serves from a fresh
virtualenv; a build whose compiler fails, or that is asked for pure Python, is pure, serves
and says so; an editable install is pure; a stale extension module never reaches a wheel.

Building offline from copies of the sources (``--no-build-isolation``: the test extra brings
setuptools, wheel and mypy). The compiled build (about a minute) is made once per change of the
sources, for every test process: ``bench/compiledbuild.py`` caches its virtualenv by a hash of
the sources, under a lock. The pure-Python wheel of ``CORRAL_PURE_PYTHON=1`` is
``test_packaging.py``'s.
"""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests.harness import Conn, CorralServer, make_site, request

from corral import hotpath

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
import compiledbuild  # noqa: E402  (bench/compiledbuild.py)

# The compiled build (about a minute, longer on a busy machine) runs in the first test's set-up,
# or another process's while this one waits for its lock: the suite's 120 s would not cover it.
pytestmark = pytest.mark.timeout(600)

#: Corral's modules a worker in another interpreter imports: never compiled.
WORKER_PARTS = ("worker", "protocol/fastcgi", "protocol/websocket", "protocol/spawnctl", "errors")
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


@pytest.fixture(scope="session")
def compiled_venv() -> Path:
    return compiledbuild.compiled_venv()


def _site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import corral, os; print(os.path.dirname(corral.__file__))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=compiledbuild.clean_env(),
    )
    return Path(out.stdout.strip())


def _version(venv: Path, **env: str) -> str:
    out = subprocess.run(
        [venv / "bin" / "corral", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=compiledbuild.clean_env(**env),
    )
    return out.stdout.strip()


def test_the_compiled_wheel_holds_the_hot_path_compiled_and_the_workers_modules_pure(
    compiled_venv: Path,
) -> None:
    package = _site_packages(compiled_venv)
    assert package.is_relative_to(compiled_venv), package
    assert hotpath.compiled_modules(package) == list(hotpath.COMPILED)
    for name in hotpath.COMPILED:  # (the sources come along: tracebacks, reading)
        assert package.joinpath(*name.split(".")[1:]).with_suffix(".py").is_file(), name
    compiled = [
        str(p.relative_to(package)) for p in package.rglob("*") if p.name.endswith(EXTENSIONS)
    ]
    assert not [p for p in compiled if p.startswith(WORKER_PARTS)], compiled
    assert _version(compiled_venv) == f"corral 0.1.0 ({hotpath.COMPILED_WORD})"


def _serve_and_check(venv: Path, tmp_path: Path, build: str) -> None:
    """``corral serve`` from ``venv``: real requests through the front, end to end."""
    server = CorralServer(
        make_site(tmp_path),
        args=("--no-access-log",),
        command=(str(venv / "bin" / "corral"),),
        cwd=tmp_path,
        env={"PYTHONPATH": ""},
    )
    try:
        server.start()
        line = server.wait_log(rf"the front's hot path {build}")
        # A pure build says what a compiled one would save, and where to read how.
        assert ("Which build" in line) == (build == "pure Python"), line
        port = server.port
        with Conn(port) as conn:  # kept alive
            for _ in range(3):
                conn.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
                answer = conn.response()
                assert (answer.status, answer.body) == (200, b"Hello, world!\n")
            # pipelined
            conn.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n" * 2 + b"GET /pid HTTP/1.1\r\n\r\n")
            assert [conn.response().status for _ in range(2)] == [200, 200]
            assert conn.response().status == 400  # (HTTP/1.1 without Host)
        with Conn(port) as conn:  # a POST with a body, then a chunked one
            conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world")
            assert conn.response().body == b"hello world"
            conn.send(
                b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            assert conn.response().body == b"hello world"
            # A body without a length (chunked unless the front has it all before the head).
            conn.send(b"GET /stream?3 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.response().body == b"".join(bytes([i]) * 65536 for i in range(3))
        large = request(port, path="/big?40")  # 2.5 MiB with a Content-Length
        assert large.status == 200 and len(large.body) == 40 * 65536
        assert large.body[-1] == 39
        with Conn(port) as conn:
            conn.send(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = conn.response()
            assert answer.status == 200 and answer.header("connection") == "close"
            assert conn.closed_by_peer()
        with Conn(port) as conn:  # malformed
            conn.send(b"GET /hello HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
            assert conn.response().status == 400
            assert conn.closed_by_peer()
        assert request(port, path="/hello").status == 200  # the server lives on
    finally:
        server.stop()


def test_corral_serve_from_the_compiled_wheel_serves_end_to_end(
    compiled_venv: Path, tmp_path: Path
) -> None:
    _serve_and_check(compiled_venv, tmp_path, r"compiled \(mypyc\)")


def _wheel(tmp_path: Path, **env: str) -> tuple[Path, str]:
    source = compiledbuild.copy_sources(tmp_path / "source")
    # A stale extension module a previous compiled build left in the build folder: a pure build
    # must not ship it.
    stale = source / "build" / "lib" / "corral" / "front" / f"http1{EXTENSIONS[0]}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    return compiledbuild.build_wheel(source, tmp_path / "dist", compiledbuild.clean_env(**env))


def test_a_build_whose_compiler_fails_is_pure_python_and_serves(tmp_path: Path) -> None:
    wheel, out = _wheel(tmp_path, CC="/bin/false")
    warnings = [line for line in out.splitlines() if "corral: " in line]
    assert any("no usable C compiler" in line and "pure Python" in line for line in warnings), out
    assert wheel.name.endswith("-py3-none-any.whl"), wheel
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.endswith(EXTENSIONS)]
        assert "corral/front/http1.py" in archive.namelist()
    venv = compiledbuild.make_venv(tmp_path / "venv", wheel)
    assert _version(venv) == f"corral 0.1.0 ({hotpath.PURE})"
    _serve_and_check(venv, tmp_path, "pure Python")


def test_the_pure_switch_builds_pure_python_without_running_mypyc(tmp_path: Path) -> None:
    wheel, out = _wheel(tmp_path, CORRAL_PURE_PYTHON="1")
    assert "corral: CORRAL_PURE_PYTHON is set: building pure Python" in out, out
    assert "mypyc" not in out.replace("corral: ", "")  # (never ran)
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.endswith(EXTENSIONS)]


def test_an_editable_install_is_pure_python_and_leaves_no_extension_module(
    tmp_path: Path,
) -> None:
    source = compiledbuild.copy_sources(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # This interpreter's packages (pip, setuptools, mypy, Corral's dependencies) for that one,
    # by a plain path line: pip runs there and builds with what it finds (no isolation).
    deps = sorted({p for p in sys.path if p.endswith("-packages")})
    Path(site, "corral-test-deps.pth").write_text("".join(f"{p}\n" for p in deps))
    result = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-e",
            source,
        ],
        capture_output=True,
        text=True,
        timeout=compiledbuild.BUILD_TIMEOUT,
        env=compiledbuild.clean_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mypyc" not in result.stdout + result.stderr
    package = _site_packages(venv)
    assert package == source / "src" / "corral"  # (the sources themselves)
    assert _version(venv) == f"corral 0.1.0 ({hotpath.PURE})"
    assert not [p for p in source.rglob("*") if p.name.endswith(EXTENSIONS)]
