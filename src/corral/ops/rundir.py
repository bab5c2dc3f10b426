"""Where a running Corral keeps what other processes find: its control socket, its generated
admin token. One folder per user: ``$XDG_RUNTIME_DIR/corral`` (systemd's per-user runtime
folder), ``/run/corral`` for root, else ``/tmp/corral-UID``; made with mode 0700 and refused
when another user owns it.

Each server's files are named after the configuration it serves (``name_for``): the site
folder's or server file's name, and a short hash of its absolute path so that two sites called
``www`` in different places do not collide.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class RuntimeDirError(OSError):
    """The runtime folder cannot be made or is not safe to use."""


def runtime_dir(environ: dict[str, str] | None = None) -> Path:
    """The runtime folder for this user (not created: see ``ensure``)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "corral"
    if os.geteuid() == 0:
        return Path("/run/corral")
    return Path(f"/tmp/corral-{os.geteuid()}")


def ensure(folder: Path) -> Path:
    """Make ``folder`` (mode 0700) if needed; ``RuntimeDirError`` when it is not a folder
    owned by this user, or others may write in it."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise RuntimeDirError(f"cannot make the runtime folder {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"the runtime folder {folder} is not a folder")
    if info.st_uid != os.geteuid():
        raise RuntimeDirError(f"the runtime folder {folder} belongs to another user")
    if info.st_mode & 0o022:
        raise RuntimeDirError(f"the runtime folder {folder} is writable by others")
    return folder


def name_for(config_path: Path) -> str:
    """The base name of a server's runtime files: ``www-1a2b3c4d``."""
    import hashlib  # here: the `corral status` client imports this module and must start fast
    import re

    resolved = str(config_path.resolve())
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", config_path.resolve().name or "root").strip("-.")
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{stem[:40] or 'corral'}-{digest}"
