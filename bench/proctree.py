"""CPU time of a server's whole process tree, for "server CPU time per request".

``tree_cpu_seconds(pid)`` sums, over the root and every live descendant, the process's own user +
system time plus the time of its children that it has already reaped (``cutime``/``cstime`` in
/proc/<pid>/stat). A worker that exits and is reaped by its parent between two samples therefore
moves from "live" to its parent's reaped-children total and is still counted; the difference of
two samples is the CPU the tree spent in between.

Known sources of error (small next to a 10 s run; see bench/README.md):
- a process whose parent dies before reaping it is re-parented to init (or a subreaper) outside
  the tree, and the time it spent is lost: time is under-counted in that case, never doubled;
- a descendant reaped in the instant between reading its parent and listing the children can be
  missed or counted twice in one sample; with a fixed-size pool this does not happen in practice;
- the kernel accounts in clock ticks (10 ms with USER_HZ = 100) per process and counter.
"""

from __future__ import annotations

from typing import NamedTuple

import psutil


class TreeCPU(NamedTuple):
    """CPU seconds of a process tree: the root process's own, and everything else (its live
    descendants and the children it reaped)."""

    root: float
    others: float

    @property
    def total(self) -> float:
        return self.root + self.others

    def __sub__(self, other: object) -> TreeCPU:
        assert isinstance(other, TreeCPU)
        return TreeCPU(self.root - other.root, self.others - other.others)


def _process_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def tree_cpu_seconds(pid: int) -> TreeCPU:
    """Return the CPU seconds spent so far by ``pid`` and all its descendants (see module doc)."""
    root = psutil.Process(pid)
    times = root.cpu_times()
    own = times.user + times.system
    others = times.children_user + times.children_system
    for child in root.children(recursive=True):
        try:
            others += _process_seconds(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            # Exited since the listing: its time is now (or soon) in its parent's reaped total.
            continue
    return TreeCPU(own, others)


def tree_pids(pid: int) -> list[psutil.Process]:
    """The live descendants of ``pid`` (not ``pid`` itself)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
