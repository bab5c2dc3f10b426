"""The worker's process title: what ``ps`` and ``top`` show for it, e.g.
``corral worker mysite/blog (python)`` in place of ``python -m corral.worker --liveness-fd 3...``.

Linux: the command line that ``/proc/PID/cmdline`` (and so ``ps -o args``) reads is the memory
between the process's ``arg_start`` and ``arg_end`` (fields 48 and 49 of ``/proc/self/stat``),
where the kernel laid out the original argv. The title is written over it with ``ctypes`` (the
area is the process's own stack, and holds at least the title: the host passes the title as an
argument), the rest filled with NULs; the short name (``comm``, 15 bytes: ``ps -o comm``,
``top``) is set with ``prctl(PR_SET_NAME)``. Python's own ``sys.argv`` is a copy and stays as it
was.

Elsewhere (macOS has no ``/proc``), or where ``ctypes`` is missing, nothing changes, silently.
Stdlib only: this runs in the application's interpreter.
"""

from __future__ import annotations

import sys

#: ``prctl``'s option that names the calling thread (the main thread: the process's ``comm``).
PR_SET_NAME = 15

#: ``comm``'s size without its NUL.
COMM_SIZE = 15


def arg_area(stat: str) -> tuple[int, int] | None:
    """``(arg_start, arg_end)`` from the text of ``/proc/PID/stat``; None when it does not
    show them (an old kernel, a restricted ``/proc``)."""
    _, paren, rest = stat.rpartition(")")  # the command name may hold spaces and parentheses
    if not paren:
        return None
    fields = rest.split()
    # ``rest`` begins at field 3 (state): field N is fields[N - 3].
    if len(fields) < 49 - 2:
        return None
    try:
        start, end = int(fields[48 - 3]), int(fields[49 - 3])
    except ValueError:
        return None
    if not 0 < start < end:
        return None
    return start, end


def fill(title: str, size: int) -> bytes:
    """``title`` in UTF-8, cut to fit ``size`` bytes with a NUL after it (never mid-character),
    padded with NULs to ``size``."""
    data = title.encode("utf-8", "replace")[: max(size - 1, 0)]
    data = data.decode("utf-8", "ignore").encode("utf-8")
    return data + b"\0" * (size - len(data))


def comm(title: str) -> bytes:
    """The short name for ``prctl``: ``corral`` and the application's name, cut to
    ``COMM_SIZE`` bytes (``corral worker site/blog (python)`` gives ``corral blog``)."""
    rest = title.removeprefix("corral worker ").strip()
    name = rest.split(" ", 1)[0].rpartition("/")[2] or rest
    short = f"corral {name}" if title.startswith("corral worker ") else title
    return short.encode("utf-8", "replace")[:COMM_SIZE].decode("utf-8", "ignore").encode()


def set_title(title: str) -> bool:
    """Show ``title`` as this process's command line; False where it cannot be done."""
    if not sys.platform.startswith("linux") or not title:
        return False
    try:
        import ctypes

        with open("/proc/self/stat", encoding="ascii", errors="replace") as file:
            area = arg_area(file.read())
        if area is None:
            return False
        start, end = area
        data = fill(title, end - start)
        ctypes.memmove(start, data, len(data))
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_NAME, ctypes.c_char_p(comm(title)), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the command line is set; the short name stays "python"
    except (ImportError, OSError, ValueError):
        return False
    return True
