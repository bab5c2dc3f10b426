#!/usr/bin/env python3
"""What a worker forked from a template writes: its private pages, named by what lives there.

    python bench/preload_pages.py [--apps flask,django] [--requests 50] [--warm-up N] [--detail N]

For each app (the sites of ``bench/preload.py``), the script runs the app's real pool with
``PRELOAD=on`` and three workers, forked from the real template. Through an after-fork hook
written into the site (bench only: Corral has no such hook of its own):

* the **first** worker, before it serves, records the address range, type and package of every
  object it can reach (``gc.get_objects()`` after ``gc.unfreeze()``, and everything their
  referents reach: strings, code objects, ints, untracked tuples; a dict's keys table and a
  list's item array as their own blocks, found with ctypes). Its heap is then the template's
  at the fork. That worker is sacrificed: the walk writes to every object's reference count.
* every worker installs a SIGUSR2 handler that records the same map of what it holds *now*.

After ``--requests`` requests to each worker, the script reads a measured worker's (the second
and third) ``/proc/PID/maps`` and ``/proc/PID/pagemap``: a private page is one present and
mapped by this process alone (bit 56, "exclusively mapped"). Then it asks that worker for its
map (SIGUSR2) and names each private page of the heap by the bytes on it: objects that were
there at the fork ("at fork: TYPE [package]"), objects allocated since ("new: TYPE"), and
bytes that are neither (allocator headers, free slots, memory that is no object's: a
``bytearray``'s or ``mmap``'s storage, the interpreter's own tables). Pages of a file's
mapping (libpython's data, an extension's) are named by the file.

Linux only, run as a user who may read another process's pagemap (its own processes).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import os
import signal
import struct
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from preload import APPS, make_site, site_pool, uss_kib, warm_workers  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
#: pymalloc's pool header (3.11: one pool per 4 KiB page): written at each allocation and each
#: free in the pool.
POOL_HEADER = 48
#: A code object's fixed part (its quickened bytecode and inline caches follow it).
CODE_HEADER = type(compile("", "", "exec")).__basicsize__

#: The after-fork hook written into the site (run in the app's interpreter): the object maps.
DUMPER = '''
import ctypes, gc, os, signal, struct, sys

OUT = {out!r}
_GC = 1 << 14
_MANAGED_DICT = 1 << 4
_PTR = ctypes.POINTER(ctypes.c_ssize_t)


def _package(obj):
    name = None
    if type(obj).__name__ == "code":
        name = obj.co_filename
    elif type(obj).__name__ == "function":
        name = obj.__code__.co_filename
    elif isinstance(obj, type):
        name = obj.__module__ if isinstance(obj.__module__, str) else None
        return (name or "?").split(".")[0]
    elif type(obj).__name__ == "module":
        return obj.__name__.split(".")[0]
    if not name:
        return ""
    parts = name.split("/")
    for marker in ("site-packages", "src"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1:]
            return rest[0].removesuffix(".py") if rest else ""
    if "lib" in parts and "python" in name:
        return "stdlib"
    return "app" if not name.startswith("<") else name


def _blocks(obj):
    """(start, size, label, head) of the memory blocks ``obj`` owns (``head``: bytes before
    the object's address, its GC header)."""
    kind = type(obj)
    flags = kind.__flags__
    head = 16 if flags & _GC else 0
    if flags & _MANAGED_DICT:
        head += 16
    base = id(obj) - head
    label = kind.__name__
    if label == "code":
        name = f"{{obj.co_filename.rsplit('/', 1)[-1]}}:{{obj.co_qualname}}"
        label = f"code [{{_package(obj)}}] {{name}}"
    elif label == "function" or isinstance(obj, type) or label == "module":
        label = f"{{label}} [{{_package(obj)}}]"
    elif flags & (1 << 9):  # Py_TPFLAGS_HEAPTYPE: an instance of a class
        module = kind.__module__ if isinstance(kind.__module__, str) else "?"
        label = f"instance [{{module.split('.')[0]}}]"
    if kind is dict:
        yield base, head + 48, "dict", head
        keys = ctypes.cast(id(obj) + 32, _PTR)[0]
        size = sys.getsizeof(obj) - 64
        if keys and size > 0:
            yield keys, size, "dict keys table", -1
        return
    if kind is list:
        yield base, head + 40, "list", head
        items = ctypes.cast(id(obj) + 24, _PTR)[0]
        allocated = ctypes.cast(id(obj) + 32, _PTR)[0]
        if items and allocated > 0:
            yield items, allocated * 8, "list item array", -1
        return
    try:
        size = sys.getsizeof(obj)
    except Exception:
        size = kind.__basicsize__ + head
    yield base, size, label, head


def dump(name):
    gc.unfreeze()
    gc.collect()
    seen = set()
    todo = gc.get_objects()
    seen.update(map(id, todo))
    keep = list(todo)  # alive for the walk: ids stay unique
    records = []
    labels = {{}}
    while todo:
        obj = todo.pop()
        for start, size, label, head in _blocks(obj):
            records.append((start, size, labels.setdefault(label, len(labels)), head))
        for ref in gc.get_referents(obj):
            if id(ref) not in seen:
                seen.add(id(ref))
                keep.append(ref)
                todo.append(ref)
        if type(obj).__name__ == "function":
            ref = obj.__code__
            if id(ref) not in seen:
                seen.add(id(ref))
                keep.append(ref)
                todo.append(ref)
    with open(os.path.join(OUT, f"{{name}}.tmp"), "w") as out:
        for label, number in labels.items():
            out.write(f"L {{number}} {{label}}\\n")
        for start, size, number, head in records:
            out.write(f"{{start}} {{size}} {{number}} {{head}}\\n")
    os.rename(os.path.join(OUT, f"{{name}}.tmp"), os.path.join(OUT, f"{{name}}.map"))


def imported():
    """The app-start hook: this module imported in the template, shared by the workers."""


def after_fork():
    first = os.path.join(OUT, "first")
    try:
        fd = os.open(first, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        signal.signal(signal.SIGUSR2, lambda signum, frame: dump(f"now-{{os.getpid()}}"))
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    dump("fork")
'''


class ObjectMap:
    """Blocks sorted by address: (start, size, label, head); ``head`` is where the object's
    own address is past ``start`` (its GC header), -1 for a block that is no object."""

    def __init__(self, path: Path) -> None:
        labels: dict[int, str] = {}
        blocks: list[tuple[int, int, str, int]] = []
        numbered: list[tuple[int, int, int, int]] = []
        for line in path.read_text().splitlines():
            if line.startswith("L "):
                _, number, label = line.split(" ", 2)
                labels[int(number)] = label
            else:
                start, size, number, head = map(int, line.split())
                numbered.append((start, size, number, head))
        blocks = sorted((s, n, labels[k], h) for s, n, k, h in numbered)
        self.starts = [b[0] for b in blocks]
        self.blocks = blocks
        self.longest = max((b[1] for b in blocks), default=0)
        self.by_start = {b[0]: b for b in blocks}

    def at(self, address: int) -> tuple[int, int, str, int] | None:
        """The block holding ``address``, if any."""
        i = bisect.bisect_right(self.starts, address) - 1
        # A block may be inside a larger one (a keys table is not): take the nearest start
        # whose block reaches the address, looking back over at most a few.
        for j in range(i, max(i - 8, -1), -1):
            start, size, _, _ = self.blocks[j]
            if start <= address < start + size:
                return self.blocks[j]
            if address - start > self.longest:
                break
        return None

    def on_page(self, page: int) -> list[tuple[int, int, str, int]]:
        """Each block overlapping the page at ``page``."""
        end = page + PAGE
        i = bisect.bisect_left(self.starts, page)
        j = i
        while j > 0 and self.blocks[j - 1][0] + self.blocks[j - 1][1] > page and i - j < 64:
            j -= 1
        found = []
        for block in self.blocks[j:]:
            if block[0] >= end:
                break
            if block[0] + block[1] > page:
                found.append(block)
        return found


def field(block: tuple[int, int, str, int], address: int) -> str:
    """Which part of a block a written word is: its reference count, its GC header, or the
    rest of it (a code object's body: its quickened bytecode and inline caches)."""
    start, _, label, head = block
    if head < 0:
        return label
    offset = address - (start + head)
    if offset < 0:
        return f"GC header of {label}"
    if offset == 0:
        return f"refcount of {label}"
    if label.startswith("code "):
        part = "bytecode" if offset >= CODE_HEADER else "header"
        return f"body of {label} ({part})"
    return f"body of {label}"


def mappings(pid: int) -> list[tuple[int, int, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5].strip() if len(fields) > 5 else ""
            out.append((low, high, name))
    return out


def private_pages(pid: int) -> dict[str, list[int]]:
    """Addresses of the pages only ``pid`` maps (present, exclusively mapped), by mapping."""
    found: dict[str, list[int]] = collections.defaultdict(list)
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for low, high, name in mappings(pid):
            if name == "[vsyscall]":
                continue
            pagemap.seek(low // PAGE * 8)
            data = pagemap.read((high - low) // PAGE * 8)
            for n, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                if entry >> 63 & 1 and entry >> 56 & 1:
                    found[name].append(low + n * PAGE)
    return found


def kind_of_mapping(name: str) -> str:
    if not name:
        return "anonymous (pymalloc arenas, large mallocs, mmaps)"
    if name == "[heap]":
        return "[heap] (the C heap)"
    if name.startswith("["):
        return name
    base = os.path.basename(name)
    if "libpython" in base:
        return "libpython: data"
    if base.startswith("python"):
        return "python binary: data"
    if ".cpython-" in base or base.endswith(".so") or ".so." in base:
        return "shared libraries: data"
    return f"file {base}"


def read_page(mem: int, page: int) -> bytes | None:
    try:
        return os.pread(mem, PAGE, page)
    except OSError:
        return None


Contents = dict[str, list[tuple[int, bytes | None, bytes | None]]]


def snapshot(pid: int, template: int, pages: dict[str, list[int]]) -> Contents:
    """Each private page of ``pid`` with its bytes and the template's at the same address."""
    contents: Contents = {}
    mine = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    theirs = os.open(f"/proc/{template}/mem", os.O_RDONLY)
    try:
        for name, addresses in pages.items():
            contents[name] = [(p, read_page(mine, p), read_page(theirs, p)) for p in addresses]
    finally:
        os.close(mine)
        os.close(theirs)
    return contents


def attribute(contents: Contents, fork: ObjectMap, now: ObjectMap) -> dict[str, float]:
    """KiB of private pages by the writes that made them private: each page's 4 KiB shared
    among the labels of the 8-byte words that differ from the template's same page."""
    kib: dict[str, float] = collections.Counter()
    if True:
        for name, pages in contents.items():
            kind = kind_of_mapping(name)
            heap = kind.startswith(("[heap]", "anonymous"))
            for page, new, old in pages:
                shares: dict[str, int] = collections.Counter()
                if new is None:
                    continue
                if old is None:
                    label = "mapped after the fork"
                    if heap:
                        for start, size, what, _ in now.on_page(page):
                            overlap = min(start + size, page + PAGE) - max(start, page)
                            shares[f"{label}: new {what}"] += overlap
                    shares[f"{label}: {kind}"] += 1
                elif not heap:
                    changed = sum(
                        a != b
                        for a, b in zip(
                            struct.iter_unpack("<Q", new),
                            struct.iter_unpack("<Q", old),
                            strict=True,
                        )
                    )
                    shares[f"{kind}, written" if changed else f"{kind}, unchanged"] += 1
                else:
                    words = zip(
                        struct.iter_unpack("<Q", new), struct.iter_unpack("<Q", old), strict=True
                    )
                    for n, (a, b) in enumerate(words):
                        if a == b:
                            continue
                        address = page + 8 * n
                        block = fork.at(address)
                        if block is not None:
                            again = now.by_start.get(block[0])
                            if again is None or again[2] != block[2]:
                                later = now.at(address)
                                shares[
                                    f"freed since the fork: {block[2]}"
                                    + (f" (now {later[2]})" if later else "")
                                ] += 1
                            else:
                                shares[field(block, address)] += 1
                        else:
                            later = now.at(address)
                            if later:
                                shares[f"no object at the fork, now {later[2]}"] += 1
                            elif name == "" and 8 * n < POOL_HEADER:
                                shares["pymalloc pool header (an allocation or a free)"] += 1
                            else:
                                where = "C heap" if name == "[heap]" else "anonymous"
                                what = value_change(a[0], b[0])
                                shares[f"no object at the fork or now ({where}): {what}"] += 1
                    if not shares:
                        shares["written, then restored (counts up and down)"] += 1
                total = sum(shares.values())
                for label, share in shares.items():
                    kib[label] += share / total * PAGE / 1024
    return kib


def value_change(new: int, old: int) -> str:
    """What a word's change looks like, for memory no known object holds."""
    if abs(new - old) <= 64 and max(new, old) < 1 << 32:
        return "a small count changed (a reference count of an object not found)"
    if new > 1 << 40 or old > 1 << 40:
        return "a pointer changed (free-list links, references)"
    return "other values"


def coarse(label: str) -> str:
    """Labels grouped: refcounts of any object, code objects' bodies by package, ..."""
    if label.startswith("refcount of "):
        return "reference counts (of objects shared at the fork)"
    if label.startswith("GC header of "):
        return "GC headers (of objects shared at the fork)"
    if label.startswith("body of code"):
        package = label.split("[", 1)[1].split("]", 1)[0]
        part = label.rsplit("(", 1)[-1].rstrip(")")
        return f"code objects' {part} (quickening, inline caches): {package}"
    if label.startswith("body of "):
        return "other fields of shared objects: " + label.removeprefix("body of ").split(" [")[0]
    if label.startswith("freed since the fork"):
        return "objects freed since the fork (slots reused)"
    if label.startswith("no object at the fork, now"):
        return "free space at the fork, filled since: " + label.split("now ")[-1].split(" [")[0]
    if label.startswith("mapped after the fork"):
        return "memory mapped after the fork"
    return label


async def run(app: str, requests: int, workers: int, out: Path, warm_up: int, detail: int) -> None:
    path = APPS[app][2]
    site = make_site(out, app, "on", False)
    (site / "corral_pagedump.py").write_text(DUMPER.format(out=str(out / "maps")))
    (out / "maps").mkdir()
    extra = 'hook_after_fork = "corral_pagedump:after_fork"\n'
    extra += 'hook_app_start = "corral_pagedump:imported"\n'
    if warm_up:
        extra += f'warm_up = "{path}"\nwarm_up_requests = {warm_up}\n'
    toml = site / "corral.toml"
    toml.write_text(toml.read_text() + extra)
    pool, backend = site_pool(site, app, workers)
    try:
        lease = await pool.acquire()
        pool.release(lease, reusable=True)
        pool.set_bounds(workers, workers)
        while len([w for w in pool.snapshot().workers if w.state == "idle"]) < workers:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await warm_workers(pool, path, requests)
        first = int((out / "maps" / "first").read_text())
        assert backend.spawner is not None
        template = backend.spawner.template_pid
        assert template is not None
        measured = [w.pid for w in pool.snapshot().workers if w.pid and w.pid != first]
        fork = ObjectMap(out / "maps" / "fork.map")
        totals: dict[str, float] = collections.Counter()
        uss = []
        for pid in measured:
            uss.append(uss_kib(pid))
            contents = snapshot(pid, template, private_pages(pid))
            os.kill(pid, signal.SIGUSR2)
            now_path = out / "maps" / f"now-{pid}.map"
            deadline = time.monotonic() + 60
            while not now_path.exists() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            kib = attribute(contents, fork, ObjectMap(now_path))
            for label, value in kib.items():
                totals[label] += value / len(measured)
    finally:
        await pool.close(0)
    total = sum(totals.values())
    print(
        f"\n## {app}{f' with warm_up x{warm_up}' if warm_up else ''}: a forked worker's private "
        f"pages after {requests} requests (mean of {len(measured)} workers; USS "
        f"{', '.join(map(str, uss))} KiB; pages counted {total:,.0f} KiB)\n"
    )
    groups: dict[str, float] = collections.Counter()
    for label, value in totals.items():
        groups[coarse(label)] += value
    print_table(groups, total)
    if detail:
        print()
        print_table(totals, total, detail)


def print_table(kib: dict[str, float], total: float, rows: int = 25) -> None:
    print("| what wrote the page | KiB | share |")
    print("|---|---:|---:|")
    ranked = sorted(kib.items(), key=lambda kv: -kv[1])
    for label, value in ranked[:rows]:
        print(f"| {label} | {value:,.0f} | {value / total:.0%} |")
    rest = sum(v for _, v in ranked[rows:])
    if rest:
        print(f"| ({len(ranked) - rows} others, together) | {rest:,.0f} | {rest / total:.0%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", default="flask,django")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--warm-up",
        type=int,
        default=0,
        metavar="N",
        help="set warm_up to the app's page, sent N times by the template (0: not set)",
    )
    parser.add_argument("--detail", type=int, default=0, help="also list the N largest labels")
    args = parser.parse_args(argv)
    for app in args.apps.split(","):
        with tempfile.TemporaryDirectory(prefix="corral-pages-") as tmp:
            asyncio.run(run(app, args.requests, 3, Path(tmp), args.warm_up, args.detail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
