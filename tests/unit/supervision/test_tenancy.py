"""The confinement plan (`supervision.tenancy`, pure), the cgroup files (`supervision.cgroups`)
on a fake cgroup tree, and the pool's `Confiner` (memory-limit kills, cleanup)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.supervision import cgroups
from corral.supervision.cgroups import AppCgroup, Hierarchy
from corral.supervision.confine import OOM_REASON, Confiner
from corral.supervision.tenancy import (
    Confinement,
    Limits,
    Mechanism,
    RunAs,
    cgroup_values,
    enforcement,
    group_name,
    rlimits,
    root_app_problem,
    worker_env,
)

ALICE = RunAs("alice", 1500, 1500, (1500, 27), "/home/alice")
LIMITS = Limits(memory_mb=256, cpu_percent=50, max_processes=40, max_open_files=1024)


def test_cgroup_v2_values() -> None:
    assert cgroup_values(LIMITS, Mechanism.CGROUP_V2) == {
        "": (
            ("memory.max", str(256 * 1024 * 1024)),
            ("cpu.max", "50000 100000"),
            ("pids.max", "40"),
        )
    }
    # No limit is written as "none", so that removing one takes effect in a group that exists.
    assert cgroup_values(Limits(), Mechanism.CGROUP_V2) == {
        "": (("memory.max", "max"), ("cpu.max", "max 100000"), ("pids.max", "max"))
    }


def test_cgroup_v1_values() -> None:
    values = cgroup_values(LIMITS, Mechanism.CGROUP_V1)
    assert values["memory"] == (("memory.limit_in_bytes", str(256 * 1024 * 1024)),)
    assert values["cpu"] == (("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "50000"))
    assert values["pids"] == (("pids.max", "40"),)
    assert cgroup_values(Limits(), Mechanism.CGROUP_V1)["cpu"][1] == ("cpu.cfs_quota_us", "-1")
    assert cgroup_values(LIMITS, Mechanism.RLIMITS) == {}


def test_rlimits_fill_in_only_where_no_cgroup_counts() -> None:
    assert rlimits(LIMITS, Mechanism.CGROUP_V1) == ((resource.RLIMIT_NOFILE, 1024),)
    assert rlimits(LIMITS, Mechanism.RLIMITS) == (
        (resource.RLIMIT_NOFILE, 1024),
        (resource.RLIMIT_AS, 256 * 1024 * 1024),
        (resource.RLIMIT_NPROC, 40),
    )
    assert rlimits(Limits(), Mechanism.RLIMITS) == ()


def test_enforcement_says_what_is_not_enforced() -> None:
    said = enforcement(LIMITS, Mechanism.RLIMITS)
    assert "cpu_quota 50%: NOT ENFORCED (no cgroups)" in said
    assert any("RLIMIT_AS" in line for line in said)
    assert "max_processes 40: cgroup v1 pids.max" in enforcement(LIMITS, Mechanism.CGROUP_V1)
    assert enforcement(Limits(), Mechanism.CGROUP_V2) == ()


def test_worker_env_gives_the_users_home_and_a_private_tmpdir() -> None:
    base = {"HOME": "/root", "TMPDIR": "/tmp", "PATH": "/usr/bin"}
    confined = worker_env(base, Confinement(run_as=ALICE, tmpdir="/var/lib/corral/x/tmp/a"))
    assert confined["HOME"] == "/home/alice" and confined["USER"] == "alice"
    assert confined["TMPDIR"] == confined["TMP"] == "/var/lib/corral/x/tmp/a"
    assert confined["PATH"] == "/usr/bin"
    assert worker_env(base, None) == base


@given(st.text(min_size=1, max_size=200))
def test_group_names_are_safe_file_names(label: str) -> None:
    name = group_name(label)
    assert "/" not in name and name not in (".", "..") and len(name) <= 69
    assert name == group_name(label)


def test_group_names_of_different_labels_differ() -> None:
    assert group_name("a:/x:app") != group_name("a:/x/:app")


def test_root_app_problem() -> None:
    assert root_app_problem(None, 0)
    assert not root_app_problem(None, 1000)
    assert not root_app_problem(ALICE, 0)
    assert root_app_problem(RunAs("root", 0, 0, (0,), "/root"), 1000)


# -- cgroups on a fake tree -------------------------------------------------------------------


def _fake_v2(root: Path) -> Path:
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_detect_v2_v1_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = _fake_v2(tmp_path / "v2")
    assert cgroups.detect(str(v2)).mechanism is Mechanism.CGROUP_V2
    v1 = tmp_path / "v1"
    for controller in ("memory", "pids"):
        (v1 / controller).mkdir(parents=True)
        (v1 / controller / "cgroup.procs").write_text("")
    found = cgroups.detect(str(v1))
    assert found.mechanism is Mechanism.CGROUP_V1
    assert dict(found.mounts) == {"memory": str(v1 / "memory"), "pids": str(v1 / "pids")}
    assert cgroups.detect(str(tmp_path / "none")).mechanism is Mechanism.RLIMITS
    # A unified hierarchy without the memory controller (as the hybrid layout's) is not used.
    empty = tmp_path / "unified"
    empty.mkdir()
    (empty / "cgroup.controllers").write_text("\n")
    assert cgroups.detect(str(empty)).mechanism is Mechanism.RLIMITS
    monkeypatch.setenv("CORRAL_CGROUPS", "off")
    assert cgroups.detect(str(v2)).mechanism is Mechanism.RLIMITS


def test_prepare_enables_the_controllers_down_to_corrals_folder(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path / "cg")
    hierarchy = Hierarchy(Mechanism.CGROUP_V2, (("", str(root)),))
    cgroups.prepare(hierarchy, "www-1234")
    assert (root / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (root / "corral" / "www-1234").is_dir()


def test_an_app_group_gets_its_limits_and_reports_oom_kills(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path / "cg")
    hierarchy = Hierarchy(Mechanism.CGROUP_V2, (("", str(root)),))
    group = AppCgroup(hierarchy, "www", "app-1")
    folder = root / "corral" / "www" / "app-1"
    folder.mkdir(parents=True)
    for name in ("memory.max", "cpu.max", "pids.max", "memory.swap.max"):
        (folder / name).write_text("max\n")
    group.apply(LIMITS)
    assert (folder / "memory.max").read_text() == str(256 * 1024 * 1024)
    assert (folder / "cpu.max").read_text() == "50000 100000"
    assert (folder / "pids.max").read_text() == "40"
    assert (folder / "memory.swap.max").read_text() == "0"
    assert group.oom_kills() == 0
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    assert group.oom_kills() == 2
    assert group.paths == (str(folder),)


def test_confiner_tells_a_memory_limit_kill_from_another_sigkill(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path / "cg")
    hierarchy = Hierarchy(Mechanism.CGROUP_V2, (("", str(root)),))
    confiner = Confiner(
        "site:/:app", server="www", run_as=None, limits=Limits(memory_mb=64), hierarchy=hierarchy
    )
    data = confiner.ready()
    assert data.cgroup_dirs and data.run_as is None and data.tmpdir is None
    events = Path(data.cgroup_dirs[0]) / "memory.events"
    events.write_text("oom_kill 0\n")
    assert not confiner.killed_by_limit(-9)  # SIGKILL, counter unchanged: someone else
    events.write_text("oom_kill 1\n")
    assert not confiner.killed_by_limit(1)  # not a SIGKILL
    events.write_text("oom_kill 2\n")
    assert confiner.killed_by_limit(-9)
    assert not confiner.killed_by_limit(-9)  # each kill counted once
    assert OOM_REASON == "killed by the memory limit (cgroup)"
    events.unlink()
    confiner.close()
    assert not os.path.exists(data.cgroup_dirs[0])


def test_no_confiner_work_without_cgroups() -> None:
    confiner = Confiner(
        "s:/:a", server="www", run_as=None, limits=LIMITS, hierarchy=Hierarchy(Mechanism.RLIMITS)
    )
    data = confiner.ready()
    assert data.cgroup_dirs == () and data.mechanism is Mechanism.RLIMITS
    assert not confiner.killed_by_limit(-9)


def test_v1_memory_and_swap_limits_can_go_up_as_well_as_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cg"
    (root / "memory").mkdir(parents=True)
    hierarchy = Hierarchy(Mechanism.CGROUP_V1, (("memory", str(root / "memory")),))
    group = AppCgroup(hierarchy, "www", "app")
    folder = root / "memory" / "corral" / "www" / "app"
    folder.mkdir(parents=True)
    written: list[tuple[str, str]] = []
    for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
        (folder / name).write_text("-1")
    real_write = cgroups._write

    def record(path: str, value: str) -> None:
        written.append((os.path.basename(path), value))
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", record)
    group.apply(Limits(memory_mb=100))
    group.apply(Limits(memory_mb=200))
    mib = 1024 * 1024
    # The kernel refuses memory > memory+swap: memsw is lifted before each memory write.
    assert written == [
        ("memory.memsw.limit_in_bytes", "-1"),
        ("memory.limit_in_bytes", str(100 * mib)),
        ("memory.memsw.limit_in_bytes", str(100 * mib)),
        ("memory.memsw.limit_in_bytes", "-1"),
        ("memory.limit_in_bytes", str(200 * mib)),
        ("memory.memsw.limit_in_bytes", str(200 * mib)),
    ]
