"""Users and their folders: look an application's user up, and make the folders its processes
use (its private TMPDIR, the pool's socket folder) with the right owner and mode. Mechanism.

Folders (docs/tenants.md, docs/security.md):

* The private TMPDIR of one pool of an application: ``<tenant root>/<server>/tmp/<app>-XXXX``,
  owned by the application's user, mode 0700; its parents are root's (the last two: the
  front's user's), mode 0711 (traversable, not listable). The tenant root is
  ``/var/lib/corral`` (``CORRAL_TENANT_DIR`` overrides it). Removed when the pool closes.
* The pool's socket folder (``WorkerSet``), ``<tenant root>/<server>/run/corral-XXXX``: owned
  by the application's user, group the front's own group, mode 0770: the front (by its group)
  creates and connects to the workers' sockets, the application's user may bind its own
  (transport ``unix``), and no other user may even traverse it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tempfile

from corral.errors import CorralError
from corral.supervision.tenancy import RunAs

#: Where private TMPDIRs live when Corral runs as root.
TENANT_ROOT = "/var/lib/corral"


class IdentityError(CorralError):
    """A user or group that does not exist, or a folder that cannot be made safely."""


def resolve(user: str, group: str | None = None) -> RunAs:
    """The passwd entry of ``user`` (a name or a numeric uid), its primary group or ``group``,
    and its supplementary groups (as initgroups would set them)."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise IdentityError(f"no such user: {user!r}") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except (KeyError, OverflowError):
            raise IdentityError(f"no such group: {group!r}") from None
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
    return RunAs(entry.pw_name, entry.pw_uid, gid, groups, entry.pw_dir or "/")


def tenant_root() -> str:
    return os.environ.get("CORRAL_TENANT_DIR") or TENANT_ROOT


def _safe_dir(path: str, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Make ``path`` (one level) a folder with ``mode``, refusing one that exists as a symlink,
    with an owner other than root or this process's user (a folder squatted by another user),
    or writable by others; with ``owner``, give it to that (uid, gid) (before a privilege drop:
    the front keeps using it as that user)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    except OSError as exc:
        raise IdentityError(f"cannot make {path}: {exc.strerror}") from None
    info = os.lstat(path)
    allowed = {0, os.geteuid()} | ({owner[0]} if owner is not None else set())
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in allowed:
        raise IdentityError(f"{path} is not a folder of root or of this user: refused")
    if info.st_uid in (0, os.geteuid()) and stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)
    elif stat.S_IMODE(info.st_mode) & 0o022:
        raise IdentityError(f"{path} is writable by others: refused")
    if owner is not None and (info.st_uid, info.st_gid) != owner:
        os.chown(path, *owner)


def tenant_folder(server: str, leaf: str, owner: tuple[int, int] | None = None) -> str:
    """``<tenant root>/<server>/<leaf>`` (``tmp``: the TMPDIRs, ``run``: the socket folders),
    made (mode 0711) if needed; with ``owner``, the last two levels are given to that (uid,
    gid): the user the front drops to, who must go on making and removing folders in them (not
    in /tmp, whose sticky bit would keep it from removing a folder it gave away)."""
    root = tenant_root()
    os.makedirs(os.path.dirname(root), exist_ok=True)
    _safe_dir(root, 0o711)
    folder = os.path.join(root, server)
    _safe_dir(folder, 0o711, owner)
    folder = os.path.join(folder, leaf)
    _safe_dir(folder, 0o711, owner)
    return folder


def make_tmpdir(server: str, app: str, run_as: RunAs) -> str:
    """A fresh private TMPDIR for one pool of ``app``, owned by ``run_as``, mode 0700."""
    folder = tenant_folder(server, "tmp")
    try:
        path = tempfile.mkdtemp(prefix=f"{app}-", dir=folder)  # mode 0700
        os.chown(path, run_as.uid, run_as.gid)
    except OSError as exc:
        raise IdentityError(f"cannot make the private TMPDIR of {app}: {exc}") from None
    return path


def remove_tmpdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def hand_over_socket_dir(path: str, run_as: RunAs) -> None:
    """Give a pool's socket folder to the application's user, group the front's, mode 0770
    (the mode first: once the folder is not ours, we could not change it any more)."""
    os.chmod(path, 0o770)
    os.chown(path, run_as.uid, os.getegid())


def unreachable(path: str, run_as: RunAs, *, write: bool = False) -> str | None:
    """The first folder on the way to ``path`` that ``run_as`` may not traverse (or ``path``
    itself, when it may not read it, or with ``write`` write it), from the mode bits; None when
    it may. The usual trap of running applications as their own users: a parent folder of the
    application (or of its interpreter, under /root) closed to them."""
    target = os.path.abspath(path)
    real = os.path.realpath(target)
    if real != target:  # a symlink (a virtualenv's python): its target's folders count too
        blocked = unreachable(real, run_as, write=write)
        if blocked is not None:
            return blocked
    parts = target.split(os.sep)[1:]
    current = os.sep
    for index, part in enumerate(["", *parts]):
        current = os.path.join(current, part) if part else current
        try:
            info = os.stat(current)
        except OSError:
            return None  # does not exist (yet): not a permission problem
        last = index == len(parts)
        if info.st_uid == run_as.uid:
            shift = 6
        elif info.st_gid in run_as.groups or info.st_gid == run_as.gid:
            shift = 3
        else:
            shift = 0
        bits = (info.st_mode >> shift) & 0o7
        if stat.S_ISDIR(info.st_mode) and not bits & 0o1:
            return current
        if last and not bits & 0o4 and not stat.S_ISDIR(info.st_mode):
            return current
        if last and write and not bits & 0o2:
            return current
    return None
