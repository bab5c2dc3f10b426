"""The worker's process title (``corral.worker.proctitle``): where the argv area is, what is
written over it, and the short name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.worker.proctitle import arg_area, comm, fill


def stat_line(comm_name: str, arg_start: int, arg_end: int) -> str:
    # Fields 3..52 of /proc/PID/stat after "PID (COMM) ": 48 and 49 are arg_start and arg_end.
    fields = [str(n) for n in range(3, 53)]
    fields[0] = "S"
    fields[48 - 3], fields[49 - 3] = str(arg_start), str(arg_end)
    return f"1234 ({comm_name}) " + " ".join(fields) + "\n"


def test_the_argv_area_is_read_from_proc_stat_even_with_odd_command_names() -> None:
    assert arg_area(stat_line("python3", 1000, 1100)) == (1000, 1100)
    assert arg_area(stat_line("a) b (c", 5000, 5060)) == (5000, 5060)
    assert arg_area(stat_line("python3", 0, 0)) is None  # hidden
    assert arg_area("1234 (python3) S 1 2 3\n") is None  # an old kernel: too few fields
    assert arg_area("garbage") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc")
def test_this_processes_argv_area_holds_its_command_line() -> None:
    area = arg_area(Path("/proc/self/stat").read_text())
    assert area is not None
    start, end = area
    assert end - start == len(Path("/proc/self/cmdline").read_bytes())


def test_the_title_fills_the_area_with_nuls_and_is_cut_whole_characters() -> None:
    assert fill("corral worker a/b (python)", 40) == b"corral worker a/b (python)" + b"\0" * 14
    assert fill("abcdef", 4) == b"abc\0"
    assert fill("h\u00e9h\u00e9", 4) == b"h\xc3\xa9\0"  # 4 bytes: "hé" and a NUL
    assert fill("h\u00e9h\u00e9", 3) == b"h\0\0"  # "é" does not fit whole
    assert len(fill("x" * 100, 17)) == 17


def test_the_short_name_is_corral_and_the_apps_name() -> None:
    assert comm("corral worker mysite/blog (python)") == b"corral blog"
    assert comm("corral worker default/a-rather-long-name (python)") == b"corral a-rather"
    assert comm("something else") == b"something else"
