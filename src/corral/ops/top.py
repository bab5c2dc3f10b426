"""``corral top``: the status screen (``ops.screen``), asked for again every ``interval``
seconds and redrawn in place with plain ANSI sequences (the terminal's alternate screen, as
``top`` and ``uwsgitop`` use); ``q`` or Ctrl-C quits. When the server cannot be reached the
screen says why and keeps trying (a server being restarted comes back).

Stdlib only. ``frame`` (the text of one redraw) is pure.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TextIO

from corral.ops import controlproto as proto
from corral.ops.client import ClientError, call
from corral.ops.screen import render

#: Alternate screen on, cursor hidden / cursor shown, alternate screen off.
ENTER: Final = "\x1b[?1049h\x1b[?25l"
LEAVE: Final = "\x1b[?25h\x1b[?1049l"
#: Cursor home; clear to the end of the line; clear to the end of the screen.
HOME: Final = "\x1b[H"
CLEAR_LINE: Final = "\x1b[K"
CLEAR_BELOW: Final = "\x1b[J"

QUIT_KEYS: Final = frozenset("qQ\x03\x04")


def frame(header: str, lines: list[str], width: int, height: int) -> str:
    """One redraw: ``header`` then ``lines``, each cut to ``width`` columns, as many as
    ``height`` rows hold (the last row says how many more there are)."""
    rows = [header, *lines]
    if len(rows) > height:
        hidden = len(rows) - (height - 1)
        rows = [*rows[: height - 1], f"... {hidden} more lines (a taller terminal shows them)"]
    return (
        HOME
        + "".join(row[:width] + CLEAR_LINE + "\r\n" for row in rows[:-1])
        + rows[-1][:width]
        + CLEAR_LINE
        + CLEAR_BELOW
    )


def snapshot_lines(path: Path) -> list[str]:
    """The status screen's lines now, or why there are none."""
    try:
        return render(call(path, proto.Request(proto.STATUS)))
    except ClientError as exc:
        return [f"corral top: {exc.message}", "(trying again)"]
    except ValueError as exc:
        return [f"corral top: the server sent a status this corral cannot read: {exc}"]


@contextlib.contextmanager
def _keys(stream: TextIO) -> Iterator[int | None]:
    """The terminal's fd in cbreak mode (keys arrive one by one, unechoed) for the block;
    None when ``stream`` is not a terminal."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        yield None
        return
    if not os.isatty(fd):
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_key(fd: int | None, seconds: float) -> str:
    """A key pressed within ``seconds`` ("" if none)."""
    if fd is None:
        time.sleep(seconds)
        return ""
    ready, _, _ = select.select([fd], [], [], seconds)
    if not ready:
        return ""
    data = os.read(fd, 32)
    return data.decode("latin-1") if data else "q"


def run(
    path: Path,
    interval: float,
    out: TextIO | None = None,
    keys: TextIO | None = None,
    lines: Callable[[Path], list[str]] = snapshot_lines,
) -> int:
    """Redraw until a quit key or Ctrl-C; returns the exit status (0)."""
    out = sys.stdout if out is None else out
    keys = sys.stdin if keys is None else keys
    with _keys(keys) as fd:
        out.write(ENTER)
        try:
            while True:
                size = shutil.get_terminal_size()
                header = (
                    f"corral top  {time.strftime('%H:%M:%S')}  every {interval:g}s  "
                    f"{path}  (q quits)"
                )
                out.write(frame(header, lines(path), size.columns, max(size.lines, 3)))
                out.flush()
                deadline = time.monotonic() + interval
                while (left := deadline - time.monotonic()) > 0:
                    pressed = _wait_key(fd, left)
                    if any(key in QUIT_KEYS for key in pressed):
                        return 0
        except KeyboardInterrupt:
            return 0
        finally:
            out.write(LEAVE)
            out.flush()
