"""`pip install corral` from a wheel gives a working `corral serve` that serves the bundled example.

The wheel is what `pip wheel .` builds by default, the hot path compiled (test_compiled.py has
the pure-Python builds), from a copy of the source tree (so the checkout is left as it was),
offline (`--no-build-isolation`: the test extra brings setuptools, wheel and mypy), cached by
the sources' hash (bench/compiledbuild.py), and installed with
`--no-deps --no-index` into a fresh virtualenv. That virtualenv reaches Corral's dependencies
(uvloop, httptools...) through a `.pth` line naming this interpreter's site-packages, which holds
them already: no network, and the `corral` it imports is the wheel's (asserted), never the
checkout's.
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from tests.harness import CorralServer, request

ROOT = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT = 300.0
sys.path.insert(0, str(ROOT / "bench"))
import compiledbuild  # noqa: E402  (bench/compiledbuild.py)

# The compiled build (about a minute, longer on a busy machine) runs in the first test's set-up,
# or another process's while this one waits for its lock: the suite's 120 s would not cover it.
pytestmark = pytest.mark.timeout(600)


def _run(*argv: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=_clean_env(),
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with Corral installed from the wheel ``pip wheel .`` builds (the
    compiled hot path: bench/compiledbuild.py, cached by the sources' hash); returns its bin/."""
    tmp = tmp_path_factory.mktemp("packaging")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    wheel = compiledbuild.compiled_wheel()
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "-q", wheel, cwd=tmp)  # fmt: skip
    # The dependencies: already installed for this interpreter. A plain path line (not the
    # directory's own .pth files, so not the checkout's editable install) makes them importable.
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp
        ).strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "corral-test-deps.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    return venv / "bin"


def test_the_wheel_ships_the_example_site(installed: Path) -> None:
    venv = installed.parent.resolve()
    out = _run(
        installed / "python",
        "-c",
        "import corral, corral.cli; print(corral.__file__); print(corral.cli.default_site())",
        cwd=venv,
    )
    module, site = (Path(line) for line in out.splitlines())
    assert module.resolve().is_relative_to(venv), module
    assert site.resolve().is_relative_to(venv), site
    assert sorted(p.name for p in site.iterdir() if p.name != "__pycache__") == [
        "web.config",
        "wsgi.py",
    ]


def test_the_wheel_ships_every_template_of_corral_new(installed: Path, tmp_path: Path) -> None:
    """Every file of ``corral new``'s templates is package data, and ``corral new`` works from
    the wheel."""
    venv = installed.parent.resolve()
    out = _run(
        installed / "python",
        "-c",
        "from corral.templates import files_root; print(files_root())",
        cwd=venv,
    )
    shipped = Path(out.strip())
    assert shipped.resolve().is_relative_to(venv), shipped
    source = ROOT / "src" / "corral" / "templates" / "files"

    def files(root: Path) -> list[str]:
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )

    assert files(shipped) == files(source)
    _run(installed / "corral", "new", "django", tmp_path / "site", cwd=tmp_path)
    assert (tmp_path / "site" / "mysite" / "settings.py").is_file()
    assert (tmp_path / "site" / "static" / "web.config").is_file()


def test_installed_corral_serve_with_no_argument_serves_the_example(
    installed: Path, tmp_path: Path
) -> None:
    venv = installed.parent.resolve()
    server = CorralServer(
        None,
        args=("--no-access-log",),
        command=(str(installed / "corral"),),
        cwd=tmp_path,  # nowhere near the checkout
        env={"PYTHONPATH": ""},
    )
    try:
        server.start(wait_ready=False)
        served = server.wait_log("serving")
        assert str(venv) in served, served
        response = request(server.port, path="/")
        assert response.status == 200, server.text()
        page = html.unescape(response.body.decode("utf-8"))
        assert "Hello from Corral" in page
        assert "Worker pid" in page
        assert str(venv) in page  # the application root is the installed example
        assert str(ROOT / "src") not in page  # nothing came from the checkout
    finally:
        server.stop()


def test_the_installed_admin_listener_serves_its_dashboard_from_the_wheel(
    installed: Path, tmp_path: Path
) -> None:
    """The dashboard's files are package data: an installed Corral serves them, offline."""
    server = CorralServer(
        None,
        args=("--no-access-log", "--admin", "127.0.0.1:0"),
        command=(str(installed / "corral"),),
        cwd=tmp_path,
        env={
            "PYTHONPATH": "",
            "CORRAL_ADMIN_TOKEN": "wheel-token-0123456789",
            "XDG_RUNTIME_DIR": str(tmp_path),
        },
    )
    try:
        server.start(wait_ready=False)
        line = server.wait_log(r"admin listener on http://127\.0\.0\.1:\d+")
        port = int(line.rsplit(":", 1)[1].split(" ", 1)[0])
        page = request(port, path="/", headers="Authorization: Bearer wheel-token-0123456789\r\n")
        assert page.status == 200 and b"/assets/dashboard.js" in page.body, server.text()
        for asset, marker in (
            ("dashboard.js", b"EventSource"),
            ("dashboard.css", b"font-family"),
            ("favicon.svg", b"<svg"),
        ):
            answer = request(port, path=f"/assets/{asset}")
            assert answer.status == 200 and marker in answer.body, asset
    finally:
        server.stop()


def test_the_wheel_ships_the_web_consoles_page_and_xterm_js(installed: Path) -> None:
    """The console's files are package data (it works offline): xterm.js with its licence."""
    out = _run(
        installed / "python",
        "-c",
        "from importlib import resources; folder = resources.files('corral.console') / 'assets'"
        "; print(sorted(p.name for p in folder.iterdir()))"
        "; from corral.console.page import Assets; a = Assets()"
        "; print(b'Terminal' in a.file('xterm.js').body, b'/c/ws' in a.page('/c', 'x', '/'))",
        cwd=installed.parent,
    )
    listing, loaded = out.splitlines()
    for name in ("xterm.js", "xterm.css", "addon-fit.js", "LICENSE.xterm", "console.js"):
        assert f"'{name}'" in listing, listing
    assert loaded == "True True"


def _tiny_package(root: Path, version: str) -> Path:
    """A source folder for ``corralpin`` at ``version`` (a stand-in for idna, psutil...: a
    package both Corral's environment and an application's virtualenv have)."""
    source = root / f"corralpin-{version}"
    (source / "corralpin").mkdir(parents=True)
    (source / "corralpin" / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "corralpin"\nversion = "{version}"\n'
        '[tool.setuptools]\npackages = ["corralpin"]\n'
    )
    return source


def _pip_install(
    python: Path, source: Path, cwd: Path, *, dist: Path | None = None, name: str = "corralpin"
) -> None:
    """Build ``source``'s wheel with this interpreter (offline, into ``dist``, by default
    ``source/dist``) and install it for ``python``: the one wheel named ``name`` it makes."""
    dist = source / "dist" if dist is None else dist
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        dist,
        source,
        cwd=cwd,
    )
    wheels = sorted(dist.glob(f"{name}-*.whl"))
    assert len(wheels) == 1, wheels
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        wheels[0],
        cwd=cwd,
    )


PIN_APP = """\
import sys

import corralpin


def application(environ, start_response):
    body = "\\n".join([corralpin.__version__, corralpin.__file__, *sys.path]).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""

PIN_SITE = """\
<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="pinned">
        <environmentVariables>
          <add name="VIRTUAL_ENV" value="%APPL_PHYSICAL_PATH%\\venv" />
          <add name="PYTHONPATH" value="%APPL_PHYSICAL_PATH%" />
          <add name="WSGI_APP" value="pinned.application" />
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="pinned" scriptProcessor="python.3.x.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" />
    </handlers>
  </system.webServer>
</configuration>
"""


def test_an_apps_virtualenv_wins_over_corrals_own_packages(installed: Path, tmp_path: Path) -> None:
    """Corral installed from a wheel has corralpin 2.0 next to it; the app's virtualenv pins
    1.0. The worker sees the app's interpreter and paths plus Corral's worker modules only, so
    the app imports its own 1.0, and nothing on its sys.path is Corral's site-packages."""
    corral_python = installed / "python"
    corral_site = Path(
        _run(
            corral_python,
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=tmp_path,
        ).strip()
    )
    packages = tmp_path / "packages"
    _pip_install(corral_python, _tiny_package(packages, "2.0"), tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    _run(sys.executable, "-m", "venv", "--without-pip", site / "venv", cwd=tmp_path)
    _pip_install(site / "venv" / "bin" / "python", _tiny_package(packages, "1.0"), tmp_path)
    (site / "pinned.py").write_text(PIN_APP)
    (site / "web.config").write_text(PIN_SITE)

    server = CorralServer(
        site,
        args=("--no-access-log",),
        command=(str(installed / "corral"),),
        cwd=tmp_path,
        env={"PYTHONPATH": "", "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    try:
        server.start()
        response = request(server.port, path="/")
        assert response.status == 200, server.text()
        version, module, *path = response.body.decode().splitlines()
        assert (version, module) == ("1.0", f"{site}/venv/{module.split('/venv/', 1)[1]}")
        assert not any(entry.startswith(str(corral_site)) for entry in path), path
        assert not any(entry.startswith(str(ROOT)) for entry in path), path  # nor the checkout
        # Corral's worker came from its own small folder of pure modules.
        staged = [entry for entry in path if entry.startswith(str(tmp_path / "cache"))]
        assert len(staged) == 1, path
        assert sorted(p.name for p in Path(staged[0]).iterdir()) == ["corral"]
        assert sorted(p.name for p in Path(staged[0], "corral").iterdir()) == [
            "__init__.py",
            "errors.py",
            "protocol",
            "worker",
        ]
    finally:
        server.stop()


def test_the_installed_example_writes_its_logs_under_the_state_directory(
    installed: Path, tmp_path: Path
) -> None:
    """The bundled example's ERROR_LOG_DIR ("log") is package data's neighbour: from a wheel it
    goes to $XDG_STATE_HOME/corral/examples/hello/log, never into site-packages."""
    venv = installed.parent.resolve()
    state = tmp_path / "state"
    server = CorralServer(
        None,
        args=("--no-access-log",),
        command=(str(installed / "corral"),),
        cwd=tmp_path,
        env={"PYTHONPATH": "", "XDG_STATE_HOME": str(state)},
    )
    logs = state / "corral" / "examples" / "hello" / "log"
    try:
        server.start(wait_ready=False)
        assert request(server.port, path="/").status == 200, server.text()
        deadline = time.monotonic() + 10
        while not any(logs.glob("*.log")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    example = Path(
        _run(
            installed / "python",
            "-c",
            "import corral.cli; print(corral.cli.default_site())",
            cwd=tmp_path,
        ).strip()
    )
    assert example.is_relative_to(venv)
    assert not (example / "log").exists()
    assert [p.name for p in logs.glob("*.log")], server.text()
