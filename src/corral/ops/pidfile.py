"""The pid file (``[server] pid_file``, ``corral serve --pid-file``): the host's process id, for
scripts and ``logrotate``'s ``kill -USR1 $(cat PIDFILE)``.

``check`` runs before anything listens: a file naming another Corral that is running stops the
start (``PidFileBusy``); a stale one (no such process, or one that is not Corral: its id was
reused) is left for ``write`` to replace. ``write`` runs once every binding listens: the id and a
newline, written to a temporary file beside it and renamed over it (never a half-written file).
``remove`` at exit removes it, only if it still names this process.
"""

from __future__ import annotations

import os

import psutil  # type: ignore[import-untyped]

from corral.errors import CorralError


class PidFileBusy(CorralError):
    """The pid file names another running Corral."""


def read_pid(path: str) -> int | None:
    """The process id in ``path``; None when there is no such file or it holds no number."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read(64).strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def is_corral(pid: int) -> bool:
    """Whether process ``pid`` is running Corral (its command line names it). A process this
    user may not inspect counts as one: better a clear refusal than two hosts on one file."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        command = " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return "corral" in command


def check(path: str) -> None:
    """``PidFileBusy`` when ``path`` names another running Corral."""
    pid = read_pid(path)
    if pid is None or pid == os.getpid():
        return
    if is_corral(pid):
        raise PidFileBusy(
            f"pid file {path}: Corral is already running as process {pid} "
            "(stop it, or remove the file if that process is not this site's Corral)"
        )


def write(path: str) -> None:
    """Write this process's id to ``path`` (replacing a stale file). ``OSError``."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as file:
            file.write(f"{os.getpid()}\n")
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def remove(path: str) -> None:
    """Remove ``path`` if it names this process (another Corral may have taken it over)."""
    if read_pid(path) == os.getpid():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
