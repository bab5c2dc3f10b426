"""How to start one backend worker: the command, its environment and where it listens.

A ``LaunchPlan`` is plain, frozen data. Engines (Python, PHP, any FastCGI command) build one; the
process mechanism (``supervision.process``) carries it out for each worker it spawns. The plan
says nothing about sockets' paths: the host creates a fresh listening socket per worker and hands
it over as fd 0 (the FastCGI convention that nginx, mod_fcgid and spawn-fcgi follow), or gives a
command that listens itself a port (``WorkerSocket.PORT``) or a socket path in the pool's private
runtime directory (``WorkerSocket.UNIX_PATH``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

from corral.supervision.tenancy import Confinement

#: Where a worker listens: a Unix socket path, or a (host, port) pair.
Address: TypeAlias = str | tuple[str, int]

#: The fd at which a worker receives the read end of its liveness pipe.
LIVENESS_FD = 3


class WorkerSocket(enum.Enum):
    """How a worker gets its listening socket, and so how the host reaches it (not to be
    confused with the configuration's ``config.model.Transport``, Zoo's attribute, which the
    engines translate into one of these)."""

    #: A Unix listening socket, created by the host in its private (0700) runtime directory and
    #: passed to the worker as fd 0.
    UNIX = "unix"
    #: A TCP listening socket on loopback, created by the host on an ephemeral port and passed
    #: to the worker as fd 0.
    TCP = "tcp"
    #: The command listens itself, on a port the host picks per worker from
    #: ``LaunchPlan.port_range`` on ``LaunchPlan.tcp_host`` and hands over as the variables
    #: PORT and HOST and as ``%PORT%``/``%HOST%`` (and ``%INSTANCE_ID%``) in its arguments and
    #: variables (Helicon Zoo's ``tcp`` transport: Node.js, any HTTP server). Nothing is at fd 0.
    PORT = "port"
    #: The command listens itself on a Unix socket at a path the host gives it per worker, in
    #: the pool's private (0700) runtime directory, as the variable SOCKET and ``%SOCKET%`` (and
    #: ``%INSTANCE_ID%``) in its arguments and variables: an HTTP server (Node.js, puma,
    #: gunicorn) that no other local user can reach. Nothing is at fd 0.
    UNIX_PATH = "unix-path"

    @property
    def command_listens(self) -> bool:
        """The command opens its listening socket itself (not the host, at fd 0): readiness
        must check that the socket at its address is the worker's (``probe.owned``)."""
        return self is WorkerSocket.PORT or self is WorkerSocket.UNIX_PATH

    @property
    def socket_file(self) -> bool:
        """The worker's address is a socket file in the pool's runtime directory."""
        return self is WorkerSocket.UNIX or self is WorkerSocket.UNIX_PATH


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """Everything needed to start one worker of an application.

    ``env`` is the worker's complete environment (nothing is inherited implicitly); it is
    copied into a read-only mapping. Every worker also receives the read end of a liveness pipe
    at fd ``LIVENESS_FD`` (3); commands that do not know about it simply ignore the fd.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    transport: WorkerSocket = WorkerSocket.UNIX
    #: Loopback address to bind for ``WorkerSocket.TCP``, or for the worker to listen on for
    #: ``WorkerSocket.PORT``.
    tcp_host: str = "127.0.0.1"
    #: Ports (inclusive) that ``WorkerSocket.PORT`` picks from: one free port per worker.
    port_range: tuple[int, int] = (49152, 65535)
    #: The user, groups, cgroup, rlimits and TMPDIR the worker runs under (None: Corral's own
    #: user, no limits); filled in by the pool for each spawn (``confine.Confiner.ready``).
    confinement: Confinement | None = None

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("LaunchPlan.argv must name a program")
        low, high = self.port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"LaunchPlan.port_range must be within 1..65535, not {low}..{high}")
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))


def corral_package_parent() -> str:
    """The directory that contains the ``corral`` package (for a foreign interpreter's path)."""
    return str(Path(__file__).resolve().parent.parent.parent)


#: What the worker imports of Corral (the import contract in pyproject.toml: the worker imports
#: the stdlib, ``corral.errors``, ``corral.protocol.fastcgi``, ``corral.protocol.websocket``,
#: ``corral.protocol.spawnctl`` and ``corral.protocol.memo``),
#: as paths relative to the ``corral`` package; a trailing ``/`` is a folder's ``*.py`` files.
WORKER_MODULES = (
    "__init__.py",
    "errors.py",
    "protocol/__init__.py",
    "protocol/memo.py",
    "protocol/spawnctl.py",
    "protocol/websocket.py",
    "protocol/fastcgi/",
    "worker/",
)

#: Entries next to ``corral`` that do not make a directory unsafe to put on a worker's path.
_METADATA_SUFFIXES = (".egg-info", ".dist-info", ".egg-link", ".pth")


def worker_module_files(package: str | os.PathLike[str] | None = None) -> list[str]:
    """The files of ``WORKER_MODULES`` (relative to the package, sorted)."""
    root = Path(package) if package is not None else Path(__file__).resolve().parent.parent
    files: list[str] = []
    for entry in WORKER_MODULES:
        if entry.endswith("/"):
            files += [f"{entry}{p.name}" for p in (root / entry).glob("*.py") if p.is_file()]
        else:
            files.append(entry)
    return sorted(files)


def _only_corral(parent: str) -> bool:
    """Whether ``parent`` exposes nothing importable but ``corral`` (a checkout's ``src/``, an
    editable install), so that it may be put on a foreign interpreter's path as it is."""
    try:
        names = os.listdir(parent)
    except OSError:
        return False
    return all(
        name in ("corral", "__pycache__") or name.endswith(_METADATA_SUFFIXES) for name in names
    )


def _private_dir(path: str) -> bool:
    """``path`` is a directory of ours that no other user may write to."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _cache_roots() -> Iterator[str]:
    """Where the worker's import directory may live: the user's cache, else the temp folder."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        yield os.path.join(xdg, "corral")
    home = os.path.expanduser("~")
    if home != "~":
        yield os.path.join(home, ".cache", "corral")
    yield os.path.join(tempfile.gettempdir(), f"corral-{os.getuid()}")


def _stage(package: Path, files: list[str], digest: str) -> str:
    """Copy ``files`` of ``package`` into ``<cache>/worker-<digest>/corral/``; return the
    directory that contains that ``corral`` (made once per distinct set of worker modules)."""
    name = f"worker-{digest}"
    for root in _cache_roots():
        try:
            # 0711: other users may reach the (public) modules by name, as applications run
            # as their own users do (docs/tenants.md), but not list or change the folder.
            os.makedirs(root, mode=0o711, exist_ok=True)
        except OSError:
            continue
        if not _private_dir(root):
            continue
        final = os.path.join(root, name)
        if os.path.isdir(final):
            if os.path.isfile(os.path.join(final, "corral", "worker", "__main__.py")):
                return final
            continue
        try:
            building = tempfile.mkdtemp(prefix=f".{name}-", dir=root)
        except OSError:
            continue
        try:
            for rel in files:
                target = Path(building, "corral", rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package / rel, target)
            os.chmod(building, 0o755)
            try:
                os.rename(building, final)
            except OSError:  # another host made it meanwhile
                if not os.path.isdir(final):
                    raise
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
            continue
        shutil.rmtree(building, ignore_errors=True)
        return final
    raise OSError("no writable cache folder for the Python worker's modules")


@functools.cache
def worker_import_dir() -> str:
    """The directory a foreign interpreter gets on its path to import ``corral.worker``.

    It exposes Corral's worker and its pure modules and nothing else: never Corral's other
    dependencies, which would win over the application's own versions. A checkout's ``src/``
    (or any folder holding only ``corral``) is used as it is; from an installed wheel, whose
    ``corral`` sits in a ``site-packages`` next to uvloop, psutil, watchfiles..., the worker's
    modules are copied once into ``$XDG_CACHE_HOME/corral/worker-<hash>/`` (``~/.cache`` by
    default, else a private folder in the temp directory), named by a hash of their contents.
    """
    return import_dir_for(corral_package_parent())


def import_dir_for(parent: str) -> str:
    """``worker_import_dir`` for the ``corral`` package in the directory ``parent``."""
    if _only_corral(parent):
        return parent
    package = Path(parent, "corral")
    files = worker_module_files(package)
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + (package / rel).read_bytes() + b"\0")
    return _stage(package, files, digest.hexdigest()[:16])


@dataclass(frozen=True, slots=True)
class WarmUp:
    """A warm-up request (the WARM_UP settings): its target, how many times, and the app's
    virtual path (its SCRIPT_NAME, "" at the root)."""

    target: str
    requests: int = 1
    script_name: str = ""

    def argv(self) -> tuple[str, ...]:
        extra = ("--warm-up-script-name", self.script_name) if self.script_name else ()
        return ("--warm-up", self.target, "--warm-up-requests", str(self.requests), *extra)


def python_worker_plan(
    app_root: str | os.PathLike[str],
    *,
    python: str = sys.executable,
    app_env: Mapping[str, str] | None = None,
    threads: int = 1,
    max_threads: int = 0,
    engine: str = "python",
    base_env: Mapping[str, str] | None = None,
    title: str | None = None,
    hooks: Mapping[str, str | None] | None = None,
    scheduling: str = "batch",
    warm_up: WarmUp | None = None,
) -> LaunchPlan:
    """The plan for Corral's own Python worker (``python -m corral.worker``).

    Args:
        app_root: the application's folder; the worker's working directory.
        python: the interpreter to run, possibly another virtualenv's.
        app_env: the application's variables (engine and app settings, already expanded).
        threads: requests one worker serves at once (its threads; with ``max_threads``, the
            threads it always keeps).
        max_threads: above ``threads``: the worker starts a thread per connection on demand up
            to this many (``--max-threads``), and the pool opens as many connections as its
            concurrency policy wants; 0 (or not above ``threads``): fixed.
        engine: the engine's name, exported as ``CORRAL_ENGINE``.
        base_env: the environment the app's variables are laid over; ``os.environ`` if None.
        title: what ``ps`` shows for the worker (``--title``; ``corral.worker.proctitle``).
        hooks: server hooks by name (``app-start``, ``after-fork``, ``worker-exit``) to
            ``module:function`` (``--hook-NAME``; ``corral.worker.hooks``).
        scheduling: the worker's threads' policy on Linux, ``batch`` (the worker's default)
            or ``normal`` (``--scheduling``; ``corral.worker.serving.batch_scheduling``).
        warm_up: the request a template sends through the app before it forks
            (``--warm-up``; ``corral.worker.warmup``).

    ``PYTHONPATH`` is the app's entries followed, last, by ``worker_import_dir()``, so that an
    interpreter from another virtualenv (without Corral's dependencies) can import
    ``corral.worker``, the app's own modules win any name clash, and none of Corral's own
    dependencies shadows the app's (the app's virtualenv comes after PYTHONPATH).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    env = dict(os.environ if base_env is None else base_env)
    env.update(app_env or {})
    entries = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    corral_dir = worker_import_dir()
    if corral_dir not in entries:
        entries.append(corral_dir)
    env["PYTHONPATH"] = os.pathsep.join(entries)
    env["CORRAL_ENGINE"] = engine
    argv: Sequence[str] = (
        python,
        "-m",
        "corral.worker",
        "--liveness-fd",
        str(LIVENESS_FD),
        "--threads",
        str(threads),
        *(("--max-threads", str(max_threads)) if max_threads > threads else ()),
        *(() if title is None else ("--title", title)),
        *(() if scheduling == "batch" else ("--scheduling", scheduling)),
        *(
            arg
            for name, spec in sorted((hooks or {}).items())
            if spec
            for arg in (f"--hook-{name}", spec)
        ),
        *(() if warm_up is None else warm_up.argv()),
    )
    return LaunchPlan(argv=tuple(argv), env=env, cwd=os.fspath(app_root))
