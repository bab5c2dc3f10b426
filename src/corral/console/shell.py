"""Which shell a web console runs, and with what: its command, environment and start-up script.

Pure (no process is started here; ``pwd`` is read for the user's login shell).

The shell is the user's login shell (``pwd``), else ``/bin/sh``. Its environment is the one the
application's workers get (``ShellPlan.base``: the worker's ``LaunchPlan`` environment, or the
application's finished variables for an application Corral does not start), with
``TERM=xterm-256color``, ``VIRTUAL_ENV`` and the virtualenv's ``bin`` (or the folder of the
application's interpreter) first on ``PATH``.

A shell's own start-up files may rewrite ``PATH`` (``~/.bashrc`` often does), so the
virtualenv is put first again *after* them:

- bash: ``bash --rcfile /dev/fd/N -i``, where fd N is a pipe holding ``rc_script``: it sources
  ``/etc/bash.bashrc`` and ``~/.bashrc`` (what an interactive bash reads without
  ``--rcfile``), then prepends the virtualenv's ``bin`` to ``PATH``, sets ``VIRTUAL_ENV``,
  prefixes the prompt with the application's name, and closes fd N;
- sh, dash, ksh, mksh: the same script through ``ENV`` (which such shells read when
  interactive), after the user's own ``ENV`` file if one was set (they can only name fds 0-9
  in a redirection: a higher N is left open, the read end of an empty pipe);
- any other shell (zsh, fish...): the environment only; its start-up files run after and win
  (documented in docs/console.md).
"""

from __future__ import annotations

import os
import pwd
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from corral.supervision.tenancy import Confinement

#: The terminal the browser's xterm.js emulates.
TERM = "xterm-256color"
#: Shells that read ``$ENV`` when interactive (POSIX sh and its kin).
_ENV_SHELLS = frozenset(("sh", "dash", "ksh", "mksh", "ash"))
FALLBACK_SHELL = "/bin/sh"
#: Login shells that refuse a login: the console runs ``FALLBACK_SHELL`` instead.
NO_LOGIN = frozenset({"nologin", "false"})


@dataclass(frozen=True, slots=True)
class ShellPlan:
    """What to run for one console session."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    #: The start-up script to hand the shell on ``rc_fd`` (b"": none).
    rc_script: bytes
    #: The child's fd number for ``rc_script`` (-1: none).
    rc_fd: int
    #: The application's user, cgroup and limits, which the shell enters as its workers do
    #: (``supervision.process.confine_child``); None: Corral's own identity.
    confinement: Confinement | None = None


def login_shell(uid: int | None = None) -> str:
    """The login shell of ``uid`` (default: ours), if it is an executable file; else /bin/sh."""
    try:
        shell = pwd.getpwuid(os.getuid() if uid is None else uid).pw_shell
    except KeyError:
        return FALLBACK_SHELL
    if os.path.basename(shell) in NO_LOGIN:
        # An application's user that may not log in still gets the administrator's console
        # (it is opened with the admin token, not by the user): a plain shell.
        return FALLBACK_SHELL
    if shell and os.path.isabs(shell) and os.access(shell, os.X_OK):
        return shell
    return FALLBACK_SHELL


def bin_folder(env: Mapping[str, str], interpreter: str) -> str | None:
    """The folder to put first on PATH: the virtualenv's ``bin``, else the folder of the
    application's interpreter (None: neither, as for a PHP or Node.js application)."""
    venv = env.get("VIRTUAL_ENV")
    if venv:
        return os.path.join(venv, "bin")
    if interpreter:
        return os.path.dirname(interpreter)
    return None


def rc_script(
    first: str | None,
    venv: str | None,
    name: str,
    rc_fd: int,
    sources: str,
    after: str = "",
    *,
    bash: bool = False,
) -> bytes:
    """The start-up script run after the shell's own (see the module doc). ``sources``: the
    shell code that runs the user's own start-up files first; ``after``: code run last; it
    closes ``rc_fd`` at its end where the shell can say so (bash, or a single-digit fd)."""
    lines = [sources]
    if first is not None:
        lines.append(f'PATH={shlex.quote(first)}:"$PATH"; export PATH')
    if venv:
        lines.append(f"VIRTUAL_ENV={shlex.quote(venv)}; export VIRTUAL_ENV")
    lines.append(f'PS1={shlex.quote(f"({name}) ")}"${{PS1:-\\$ }}"')
    lines.append(after)
    if rc_fd < 10 or bash:  # (POSIX shells redirect single-digit fds only: left open then)
        lines.append(f"exec {rc_fd}<&-")
    return ("\n".join(line for line in lines if line) + "\n").encode("utf-8", "surrogateescape")


def shell_plan(
    base_env: Mapping[str, str],
    cwd: str,
    *,
    interpreter: str,
    name: str,
    shell: str,
    rc_fd: int,
) -> ShellPlan:
    """The plan for one console session's shell (see the module doc). ``rc_fd``: the fd number
    the child gets the start-up script on (>= 3)."""
    env = dict(base_env)
    env["TERM"] = TERM
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    first = bin_folder(env, interpreter)
    if first is not None:
        entries = [entry for entry in env.get("PATH", os.defpath).split(os.pathsep) if entry]
        env["PATH"] = os.pathsep.join([first, *(e for e in entries if e != first)])
    venv = env.get("VIRTUAL_ENV") or None
    kind = os.path.basename(shell)
    if kind == "bash":
        sources = (
            "[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc\n"
            '[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"'
        )
        script = rc_script(first, venv, name, rc_fd, sources, bash=True)
        return ShellPlan((shell, "--rcfile", f"/dev/fd/{rc_fd}", "-i"), env, cwd, script, rc_fd)
    if kind in _ENV_SHELLS:
        own = env.get("ENV")
        sources = f"[ -f {shlex.quote(own)} ] && . {shlex.quote(own)}" if own else ""
        # (ENV is the user's own again for the shells started from this one.)
        after = f"ENV={shlex.quote(own)}; export ENV" if own else "unset ENV"
        env["ENV"] = f"/dev/fd/{rc_fd}"
        script = rc_script(first, venv, name, rc_fd, sources, after)
        return ShellPlan((shell, "-i"), env, cwd, script, rc_fd)
    return ShellPlan((shell, "-i"), env, cwd, b"", -1)
